//! The object replicator: makes every partition's replicas hold the same
//! newest versions. For each partition a device holds, it compares per-suffix
//! hashes with the partition's other primaries and pushes only what differs
//! (missing or newer objects and tombstones). A device holding a partition it
//! is not primary for (a handoff, or a partition the ring moved away) pushes
//! everything to the primaries and drops its copy only when every primary
//! has confirmed it holds those versions or newer.
//!
//! Internal API it uses on peers:
//! - `GET /hashes/{device}/{partition}`: `{"<suffix>": "<hash hex>"}`
//! - `GET /suffix/{device}/{partition}/{suffix}`: `{"<name hash hex>": [timestamp, "data"|"tombstone"]}`
//! - the object verbs, with the original `X-Timestamp`.

use crate::device_db::{ListingKind, Replica};
use crate::object_body::StoredBody;
use crate::object_server::now_secs;
use crate::rate_limit::RateLimiter;
use crate::records::{ObjectKind, ObjectRecord};
use crate::storage_node::{Device, NodeState};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use ring_tools::NameHash;
use serde::Serialize;
use service_kit::http_util::{empty, encode, set_header, Body};
use service_kit::timestamp::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default, Clone, Serialize)]
pub struct PassStats {
    pub partitions_checked: u64,
    pub partitions_synced: u64,
    pub objects_pushed: u64,
    pub handoffs_removed: u64,
    pub containers_pushed: u64,
    pub accounts_pushed: u64,
    /// Object bytes and listing states sent to peers.
    pub bytes_pushed: u64,
    pub tombstones_reclaimed: u64,
    pub rows_reclaimed: u64,
    pub files_reclaimed: u64,
    pub failures: u64,
}

/// One replication pass over every device of this node.
pub async fn replicate_once(state: &Arc<NodeState>) -> PassStats {
    let stats = replicate_devices(state).await;
    let m = &state.metrics;
    use crate::metrics::NodeMetrics as M;
    M::add(&m.replication_passes, 1);
    M::add(&m.partitions_synced, stats.partitions_synced);
    M::add(&m.objects_pushed, stats.objects_pushed);
    M::add(&m.containers_pushed, stats.containers_pushed);
    M::add(&m.handoffs_removed, stats.handoffs_removed);
    M::add(&m.replication_failures, stats.failures);
    M::add(&m.bytes_pushed, stats.bytes_pushed);
    M::add(&m.tombstones_reclaimed, stats.tombstones_reclaimed);
    M::add(&m.rows_reclaimed, stats.rows_reclaimed);
    M::add(&m.files_reclaimed, stats.files_reclaimed);
    stats
}

async fn replicate_devices(state: &Arc<NodeState>) -> PassStats {
    let mut stats = PassStats::default();
    let mut limit = RateLimiter::new(state.config.replicator_bytes_per_sec);
    for dev in state.devices() {
        // Old tombstones and deleted rows go first, so that no replica
        // pushes back what its peers have already reclaimed.
        let r = crate::reclaimer::reclaim_device(&state.config, &dev).await;
        stats.tombstones_reclaimed += r.db.tombstones;
        stats.rows_reclaimed += r.db.rows + r.db.containers;
        stats.files_reclaimed += r.files;
        let d = dev.clone();
        let parts = match tokio::task::spawn_blocking(move || d.db.object_partitions()).await {
            Ok(Ok(p)) => p,
            _ => {
                stats.failures += 1;
                continue;
            }
        };
        for part in parts {
            stats.partitions_checked += 1;
            replicate_partition(state, &dev, part, &mut stats, &mut limit).await;
        }
        for kind in [Listing::Containers, Listing::Accounts] {
            let d = dev.clone();
            let parts = tokio::task::spawn_blocking(move || kind.partitions(&d.db))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            for part in parts {
                replicate_listings(state, &dev, part, kind, &mut stats, &mut limit).await;
            }
        }
    }
    stats
}

