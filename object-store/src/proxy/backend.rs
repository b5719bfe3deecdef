//! The proxy's view of the cluster: which nodes hold a name, and the quorum
//! rules for talking to them. The object layer ([`super::objects`]) is built
//! on it; the front ends never call it.
//!
//! - Writes go to every primary in parallel; a primary that cannot be
//!   reached is replaced by the next handoff. Success needs a quorum of
//!   `(replicas + 1) / 2` (2 of 3).
//! - Reads try replicas in ring order and fall over on errors and timeouts;
//!   HEAD asks all primaries and the newest timestamp wins.

use super::checksums::{Algorithm, ChecksumCheck, Hasher};
use super::encryption::{self, Key, Sealer};
use super::limits::MAX_OBJECT_SIZE;
use crate::records::{
    LinkOutcome, Target as UpdateTarget, FOLLOWED_VERSION_HEADER, FOLLOW_VERSION_HEADER,
    LINK_HEADER, LINK_ROW_HEADER,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use md5::{Digest, Md5};
use ring_tools::{Device, LiveRing, Ring};
use service_kit::client::HttpClient;
use service_kit::http_util::{empty, header_str, set_header, Body, BoxError};
use service_kit::timestamp::Timestamp;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A node's answer to an upload: its status and ETag, `None` if it failed.
type AnswerFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<NodeAnswer>> + Send + 'a>>;

/// Tells replica `i`'s node which container servers its write owes a
/// listing row (`x-nubo-container-update`), from the targets per replica.
pub fn owe_rows(targets: &[Vec<UpdateTarget>], i: usize, h: &mut HeaderMap) {
    if let Some(t) = targets.get(i) {
        set_header(
            h,
            "x-nubo-container-update",
            &serde_json::to_string(t).expect("json"),
        );
    }
}

/// A body's ETag (MD5), blake3 and S3 checksum, computed once, in the
/// proxy, as the body passes; the nodes record the first, check the second
/// and keep the third (checked here against what the client sent). A body
/// to be sealed ([`super::encryption`]) is sealed here too: the checksum is
/// of the plaintext the client sent, the MD5 and blake3 of the sealed
/// bytes the nodes store.
#[derive(Default)]
pub struct BodyDigests {
    md5: Md5,
    blake3: blake3::Hasher,
    checksum: Option<(ChecksumCheck, Hasher)>,
    seal: Option<Seal>,
}

/// A body being sealed: the sealer; the plaintext's MD5 when it is the
/// ETag (SSE-S3) or must match the client's (`Content-MD5`).
struct Seal {
    sealer: Sealer,
    plain_md5: Option<Md5>,
    shown: bool,
    expected_md5: Option<String>,
}

/// The body is not what the client said it is (its checksum or MD5).
#[derive(Debug)]
pub struct DigestMismatch;

/// What [`BodyDigests::finish`] found.
pub struct Digests {
    /// `x-nubo-etag`, `x-nubo-blake3` and the checksum's system metadata:
    /// headers, or trailers after a streamed body.
    pub headers: HeaderMap,
    /// The ETag clients see.
    pub etag: String,
    /// The S3 checksum kept, checked.
    pub checksum: Option<(Algorithm, String)>,
}

impl BodyDigests {
    pub fn new(checksum: Option<ChecksumCheck>) -> BodyDigests {
        BodyDigests {
            checksum: checksum.map(|c| {
                let h = Hasher::new(c.algorithm);
                (c, h)
            }),
            ..Default::default()
        }
    }

    /// The body is sealed with `data_key` on its way. `plain_etag`: its
    /// plaintext's MD5 is the ETag clients see; `expected_md5`: the MD5
    /// (hex) the plaintext must have.
    pub fn sealed(
        mut self,
        data_key: &Key,
        plain_etag: bool,
        expected_md5: Option<String>,
    ) -> BodyDigests {
        self.seal = Some(Seal {
            sealer: Sealer::new(data_key),
            plain_md5: (plain_etag || expected_md5.is_some()).then(Md5::new),
            shown: plain_etag,
            expected_md5,
        });
        self
    }

    /// Takes body bytes as the client sent them; gives the bytes to store.
    pub fn pass(&mut self, data: Bytes) -> Bytes {
        if let Some((_, h)) = &mut self.checksum {
            h.update(&data);
        }
        let out = match &mut self.seal {
            None => data,
            Some(seal) => {
                if let Some(m) = &mut seal.plain_md5 {
                    m.update(&data);
                }
                seal.sealer.push(&data)
            }
        };
        self.md5.update(&out);
        self.blake3.update(&out);
        out
    }

    /// The trailers [`Self::finish`] gives, for a `Trailer` header.
    pub fn trailer_names(&self) -> String {
        let mut names = "x-nubo-etag, x-nubo-blake3".to_string();
        if let Some((check, _)) = &self.checksum {
            names.push_str(&format!(
                ", x-object-sysmeta-{}",
                check.algorithm.sysmeta_key()
            ));
        }
        if self.seal.as_ref().is_some_and(|s| s.shown) {
            names.push_str(&format!(", {}, {LISTED_ETAG}", encryption::ETAG_HEADER));
        }
        names
    }

    /// The bytes still to store (a sealed body's last chunk), and the
    /// digests; or the checksum the body failed.
    pub fn finish(mut self) -> Result<(Bytes, Digests), DigestMismatch> {
        let mut shown_etag = None;
        let tail = match self.seal.take() {
            None => Bytes::new(),
            Some(seal) => {
                let tail = seal.sealer.finish();
                self.md5.update(&tail);
                self.blake3.update(&tail);
                let plain = seal.plain_md5.map(|m| hex::encode(m.finalize()));
                if let Some(want) = &seal.expected_md5 {
                    if plain.as_deref() != Some(want.trim_matches('"')) {
                        return Err(DigestMismatch);
                    }
                }
                if seal.shown {
                    shown_etag = plain;
                }
                tail
            }
        };
        let mut etag = hex::encode(self.md5.finalize());
        let mut headers = HeaderMap::new();
        set_header(&mut headers, "x-nubo-etag", &etag);
        set_header(
            &mut headers,
            "x-nubo-blake3",
            self.blake3.finalize().to_hex().as_str(),
        );
        let mut checksum = None;
        if let Some((check, hasher)) = self.checksum {
            let algorithm = check.algorithm;
            let value = check.verify(hasher.finish()).map_err(|_| DigestMismatch)?;
            set_header(
                &mut headers,
                &format!("x-object-sysmeta-{}", algorithm.sysmeta_key()),
                &value,
            );
            checksum = Some((algorithm, value));
        }
        if let Some(plain) = shown_etag {
            etag = plain;
            set_header(&mut headers, encryption::ETAG_HEADER, &etag);
            set_header(&mut headers, LISTED_ETAG, &etag);
        }
        Ok((
            tail,
            Digests {
                headers,
                etag,
                checksum,
            },
        ))
    }
}

/// The ETag a write's listing row shows instead of the stored bytes' MD5.
const LISTED_ETAG: &str = "x-object-sysmeta-container-update-override-etag";

/// What one node answered to a write.
#[derive(Clone, Debug)]
struct NodeAnswer {
    status: StatusCode,
    etag: Option<String>,
    /// The listing row the write queued (`x-nubo-listing-row`).
    row: Option<String>,
    /// What became of the version link the write asked for.
    link: Option<LinkOutcome>,
    /// The listing row of the link, when it was made current.
    link_row: Option<String>,
}

impl NodeAnswer {
    fn of(resp: &Response<Incoming>) -> NodeAnswer {
        NodeAnswer {
            status: resp.status(),
            etag: header_str(resp.headers(), "etag").map(|e| e.into_owned()),
            row: header_str(resp.headers(), "x-nubo-listing-row").map(|e| e.into_owned()),
            link: header_str(resp.headers(), LINK_HEADER).and_then(|v| LinkOutcome::parse(&v)),
            link_row: header_str(resp.headers(), LINK_ROW_HEADER).map(|e| e.into_owned()),
        }
    }
}

/// Replica `i`'s upload once a node has been asked.
enum Upload<'a> {
    /// The node wants the body: send it on `tx`, then await `answer`.
    Streaming {
        tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        answer: AnswerFuture<'a>,
    },
    /// The node answered before the body (409: it holds a newer version).
    Answered(NodeAnswer),
    /// No primary or handoff would take it.
    Failed,
}