/// Containers and accounts replicate the same way (compare a digest, send
/// the whole state where it differs, merge newest-wins); this is what
/// differs between them.
#[derive(Clone, Copy, Debug)]
pub enum Listing {
    Containers,
    Accounts,
}

/// A container's or account's record and all its rows, as sent to a peer.
#[derive(Serialize, serde::Deserialize)]
struct ListingState<R, W> {
    record: R,
    rows: Vec<(String, W)>,
}

type DbResult<T> = Result<T, crate::device_db::DbError>;

impl Listing {
    /// The internal API paths: digest, merge.
    pub fn paths(self) -> (&'static str, &'static str) {
        match self {
            Listing::Containers => ("cdigest", "cmerge"),
            Listing::Accounts => ("adigest", "amerge"),
        }
    }

    pub fn from_path(p: &str) -> Option<Listing> {
        match p {
            "cdigest" | "cmerge" => Some(Listing::Containers),
            "adigest" | "amerge" => Some(Listing::Accounts),
            _ => None,
        }
    }

    fn kind(self) -> ListingKind {
        match self {
            Listing::Containers => ListingKind::Containers,
            Listing::Accounts => ListingKind::Accounts,
        }
    }

    fn partitions(self, db: &crate::device_db::DeviceDb) -> DbResult<Vec<u32>> {
        db.listing_partitions(self.kind())
    }

    fn names(self, db: &crate::device_db::DeviceDb, part: u32) -> DbResult<Vec<NameHash>> {
        db.listing_names(self.kind(), part)
    }

    fn digest(
        self,
        db: &crate::device_db::DeviceDb,
        part: u32,
        hash: &NameHash,
    ) -> DbResult<Option<String>> {
        db.listing_digest(self.kind(), part, hash)
    }

    /// The serialized state to send, if the record exists.
    fn state(
        self,
        db: &crate::device_db::DeviceDb,
        part: u32,
        hash: &NameHash,
    ) -> DbResult<Option<Vec<u8>>> {
        match self {
            Listing::Containers => {
                state_json(db.container(part, hash)?, || db.container_rows(hash))
            }
            Listing::Accounts => state_json(db.account(part, hash)?, || db.account_rows(hash)),
        }
    }

    /// Merges a peer's state; `false` if it does not parse.
    fn merge(
        self,
        db: &crate::device_db::DeviceDb,
        part: u32,
        hash: &NameHash,
        body: &[u8],
    ) -> DbResult<bool> {
        let replica = match self {
            Listing::Containers => serde_json::from_slice::<
                ListingState<crate::records::ContainerRecord, crate::records::ObjectRow>,
            >(body)
            .map(|st| Replica::Container(st.record, st.rows)),
            Listing::Accounts => serde_json::from_slice::<
                ListingState<crate::records::AccountRecord, crate::records::ContainerRow>,
            >(body)
            .map(|st| Replica::Account(st.record, st.rows)),
        };
        match replica {
            Ok(r) => db.merge_replica(part, hash, &r).map(|()| true),
            Err(_) => Ok(false),
        }
    }

    fn remove(self, db: &crate::device_db::DeviceDb, part: u32, hash: &NameHash) -> DbResult<()> {
        db.remove_replica(self.kind(), part, hash)
    }
}

/// A record with its rows, as JSON; `None` without a record.
fn state_json<R: Serialize, W: Serialize>(
    record: Option<R>,
    rows: impl FnOnce() -> DbResult<Vec<(String, W)>>,
) -> DbResult<Option<Vec<u8>>> {
    let Some(record) = record else {
        return Ok(None);
    };
    Ok(Some(to_json(&ListingState {
        record,
        rows: rows()?,
    })))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// Each container (or account) of the partition is compared by digest with
/// the other primaries and sent whole where they differ; a handoff's copy is
/// dropped once every primary has it.
async fn replicate_listings(
    state: &Arc<NodeState>,
    dev: &Arc<Device>,
    part: u32,
    kind: Listing,
    stats: &mut PassStats,
    limit: &mut RateLimiter,
) {
    let (peers, is_primary) = peers(state, dev, part);
    let (digest_path, merge_path) = kind.paths();
    let d = dev.clone();
    let Ok(Ok(names)) = tokio::task::spawn_blocking(move || kind.names(&d.db, part)).await else {
        return;
    };
    for hash in names {
        let d = dev.clone();
        let (digest, body) = match tokio::task::spawn_blocking(move || {
            Ok::<_, crate::device_db::DbError>((
                kind.digest(&d.db, part, &hash)?,
                kind.state(&d.db, part, &hash)?,
            ))
        })
        .await
        {
            Ok(Ok((Some(dg), Some(body)))) => (dg, body),
            _ => continue,
        };
        let mut confirmed = true;
        for t in &peers {
            let addr = t.node_addr();
            let theirs: Option<HashMap<String, String>> = get_json(
                state,
                &addr,
                format!(
                    "/{digest_path}/{}/{part}/{}",
                    encode(&t.device),
                    hash.to_hex()
                ),
            )
            .await;
            if theirs.as_ref().and_then(|m| m.get("digest")) == Some(&digest) {
                continue;
            }
            let req = Request::builder()
                .method(Method::PUT)
                .uri(format!(
                    "/{merge_path}/{}/{part}/{}",
                    encode(&t.device),
                    hash.to_hex()
                ))
                .header("host", &addr)
                .body(service_kit::http_util::full(body.clone()))
                .expect("valid request");
            match state.client.send(&addr, req).await {
                Ok(resp) if resp.status().is_success() => {
                    let _ = resp.into_body().collect().await;
                    match kind {
                        Listing::Containers => stats.containers_pushed += 1,
                        Listing::Accounts => stats.accounts_pushed += 1,
                    }
                    stats.bytes_pushed += body.len() as u64;
                    tokio::time::sleep(limit.consume(body.len() as u64)).await;
                }
                _ => {
                    confirmed = false;
                    stats.failures += 1;
                }
            }
        }
        if !is_primary && confirmed {
            let d = dev.clone();
            let _ = tokio::task::spawn_blocking(move || kind.remove(&d.db, part, &hash)).await;
        }
    }
}

/// `GET /{c,a}digest/{device}/{partition}/{name hash}`
pub async fn listing_digest_response(
    kind: Listing,
    dev: Arc<Device>,
    part: u32,
    hash: NameHash,
) -> http::Response<Body> {
    match tokio::task::spawn_blocking(move || kind.digest(&dev.db, part, &hash)).await {
        Ok(Ok(Some(d))) => json(&HashMap::from([("digest", d)])),
        Ok(Ok(None)) => service_kit::http_util::status(StatusCode::NOT_FOUND),
        _ => service_kit::http_util::status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `PUT /{c,a}merge/{device}/{partition}/{name hash}` with a peer's state.
pub async fn listing_merge_response(
    kind: Listing,
    dev: Arc<Device>,
    part: u32,
    hash: NameHash,
    body: Bytes,
) -> http::Response<Body> {
    match tokio::task::spawn_blocking(move || kind.merge(&dev.db, part, &hash, &body)).await {
        Ok(Ok(true)) => service_kit::http_util::status(StatusCode::NO_CONTENT),
        Ok(Ok(false)) => service_kit::http_util::text(StatusCode::BAD_REQUEST, "bad listing state"),
        _ => service_kit::http_util::status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    state: &NodeState,
    addr: &str,
    path: String,
) -> Option<T> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", addr)
        .body(empty())
        .ok()?;
    let resp = state.client.send(addr, req).await.ok()?;
    if !resp.status().is_success() {
        let _ = resp.into_body().collect().await;
        return None;
    }
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

/// The partition's primaries other than this device, and whether this
/// device is one of them (a handoff is not).
fn peers(state: &NodeState, dev: &Device, part: u32) -> (Vec<ring_tools::Device>, bool) {
    let ring = state.ring();
    let me = format!("{}:{}", state.config.bind_ip, state.config.port);
    let (mine, others): (Vec<ring_tools::Device>, Vec<ring_tools::Device>) = ring
        .primaries(part)
        .cloned()
        .partition(|p| p.node_addr() == me && p.device == dev.name);
    (others, !mine.is_empty())
}

async fn replicate_partition(
    state: &Arc<NodeState>,
    dev: &Arc<Device>,
    part: u32,
    stats: &mut PassStats,
    limit: &mut RateLimiter,
) {
    let (targets, is_primary) = peers(state, dev, part);
    let d = dev.clone();
    let local: HashMap<u16, [u8; 32]> =
        match tokio::task::spawn_blocking(move || d.db.suffix_hashes(part)).await {
            Ok(Ok(h)) => h.into_iter().collect(),
            _ => {
                stats.failures += 1;
                return;
            }
        };
    let mut confirmed_everywhere = true;
    let mut pushed_any = false;
    for t in targets {
        let addr = t.node_addr();
        let remote: Option<HashMap<String, String>> = get_json(
            state,
            &addr,
            format!("/hashes/{}/{part}", encode(&t.device)),
        )
        .await;
        let Some(remote) = remote else {
            confirmed_everywhere = false;
            stats.failures += 1;
            continue;
        };
        for (suffix, hash) in &local {
            if remote.get(&format!("{suffix:03x}")).map(String::as_str)
                == Some(hex::encode(hash).as_str())
            {
                continue;
            }
            let theirs: Option<HashMap<String, (Timestamp, String)>> = get_json(
                state,
                &addr,
                format!("/suffix/{}/{part}/{suffix:03x}", encode(&t.device)),
            )
            .await;
            let Some(theirs) = theirs else {
                confirmed_everywhere = false;
                stats.failures += 1;
                continue;
            };
            let d = dev.clone();
            let suffix = *suffix;
            let ours =
                match tokio::task::spawn_blocking(move || d.db.objects_in_suffix(part, suffix))
                    .await
                {
                    Ok(Ok(o)) => o,
                    _ => {
                        confirmed_everywhere = false;
                        continue;
                    }
                };
            for (hash, rec) in ours {
                let newer_there = theirs
                    .get(&hash.to_hex())
                    .is_some_and(|(ts, _)| *ts >= rec.timestamp);
                if newer_there {
                    continue;
                }
                if push(state, dev, &addr, &t.device, part, &hash, &rec).await {
                    stats.objects_pushed += 1;
                    pushed_any = true;
                    if rec.kind == ObjectKind::Data {
                        stats.bytes_pushed += rec.size;
                        tokio::time::sleep(limit.consume(rec.size)).await;
                    }
                } else {
                    confirmed_everywhere = false;
                    stats.failures += 1;
                }
            }
        }
    }
    if pushed_any {
        stats.partitions_synced += 1;
    }
    if !is_primary && confirmed_everywhere {
        // Every primary holds our versions or newer: the handoff copy goes.
        let d = dev.clone();
        if let Ok(Ok(removed)) =
            tokio::task::spawn_blocking(move || d.db.remove_object_partition(part)).await
        {
            for (hash, rec) in removed {
                if rec.kind == ObjectKind::Data && !rec.inline {
                    dev.files.remove(part, &hash, rec.timestamp).await;
                }
            }
            stats.handoffs_removed += 1;
        }
    }
}

/// Sends one version to a peer with its original timestamp. A peer that
/// already holds it or something newer answers 409, which counts as done.
async fn push(
    state: &Arc<NodeState>,
    dev: &Arc<Device>,
    addr: &str,
    target_dev: &str,
    part: u32,
    hash: &NameHash,
    rec: &ObjectRecord,
) -> bool {
    let path = format!(
        "/obj/{}/{part}/{}/{}/{}",
        encode(target_dev),
        encode(&rec.account),
        encode(&rec.container),
        encode(&rec.object)
    );
    let mut headers = HeaderMap::new();
    set_header(&mut headers, "x-timestamp", &rec.timestamp.to_string());
    let (method, body): (Method, Body) = match rec.kind {
        ObjectKind::Tombstone => (Method::DELETE, empty()),
        ObjectKind::Data => {
            if rec.is_expired(now_secs()) {
                // Expired data is not worth moving; the expirer reclaims it.
                return true;
            }
            // Sent checked, as a GET is: a bad body is quarantined here
            // rather than copied.
            let body = if rec.size == 0 {
                empty()
            } else {
                let stored = StoredBody {
                    state: state.clone(),
                    device: dev.clone(),
                    part,
                    hash: *hash,
                    record: rec.clone(),
                };
                match stored.read(0, rec.size - 1).await {
                    Ok(b) => b,
                    Err(_) => return false,
                }
            };
            set_header(&mut headers, "content-length", &rec.size.to_string());
            set_header(&mut headers, "content-type", &rec.content_type);
            set_header(&mut headers, "etag", &rec.etag);
            // The receiver takes the ETag as recorded and checks the body
            // against the blake3 recorded here.
            set_header(&mut headers, "x-nubo-etag", &rec.etag);
            set_header(&mut headers, "x-nubo-blake3", &rec.blake3);
            if let Some(at) = rec.delete_at {
                set_header(&mut headers, "x-delete-at", &at.to_string());
            }
            for (k, v) in &rec.headers {
                set_header(&mut headers, k, v);
            }
            (Method::PUT, body)
        }
    };
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr);
    if let Some(h) = b.headers_mut() {
        h.extend(headers);
    }
    let Ok(req) = b.body(body) else { return false };
    let Ok(conn) = state.client.connect(addr).await else {
        return false;
    };
    match conn.send_streaming(req).await {
        Ok(resp) => {
            let st = resp.status();
            let _ = resp.into_body().collect().await;
            st.is_success()
                || st == StatusCode::CONFLICT
                || (st == StatusCode::NOT_FOUND && rec.kind == ObjectKind::Tombstone)
        }
        Err(_) => false,
    }
}

/// `GET /hashes/{device}/{partition}`
pub async fn hashes_response(dev: Arc<Device>, part: u32) -> http::Response<Body> {
    match tokio::task::spawn_blocking(move || dev.db.suffix_hashes(part)).await {
        Ok(Ok(h)) => {
            let map: HashMap<String, String> = h
                .into_iter()
                .map(|(s, v)| (format!("{s:03x}"), hex::encode(v)))
                .collect();
            json(&map)
        }
        _ => service_kit::http_util::status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `GET /suffix/{device}/{partition}/{suffix}`
pub async fn suffix_response(dev: Arc<Device>, part: u32, suffix: u16) -> http::Response<Body> {
    match tokio::task::spawn_blocking(move || dev.db.objects_in_suffix(part, suffix)).await {
        Ok(Ok(list)) => {
            let map: HashMap<String, (Timestamp, &str)> = list
                .into_iter()
                .map(|(h, r)| {
                    (
                        h.to_hex(),
                        (
                            r.timestamp,
                            if r.kind == ObjectKind::Data {
                                "data"
                            } else {
                                "tombstone"
                            },
                        ),
                    )
                })
                .collect();
            json(&map)
        }
        _ => service_kit::http_util::status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn json<T: Serialize>(v: &T) -> http::Response<Body> {
    let mut r = http::Response::new(service_kit::http_util::full(
        serde_json::to_vec(v).expect("json"),
    ));
    set_header(r.headers_mut(), "content-type", "application/json");
    r
}

/// Runs passes forever, `interval` apart.
pub async fn run(state: Arc<NodeState>, interval: std::time::Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let _one = state.replicating.lock().await;
        let stats = replicate_once(&state).await;
        tracing::info!(?stats, "replication pass");
        *state
            .last_replication
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), stats));
    }
}