/// Where replica `i` of a write goes: its primary, then the handoffs no
/// other replica falls back to.
fn candidates(nodes: &[Device], replicas: usize, i: usize) -> Vec<&Device> {
    let mut out = vec![&nodes[i]];
    out.extend(nodes[replicas..].iter().skip(i).step_by(replicas.max(1)));
    out
}

pub struct Backend {
    pub ring: Arc<LiveRing>,
    pub client: HttpClient,
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
}

/// Which kind of record a request addresses; each lives under its own name.
#[derive(Clone, Debug)]
pub enum Path {
    Account(String),
    Container(String, String),
    Object(String, String, String),
}

impl Path {
    fn components(&self) -> Vec<&str> {
        match self {
            Path::Account(a) => vec![a],
            Path::Container(a, c) => vec![a, c],
            Path::Object(a, c, o) => vec![a, c, o],
        }
    }

    /// The components the ring places this record by: a version with its
    /// object, a versions container with its container
    /// ([`crate::version_names`]).
    fn placement(&self) -> Vec<&str> {
        match self {
            Path::Object(a, c, o) => {
                let (c, o) = crate::version_names::placement(c, o);
                vec![a, c, o]
            }
            Path::Container(a, c) => vec![a, crate::version_names::container_placement(c)],
            Path::Account(_) => self.components(),
        }
    }

    fn internal(&self, device: &str, part: u32) -> String {
        let enc = service_kit::http_util::encode;
        let kind = match self {
            Path::Account(_) => "acct",
            Path::Container(..) => "cont",
            Path::Object(..) => "obj",
        };
        let mut p = format!("/{kind}/{}/{part}", enc(device));
        for c in self.components() {
            p.push('/');
            p.push_str(&enc(c));
        }
        p
    }
}

/// The outcome of a write: the status the client should see, and the
/// responses behind it.
#[derive(Debug)]
pub struct WriteOutcome {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub statuses: Vec<StatusCode>,
    /// The listing row the nodes queued for the write, to be delivered to
    /// the container's replicas before the write is acknowledged.
    pub row: Option<crate::records::ObjectRow>,
    /// The S3 checksum the proxy computed and checked for the body.
    pub checksum: Option<(Algorithm, String)>,
    /// For a version whose nodes were asked to link it: what became of
    /// the link ([`link_outcome`]), and its listing row once linked.
    pub link: Option<LinkOutcome>,
    pub link_row: Option<crate::records::ObjectRow>,
}

pub fn quorum(replicas: usize) -> usize {
    replicas.div_ceil(2).max(1)
}

/// The time of the record a node's answer is about (its
/// `x-backend-timestamp`, a tombstone's too); zero when it names none.
pub(crate) fn backend_timestamp(h: &HeaderMap) -> Timestamp {
    header_str(h, "x-backend-timestamp")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// Copies the request headers a node needs.
fn forwarded(headers: &HeaderMap, req: &mut http::request::Builder) {
    if let Some(h) = req.headers_mut() {
        for (k, v) in headers {
            h.append(k, v.clone());
        }
    }
}

impl Backend {
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.current()
    }

    /// Primaries then handoffs, and the partition.
    fn nodes(&self, ring: &Ring, path: &Path) -> (u32, Vec<Device>, usize) {
        let (_, part) = ring.locate(&path.placement());
        let replicas = ring.replicas();
        let mut nodes: Vec<Device> = ring.primaries(part).cloned().collect();
        nodes.extend(ring.handoffs(part).take(replicas * 2).cloned());
        (part, nodes, replicas)
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &Method,
        path: &Path,
        dev: &Device,
        part: u32,
        headers: &HeaderMap,
        query: Option<&str>,
        body: Body,
    ) -> Request<Body> {
        let mut uri = path.internal(&dev.device, part);
        if let Some(q) = query {
            uri.push('?');
            uri.push_str(q);
        }
        let mut b = Request::builder().method(method.clone()).uri(uri);
        forwarded(headers, &mut b);
        b.header("host", dev.node_addr())
            .body(body)
            .expect("valid internal request")
    }

    /// Opens replica `i`'s upload: the PUT's head goes to the primary with
    /// `Expect: 100-continue`, and the body follows only once the node has
    /// said it will take it. A node that is unreachable, silent, or answers
    /// 5xx at once (507 for a full device) is replaced by the next handoff.
    async fn open_upload<'a>(
        &'a self,
        candidates: Vec<&Device>,
        path: &Path,
        part: u32,
        headers: &HeaderMap,
    ) -> (Upload<'a>, Option<ring_tools::DeviceId>) {
        let wait = self.client.timeouts.node;
        for (attempt, dev) in candidates.into_iter().enumerate() {
            let Ok(conn) = self.client.connect(&dev.node_addr()).await else {
                tracing::warn!(node = %dev.node_addr(), "node unreachable, trying a handoff");
                continue;
            };
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|f| (f, rx))
            });
            let mut req = self.request(
                &Method::PUT,
                path,
                dev,
                part,
                headers,
                None,
                BodyExt::boxed_unsync(StreamBody::new(Box::pin(stream))),
            );
            set_header(req.headers_mut(), "expect", "100-continue");
            let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
            let go_tx = std::sync::Mutex::new(Some(go_tx));
            hyper::ext::on_informational(&mut req, move |res| {
                if res.status() == StatusCode::CONTINUE {
                    if let Some(t) = go_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        let _ = t.send(());
                    }
                }
            });
            let mut answer: AnswerFuture<'a> = Box::pin(async move {
                match conn.send_streaming(req).await {
                    Ok(resp) => {
                        let answer = NodeAnswer::of(&resp);
                        let _ = resp.into_body().collect().await;
                        Some(answer)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "object PUT to node failed");
                        None
                    }
                }
            });
            let early = tokio::select! {
                go = tokio::time::timeout(wait, go_rx) => match go {
                    Ok(Ok(())) => {
                        if attempt > 0 {
                            crate::metrics::NodeMetrics::add(&self.metrics.handoff_writes, 1);
                        }
                        return (Upload::Streaming { tx, answer }, Some(dev.id));
                    }
                    // The node answered without asking for the body (an
                    // empty one, or a refusal), or the connection failed.
                    Ok(Err(_)) => answer.await,
                    Err(_) => {
                        tracing::warn!(node = %dev.node_addr(), "no 100 Continue in time, trying a handoff");
                        continue;
                    }
                },
                early = &mut answer => early,
            };
            match early {
                Some(a) if a.status.is_server_error() => {
                    tracing::warn!(node = %dev.node_addr(), device = %dev.device, status = %a.status, "node refused the upload, trying a handoff");
                }
                Some(a) => return (Upload::Answered(a), Some(dev.id)),
                None => {}
            }
        }
        (Upload::Failed, None)
    }

    /// A buffered write (containers, accounts, deletes, posts, small objects)
    /// sent to every primary, handoffs standing in for failures.
    pub async fn write(
        &self,
        method: Method,
        path: &Path,
        headers: HeaderMap,
        body: Bytes,
        extra: impl Fn(usize, &mut HeaderMap),
    ) -> WriteOutcome {
        let ring = self.ring();
        let (part, nodes, replicas) = self.nodes(&ring, path);
        let sends = (0..replicas).map(|i| {
            let mut h = headers.clone();
            extra(i, &mut h);
            let nodes = &nodes;
            let method = method.clone();
            let body = body.clone();
            async move {
                for (attempt, dev) in candidates(nodes, replicas, i).into_iter().enumerate() {
                    let req = self.request(
                        &method,
                        path,
                        dev,
                        part,
                        &h,
                        None,
                        service_kit::http_util::full(body.clone()),
                    );
                    match self.client.send(&dev.node_addr(), req).await {
                        Ok(resp) => {
                            let answer = NodeAnswer::of(&resp);
                            let _ = resp.into_body().collect().await;
                            if answer.status.is_server_error() {
                                continue;
                            }
                            if attempt > 0 {
                                crate::metrics::NodeMetrics::add(&self.metrics.handoff_writes, 1);
                            }
                            return Some(answer);
                        }
                        Err(e) => tracing::warn!(error = %e, "write to node failed"),
                    }
                }
                None
            }
        });
        let answers: Vec<NodeAnswer> = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect();
        summarize(answers, replicas)
    }

    /// Streams an object body to the replicas in parallel. The client sees
    /// success only at quorum; a node that fails mid-stream is dropped and
    /// the upload goes on while a quorum remains.
    pub async fn put_object(
        &self,
        path: &Path,
        headers: HeaderMap,
        mut body: Body,
        mut digests: BodyDigests,
        container_updates: Vec<Vec<UpdateTarget>>,
    ) -> WriteOutcome {
        let ring = self.ring();
        let (part, nodes, replicas) = self.nodes(&ring, path);
        let need = quorum(replicas);
        // The body's ETag (MD5) and blake3 are computed here, once, as it
        // passes, and follow it to every node as trailers: nodes hash with
        // blake3 only (their chunk hashes) and check it against the
        // proxy's, so each byte is MD5-hashed once rather than per replica.
        let mut headers = headers;
        if let Some(len) = headers.remove(http::header::CONTENT_LENGTH) {
            headers.insert("x-nubo-content-length", len);
        }
        set_header(&mut headers, "transfer-encoding", "chunked");
        // hyper sends only the trailers declared here.
        set_header(&mut headers, "trailer", &digests.trailer_names());
        let replica_headers: Vec<HeaderMap> = (0..replicas)
            .map(|i| {
                let mut h = headers.clone();
                owe_rows(&container_updates, i, &mut h);
                h
            })
            .collect();
        let mut opened = futures_util::future::join_all((0..replicas).map(|i| {
            let candidates = candidates(&nodes, replicas, i);
            let h = &replica_headers[i];
            async move { self.open_upload(candidates, path, part, h).await }
        }))
        .await;
        // A replica whose primary and own handoffs all refused (a node with
        // every device full, say) tries the handoffs nobody took, one at a time.
        let mut taken: Vec<ring_tools::DeviceId> = opened.iter().filter_map(|(_, d)| *d).collect();
        for i in 0..replicas {
            if !matches!(opened[i].0, Upload::Failed) {
                continue;
            }
            let own = candidates(&nodes, replicas, i);
            let spare: Vec<&Device> = nodes[replicas..]
                .iter()
                .filter(|d| !taken.contains(&d.id) && !own.iter().any(|o| o.id == d.id))
                .collect();
            if spare.is_empty() {
                continue;
            }
            let retry = self
                .open_upload(spare, path, part, &replica_headers[i])
                .await;
            taken.extend(retry.1);
            opened[i] = retry;
        }
        let mut senders = Vec::new();
        let mut responses: Vec<AnswerFuture<'_>> = Vec::new();
        let mut early = Vec::new();
        for (upload, _) in opened {
            match upload {
                Upload::Streaming { tx, answer } => {
                    senders.push(Some(tx));
                    responses.push(answer);
                }
                Upload::Answered(a) => early.push(a),
                Upload::Failed => {}
            }
        }
        if senders.len() < need {
            // Not enough nodes will take the body: nothing is sent. An early
            // answer such as 409 (a newer version exists) is passed on.
            // A node that did say go gets an aborted body, so it stores nothing.
            for tx in senders.iter().flatten() {
                let _ = tx.try_send(Err(service_kit::http_util::box_error("upload aborted")));
            }
            drop(senders);
            let _ = futures_util::future::join_all(responses).await;
            if early.is_empty() {
                return WriteOutcome {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    etag: None,
                    statuses: vec![],
                    row: None,
                    checksum: None,
                    link: None,
                    link_row: None,
                };
            }
            let mut out = summarize(early, replicas);
            if out.status == StatusCode::CONFLICT {
                // A newer version is already stored; the client still
                // sends its body, whose ETag a superseded write reports.
                out.etag = etag_of_rest(body).await;
            }
            return out;
        }
        let node_timeout = self.client.timeouts.node;
        // Feed the nodes while their responses are awaited alongside.
        let feed = async move {
            let mut total = 0u64;
            let mut failure: Option<StatusCode> = None;
            while let Some(frame) = body.frame().await {
                let data = match frame {
                    Ok(f) => match f.into_data() {
                        Ok(d) => d,
                        Err(_) => continue,
                    },
                    Err(_) => {
                        failure = Some(StatusCode::from_u16(499).expect("valid"));
                        break;
                    }
                };
                total += data.len() as u64;
                let data = digests.pass(data);
                if total > MAX_OBJECT_SIZE {
                    failure = Some(StatusCode::PAYLOAD_TOO_LARGE);
                    break;
                }
                for slot in senders.iter_mut() {
                    if let Some(tx) = slot {
                        let sent = tokio::time::timeout(
                            node_timeout,
                            tx.send(Ok(Frame::data(data.clone()))),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(()))) {
                            *slot = None;
                        }
                    }
                }
                if senders.iter().filter(|s| s.is_some()).count() < need {
                    failure = Some(StatusCode::SERVICE_UNAVAILABLE);
                    break;
                }
            }
            let mut found = None;
            if failure.is_none() {
                match digests.finish() {
                    Ok((tail, d)) => {
                        for tx in senders.iter_mut() {
                            if tail.is_empty() {
                                break;
                            }
                            if let Some(t) = tx {
                                let sent = tokio::time::timeout(
                                    node_timeout,
                                    t.send(Ok(Frame::data(tail.clone()))),
                                )
                                .await;
                                if !matches!(sent, Ok(Ok(()))) {
                                    *tx = None;
                                }
                            }
                        }
                        for tx in senders.iter().flatten() {
                            let _ = tokio::time::timeout(
                                node_timeout,
                                tx.send(Ok(Frame::trailers(d.headers.clone()))),
                            )
                            .await;
                        }
                        found = Some(d);
                    }
                    // Not the checksum the client sent: nothing is stored.
                    Err(_) => failure = Some(StatusCode::UNPROCESSABLE_ENTITY),
                }
            }
            if failure.is_some() {
                // Abort every node's body so that nothing is committed.
                for tx in senders.iter().flatten() {
                    let _ = tokio::time::timeout(
                        node_timeout,
                        tx.send(Err(service_kit::http_util::box_error("upload aborted"))),
                    )
                    .await;
                }
            }
            drop(senders);
            (failure, found)
        };
        let ((failure, found), answers) =
            futures_util::future::join(feed, futures_util::future::join_all(responses)).await;
        if let Some(status) = failure {
            return WriteOutcome {
                status,
                etag: None,
                statuses: vec![],
                row: None,
                checksum: None,
                link: None,
                link_row: None,
            };
        }
        let mut answers: Vec<_> = answers.into_iter().flatten().collect();
        answers.extend(early);
        let mut out = summarize(answers, replicas);
        if let Some(d) = found {
            if out.status == StatusCode::CONFLICT || out.status.is_success() {
                // The ETag clients see (a sealed body's may not be the
                // nodes').
                out.etag = Some(d.etag);
            }
            out.checksum = d.checksum;
        }
        out
    }

    /// GET or HEAD from the first replica that has the record, falling over on
    /// errors. A tombstone newer than a found version wins (404).
    pub async fn read(
        self: &Arc<Self>,
        method: Method,
        path: &Path,
        headers: HeaderMap,
        query: Option<&str>,
    ) -> Response<Body> {
        let ring = self.ring();
        let (part, nodes, replicas) = self.nodes(&ring, path);
        let mut newest_tombstone = Timestamp::ZERO;
        let mut errors = 0;
        let mut not_found = 0;
        for (n, dev) in nodes.iter().enumerate() {
            // Handoffs are worth asking only while primaries failed.
            if n >= replicas && not_found >= replicas {
                break;
            }
            let req = self.request(&method, path, dev, part, &headers, query, empty());
            let resp = match self.client.send(&dev.node_addr(), req).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "read from node failed");
                    errors += 1;
                    continue;
                }
            };
            let st = resp.status();
            if st.is_success() {
                if backend_timestamp(resp.headers()) < newest_tombstone {
                    continue;
                }
                let timeout = self.client.timeouts.node;
                // An object's body that breaks off continues from the next
                // replica at the same byte (as Swift's proxy resumes a GET).
                let resume = (method == Method::GET && matches!(path, Path::Object(..)))
                    .then(|| {
                        let (first, last) = served_range(st, resp.headers())?;
                        Some(Resume {
                            backend: self.clone(),
                            path: path.clone(),
                            part,
                            others: nodes[n + 1..].to_vec(),
                            timestamp: backend_timestamp(resp.headers()),
                            followed: resp.headers().contains_key(FOLLOWED_VERSION_HEADER),
                            next: first,
                            last,
                        })
                    })
                    .flatten();
                // Nodes check every chunk before they send it
                // (`object_body`), so what arrives here is checked bytes.
                return resp.map(|b| {
                    let body = timed_body(b, timeout);
                    match resume {
                        Some(r) => r.body(body),
                        None => body,
                    }
                });
            }
            if st == StatusCode::NOT_FOUND {
                not_found += 1;
                newest_tombstone = newest_tombstone.max(backend_timestamp(resp.headers()));
                continue;
            }
            if st.is_client_error() {
                // 416 and friends: the node's answer is the answer.
                let timeout = self.client.timeouts.node;
                return resp.map(|b| timed_body(b, timeout));
            }
            errors += 1;
        }
        let mut r = service_kit::http_util::status(if not_found == 0 && errors > 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NOT_FOUND
        });
        if newest_tombstone > Timestamp::ZERO {
            set_header(
                r.headers_mut(),
                "x-backend-timestamp",
                &newest_tombstone.to_string(),
            );
        }
        r
    }

    /// HEAD every primary; the newest answer (found or deleted) wins.
    pub async fn head_newest(self: &Arc<Self>, path: &Path, headers: HeaderMap) -> Response<Body> {
        match self.head_primaries(path, &headers, 1).await {
            Some(r) => r,
            // Every primary failed: fall back to the read path, which tries handoffs.
            None => self.read(Method::HEAD, path, headers, None).await,
        }
    }

    /// HEAD as a quorum of primaries sees it (the newest of their
    /// answers), so that it sees every acknowledged write; `None` if fewer
    /// than a quorum answered.
    pub async fn head_quorum(self: &Arc<Self>, path: &Path) -> Option<Response<Body>> {
        let replicas = self.ring().replicas();
        self.head_primaries(path, &HeaderMap::new(), quorum(replicas))
            .await
    }

    /// The newest answer of the primaries, if at least `need` answered
    /// (found or not found).
    async fn head_primaries(
        self: &Arc<Self>,
        path: &Path,
        headers: &HeaderMap,
        need: usize,
    ) -> Option<Response<Body>> {
        let answers = self.primaries_answers(path, headers).await;
        let usable: Vec<&Response<Incoming>> = answers
            .iter()
            .filter(|r| r.status().is_success() || r.status() == StatusCode::NOT_FOUND)
            .collect();
        if usable.len() < need.max(1) {
            return None;
        }
        let best = usable
            .iter()
            .max_by_key(|r| (backend_timestamp(r.headers()), r.status().is_success()))
            .expect("non-empty");
        let mut out = Response::new(empty());
        *out.status_mut() = best.status();
        *out.headers_mut() = best.headers().clone();
        Some(out)
    }

    /// The headers of each primary that holds `path` as found (its own
    /// current record, whatever the others hold), in no order.
    pub async fn heads_of_primaries(self: &Arc<Self>, path: &Path) -> Vec<HeaderMap> {
        self.primaries_answers(path, &HeaderMap::new())
            .await
            .into_iter()
            .filter(|r| r.status().is_success())
            .map(|r| r.into_parts().0.headers)
            .collect()
    }

    /// HEAD of `path` at every primary at once: the answers that came.
    async fn primaries_answers(
        self: &Arc<Self>,
        path: &Path,
        headers: &HeaderMap,
    ) -> Vec<Response<Incoming>> {
        let ring = self.ring();
        let (part, nodes, replicas) = self.nodes(&ring, path);
        let asks = nodes[..replicas].iter().map(|dev| {
            let req = self.request(&Method::HEAD, path, dev, part, headers, None, empty());
            async move { self.client.send(&dev.node_addr(), req).await.ok() }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Takes (or renews) the write lease on `path` ([`crate::write_locks`])
    /// at its first primary that answers.
    pub async fn lease(&self, path: &Path, token: &str, ttl: std::time::Duration) -> Lease {
        let ring = self.ring();
        let (part, nodes, replicas) = self.nodes(&ring, path);
        let mut h = HeaderMap::new();
        set_header(&mut h, "x-nubo-lock-token", token);
        set_header(&mut h, "x-nubo-lock-ttl-ms", &ttl.as_millis().to_string());
        let method = crate::write_locks::lock_method();
        for dev in &nodes[..replicas] {
            let req = self.request(&method, path, dev, part, &h, None, empty());
            match self.client.send(&dev.node_addr(), req).await {
                Ok(r) if r.status() == StatusCode::OK => return Lease::Held,
                Ok(r) if r.status() == StatusCode::CONFLICT => return Lease::Busy,
                // A primary that is down (or failing) passes the lease on.
                _ => continue,
            }
        }
        Lease::Unavailable
    }

    /// Gives the lease back wherever it may be held.
    pub async fn release(&self, path: &Path, token: &str) {
        let ring = self.ring();
        let (part, nodes, replicas) = self.nodes(&ring, path);
        let mut h = HeaderMap::new();
        set_header(&mut h, "x-nubo-lock-token", token);
        let method = crate::write_locks::unlock_method();
        let asks = nodes[..replicas].iter().map(|dev| {
            let req = self.request(&method, path, dev, part, &h, None, empty());
            async move { self.client.send(&dev.node_addr(), req).await.ok() }
        });
        futures_util::future::join_all(asks).await;
    }
}

/// What asking for a write lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    Held,
    /// Another writer holds it.
    Busy,
    /// No primary answered.
    Unavailable,
}

/// The ETag (MD5) of what is left of a body, read to its end (at most
/// [`MAX_OBJECT_SIZE`]); `None` if it breaks off.
async fn etag_of_rest(mut body: Body) -> Option<String> {
    let mut md5 = Md5::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            total += data.len() as u64;
            if total > MAX_OBJECT_SIZE {
                return None;
            }
            md5.update(&data);
        }
    }
    Some(hex::encode(md5.finalize()))
}

fn summarize(answers: Vec<NodeAnswer>, replicas: usize) -> WriteOutcome {
    let need = quorum(replicas);
    let statuses: Vec<StatusCode> = answers.iter().map(|a| a.status).collect();
    let count = |f: &dyn Fn(StatusCode) -> bool| statuses.iter().filter(|s| f(**s)).count();
    let etag = answers
        .iter()
        .find(|a| a.status.is_success())
        .and_then(|a| a.etag.clone());
    let row = answers
        .iter()
        .find_map(|a| a.row.as_deref())
        .and_then(|r| serde_json::from_str(r).ok());
    let status = if count(&|s| s == StatusCode::UNPROCESSABLE_ENTITY) > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if count(&|s| s.is_success()) >= need {
        // The most common success status (201 created vs 202 existed...).
        most_common(statuses.iter().copied().filter(|s| s.is_success()))
    } else if count(&|s| s == StatusCode::NOT_FOUND) >= need {
        StatusCode::NOT_FOUND
    } else if count(&|s| s == StatusCode::CONFLICT || s.is_success()) >= need {
        // Each of a quorum holds this write or a newer one: superseded
        // (two writers raced; the later timestamp won).
        StatusCode::CONFLICT
    } else if count(&|s| s.is_success() || s == StatusCode::NOT_FOUND) >= need {
        // A delete where some replicas had the record and some did not.
        StatusCode::NO_CONTENT
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let link = link_outcome(&answers);
    let link_row = answers
        .iter()
        .find_map(|a| a.link_row.as_deref())
        .and_then(|r| serde_json::from_str(r).ok());
    WriteOutcome {
        status,
        etag,
        statuses,
        row,
        checksum: None,
        link,
        link_row,
    }
}

/// What became of a version link over the replicas that stored the
/// version: made current only if every one of them linked it; a null
/// version current anywhere must be kept first; otherwise something newer
/// is current somewhere, and stays.
fn link_outcome(answers: &[NodeAnswer]) -> Option<LinkOutcome> {
    let stored: Vec<Option<LinkOutcome>> = answers
        .iter()
        .filter(|a| a.status.is_success())
        .map(|a| a.link)
        .collect();
    if stored.is_empty() || stored.iter().all(|l| l.is_none()) {
        return None;
    }
    Some(if stored.contains(&Some(LinkOutcome::NullCurrent)) {
        LinkOutcome::NullCurrent
    } else if stored.iter().all(|l| *l == Some(LinkOutcome::Linked)) {
        LinkOutcome::Linked
    } else {
        LinkOutcome::Older
    })
}

fn most_common(it: impl Iterator<Item = StatusCode>) -> StatusCode {
    let mut counts: Vec<(StatusCode, usize)> = Vec::new();
    for s in it {
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(s, n)| (*n, std::cmp::Reverse(s.as_u16())))
        .map(|(s, _)| s)
        .unwrap_or(StatusCode::OK)
}

/// The inclusive byte range a successful GET's body covers.
fn served_range(status: StatusCode, h: &HeaderMap) -> Option<(u64, u64)> {
    if status == StatusCode::PARTIAL_CONTENT {
        let spec = header_str(h, "content-range")?;
        let (range, _) = spec.strip_prefix("bytes ")?.split_once('/')?;
        let (a, b) = range.split_once('-')?;
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    let len: u64 = header_str(h, "content-length")?.parse().ok()?;
    (len > 0).then(|| (0, len - 1))
}

/// What a GET needs to go on from another replica: the version being
/// served, the next byte, and the replicas not asked yet.
struct Resume {
    backend: Arc<Backend>,
    path: Path,
    part: u32,
    others: Vec<Device>,
    timestamp: Timestamp,
    /// The body is a version its link's node served in the link's stead
    /// ([`FOLLOW_VERSION_HEADER`]): the next replica must do the same.
    followed: bool,
    /// The next byte the client expects, and the last one it asked for.
    next: u64,
    last: u64,
}

impl Resume {
    /// `body` (the first replica's), continued from the next replica that
    /// holds the same version when it breaks off or ends short.
    fn body(self, body: Body) -> Body {
        let stream = futures_util::stream::unfold(Some((body, self)), |state| async move {
            let (mut body, mut r) = state?;
            loop {
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            r.next += d.len() as u64;
                        }
                        return Some((Ok(f), Some((body, r))));
                    }
                    None if r.next > r.last => return None,
                    failed => {
                        let why = match failed {
                            Some(Err(e)) => e.to_string(),
                            _ => "ended short".to_string(),
                        };
                        match r.continue_elsewhere().await {
                            Some(next) => {
                                tracing::warn!(reason = %why, at = r.next, "object read resumed from another replica");
                                crate::metrics::NodeMetrics::add(
                                    &r.backend.metrics.reads_resumed,
                                    1,
                                );
                                body = next;
                            }
                            None => {
                                return Some((
                                    Err(service_kit::http_util::box_error(
                                        "object read failed on every replica",
                                    )),
                                    None,
                                ))
                            }
                        }
                    }
                }
            }
        });
        BodyExt::boxed_unsync(StreamBody::new(Box::pin(stream)))
    }

    /// The rest of the range from the next replica with the same version.
    async fn continue_elsewhere(&mut self) -> Option<Body> {
        while !self.others.is_empty() {
            let dev = self.others.remove(0);
            let mut h = HeaderMap::new();
            set_header(
                &mut h,
                "range",
                &format!("bytes={}-{}", self.next, self.last),
            );
            if self.followed {
                set_header(&mut h, FOLLOW_VERSION_HEADER, "1");
            }
            let req =
                self.backend
                    .request(&Method::GET, &self.path, &dev, self.part, &h, None, empty());
            let Ok(resp) = self.backend.client.send(&dev.node_addr(), req).await else {
                continue;
            };
            let same_version = backend_timestamp(resp.headers()) == self.timestamp
                && resp.headers().contains_key(FOLLOWED_VERSION_HEADER) == self.followed;
            let expected = if self.next == 0 {
                resp.status() == StatusCode::OK || resp.status() == StatusCode::PARTIAL_CONTENT
            } else {
                resp.status() == StatusCode::PARTIAL_CONTENT
            };
            if same_version && expected {
                let timeout = self.backend.client.timeouts.node;
                return Some(timed_body(resp.into_body(), timeout));
            }
            let _ = resp.into_body().collect().await;
        }
        None
    }
}

/// A node's body with a timeout on each chunk: a stalled node ends the body
/// with an error (the client sees a broken transfer, never a short 200).
fn timed_body(body: Incoming, timeout: std::time::Duration) -> Body {
    let stream = futures_util::stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(timeout, body.frame()).await {
            Ok(Some(Ok(f))) => Some((Ok(f), Some(body))),
            Ok(Some(Err(e))) => Some((Err(Box::new(e) as BoxError), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(service_kit::http_util::box_error("node read timed out")),
                None,
            )),
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(Box::pin(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_counts_as_made_only_where_every_replica_that_stored_made_it() {
        use LinkOutcome::*;
        let answer = |status: u16, link| NodeAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            etag: None,
            row: None,
            link,
            link_row: None,
        };
        let of = |answers: &[NodeAnswer]| link_outcome(answers);
        let linked = answer(201, Some(Linked));
        assert_eq!(of(&[linked.clone(), linked.clone()]), Some(Linked));
        // A failed replica's answer does not count.
        assert_eq!(of(&[linked.clone(), answer(503, None)]), Some(Linked));
        assert_eq!(of(&[linked.clone(), answer(201, Some(Older))]), Some(Older));
        assert_eq!(
            of(&[answer(201, Some(Older)), answer(201, Some(NullCurrent))]),
            Some(NullCurrent)
        );
        // Not asked (or a node that does not know the header): the writer links.
        assert_eq!(of(&[answer(201, None)]), None);
        assert_eq!(of(&[linked.clone(), answer(201, None)]), Some(Older));
        assert_eq!(of(&[answer(409, None)]), None);
    }

    #[test]
    fn a_served_range_comes_from_the_status_and_headers() {
        let mut h = HeaderMap::new();
        set_header(&mut h, "content-length", "10");
        assert_eq!(served_range(StatusCode::OK, &h), Some((0, 9)));
        set_header(&mut h, "content-range", "bytes 5-9/10");
        assert_eq!(served_range(StatusCode::PARTIAL_CONTENT, &h), Some((5, 9)));
        set_header(&mut h, "content-length", "0");
        assert_eq!(served_range(StatusCode::OK, &h), None, "nothing to resume");
        set_header(&mut h, "content-range", "bytes */10");
        assert_eq!(served_range(StatusCode::PARTIAL_CONTENT, &h), None);
    }

    #[test]
    fn quorum_is_half_rounded_up() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 1);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(5), 3);
    }

    #[test]
    fn summary_needs_a_quorum_of_successes() {
        let answer = |status, etag: Option<&str>| NodeAnswer {
            status,
            etag: etag.map(str::to_string),
            row: None,
            link: None,
            link_row: None,
        };
        let ok = answer(StatusCode::CREATED, Some("e"));
        // Two writers raced: each replica holds this write or the newer.
        let newer = answer(StatusCode::CONFLICT, None);
        assert_eq!(
            summarize(vec![ok.clone(), newer.clone()], 3).status,
            StatusCode::CONFLICT
        );
        assert_eq!(
            summarize(vec![newer.clone(), newer], 3).status,
            StatusCode::CONFLICT
        );
        assert_eq!(
            summarize(vec![ok.clone(), ok.clone()], 3).status,
            StatusCode::CREATED
        );
        assert_eq!(
            summarize(vec![ok.clone()], 3).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            summarize(
                vec![ok.clone(), answer(StatusCode::UNPROCESSABLE_ENTITY, None)],
                3
            )
            .status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let nf = answer(StatusCode::NOT_FOUND, None);
        assert_eq!(
            summarize(vec![nf.clone(), nf.clone(), ok], 3).status,
            StatusCode::NOT_FOUND
        );
    }
}
