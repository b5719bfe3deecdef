//! Image bytes in the object store, through our own Swift API on the proxy
//! (never through the proxy's or a node's file system), in the registry's
//! container of its service account.
//!
//! An image is stored as Glance's Swift store stores a large one: segments
//! of `segment_bytes` (`<id>-00001`, `<id>-00002`, ...) and a Static Large
//! Object manifest at `<id>`, so an image may be larger than one object
//! (5 GiB). Writes stream: a segment is sent as it arrives, its ETag
//! checked against our MD5 of what was sent; nothing is buffered whole.
//! A GET of `<id>` streams the segments in order; a delete takes the
//! segments and the manifest (`?multipart-manifest=delete`). Images stored
//! as one plain object before segmenting read and delete the same way.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use object_store::http_util::{empty, full, header_str, Body};
use object_store::node_client::{NodeClient, Timeouts};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store unreachable: {0}")]
    Unreachable(String),
    #[error("object store refused the credentials")]
    Auth,
    #[error("object store answered {0} to {1}")]
    Status(StatusCode, String),
    #[error("reading {0}: {1}")]
    File(String, std::io::Error),
}

/// Where the registry keeps images, from its config.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig {
    /// The proxy, `host:port`.
    pub proxy: String,
    /// A TempAuth user (`account:user`) and key.
    pub user: String,
    pub key: String,
    #[serde(default = "images")]
    pub container: String,
    /// The size of each segment of an image (at most the store's 5 GiB
    /// object limit).
    #[serde(default = "one_gib")]
    pub segment_bytes: u64,
}

fn images() -> String {
    "images".into()
}
fn one_gib() -> u64 {
    1 << 30
}

/// What the store received for an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub size: u64,
    /// MD5 of the whole image, hex, over exactly the bytes sent.
    pub md5: String,
    pub segments: usize,
}

/// `<name>-00001`: the name of segment `n` (from 1) of image `name`.
pub fn segment_name(name: &str, n: usize) -> String {
    format!("{name}-{n:05}")
}

pub struct ObjectStore {
    config: StoreConfig,
    client: NodeClient,
    /// (token, storage path `/v1/AUTH_x`, when to log in again) from the
    /// last login.
    session: tokio::sync::Mutex<Option<(String, String, std::time::Instant)>>,
}

impl ObjectStore {
    pub fn new(config: StoreConfig) -> ObjectStore {
        ObjectStore {
            config,
            client: NodeClient::new(Timeouts {
                connect: Duration::from_secs(2),
                node: Duration::from_secs(60),
            }),
            session: tokio::sync::Mutex::new(None),
        }
    }

    async fn login(&self) -> Result<(String, String, std::time::Instant), StoreError> {
        let req = Request::builder()
            .uri("/auth/v1.0")
            .header("host", &self.config.proxy)
            .header("x-auth-user", &self.config.user)
            .header("x-auth-key", &self.config.key)
            .body(empty())
            .expect("valid request");
        let resp = self
            .client
            .send(&self.config.proxy, req)
            .await
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        let token = header_str(resp.headers(), "x-auth-token").map(|t| t.into_owned());
        // Renew an hour before the token expires (or in an hour when the
        // proxy does not say).
        let ttl: u64 = header_str(resp.headers(), "x-auth-token-expires")
            .and_then(|v| v.parse().ok())
            .unwrap_or(7200);
        let renew_at =
            std::time::Instant::now() + Duration::from_secs(ttl.saturating_sub(3600).max(60));
        let url = header_str(resp.headers(), "x-storage-url").map(|t| t.into_owned());
        let _ = resp.into_body().collect().await;
        let (Some(token), Some(url)) = (token, url) else {
            return Err(StoreError::Auth);
        };
        let path = url
            .find("/v1/")
            .map(|i| url[i..].to_string())
            .ok_or(StoreError::Auth)?;
        Ok((token, path, renew_at))
    }

    async fn session(&self, renew: bool) -> Result<(String, String), StoreError> {
        let mut s = self.session.lock().await;
        let stale = s
            .as_ref()
            .is_none_or(|(_, _, at)| std::time::Instant::now() >= *at);
        if renew || stale {
            *s = Some(self.login().await?);
        }
        let (token, path, _) = s.clone().expect("set above");
        Ok((token, path))
    }

    /// Streams the chunks `data` yields into the image `name`: segments of
    /// `segment_bytes`, then the manifest. Ends when `data` closes; the
    /// caller decides afterwards whether what was stored is the whole image
    /// (comparing [`Stored`] with what it received) and deletes it if not.
    /// On an error here, the segments already written are deleted.
    pub async fn put_stream(
        &self,
        name: &str,
        mut data: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<Stored, StoreError> {
        let segment_bytes = self.config.segment_bytes.max(1);
        let mut written: Vec<(String, String, u64)> = Vec::new();
        let mut whole = Md5::new();
        let mut pending: Option<Bytes> = None;
        let outcome: Result<(), StoreError> = async {
            loop {
                // A segment starts only when there is data for it (or for an
                // empty image, once).
                let first = match pending.take() {
                    Some(c) => Some(c),
                    None => data.recv().await,
                };
                let Some(first) = first.or_else(|| written.is_empty().then(Bytes::new)) else {
                    return Ok(());
                };
                let seg = segment_name(name, written.len() + 1);
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                let body = BodyExt::boxed_unsync(http_body_util::StreamBody::new(
                    futures_util::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|f| (f, rx))
                    }),
                ));
                let feed = async {
                    let mut md5 = Md5::new();
                    let mut n = 0u64;
                    let mut next = Some(first);
                    while let Some(chunk) = next {
                        let room = (segment_bytes - n) as usize;
                        let now = if chunk.len() > room {
                            pending = Some(chunk.slice(room..));
                            chunk.slice(..room)
                        } else {
                            chunk
                        };
                        md5.update(&now);
                        whole.update(&now);
                        n += now.len() as u64;
                        let frame: Result<_, object_store::http_util::BoxError> =
                            Ok(hyper::body::Frame::data(now));
                        if tx.send(frame).await.is_err() || pending.is_some() || n == segment_bytes
                        {
                            break;
                        }
                        next = data.recv().await;
                    }
                    drop(tx);
                    (hex::encode(md5.finalize()), n)
                };
                let (etag, (md5, n)) = tokio::join!(self.put_object(&seg, body), feed);
                let etag = etag?;
                if etag != md5 {
                    return Err(StoreError::Status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "segment {seg}: the store's ETag {etag} is not the MD5 sent ({md5})"
                        ),
                    ));
                }
                written.push((seg, etag, n));
            }
        }
        .await;
        if let Err(e) = outcome {
            for (seg, _, _) in &written {
                let _ = self.delete_plain(seg).await;
            }
            return Err(e);
        }
        if let Err(e) = self.put_manifest(name, &written).await {
            for (seg, _, _) in &written {
                let _ = self.delete_plain(seg).await;
            }
            return Err(e);
        }
        Ok(Stored {
            size: written.iter().map(|(_, _, n)| n).sum(),
            md5: hex::encode(whole.finalize()),
            segments: written.len(),
        })
    }

    /// One object from a streaming body (one attempt: a stream cannot be
    /// replayed); the ETag (MD5) the store computed.
    async fn put_object(&self, name: &str, body: Body) -> Result<String, StoreError> {
        let (token, path) = self.session(false).await?;
        let req = Request::builder()
            .method(Method::PUT)
            .uri(format!(
                "{path}/{}/{}",
                object_store::http_util::encode(&self.config.container),
                object_store::http_util::encode(name)
            ))
            .header("host", &self.config.proxy)
            .header("x-auth-token", token)
            .header("content-type", "application/octet-stream")
            .header("transfer-encoding", "chunked")
            .body(body)
            .expect("valid request");
        let conn = self
            .client
            .connect(&self.config.proxy)
            .await
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        let resp = conn
            .send_streaming(req)
            .await
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        let st = resp.status();
        let etag = header_str(resp.headers(), "etag").map(|e| e.trim_matches('"').to_string());
        let _ = resp.into_body().collect().await;
        match (st.is_success(), etag) {
            (true, Some(e)) => Ok(e),
            (true, None) => Err(StoreError::Status(st, format!("storing {name}: no ETag"))),
            (false, _) => Err(StoreError::Status(st, format!("storing {name}"))),
        }
    }

    /// The Static Large Object manifest naming `segments` (name, ETag, size).
    async fn put_manifest(
        &self,
        name: &str,
        segments: &[(String, String, u64)],
    ) -> Result<(), StoreError> {
        let list: Vec<serde_json::Value> = segments
            .iter()
            .map(|(seg, etag, n)| {
                serde_json::json!({
                    "path": format!("/{}/{seg}", self.config.container),
                    "etag": etag,
                    "size_bytes": n,
                })
            })
            .collect();
        let manifest = Bytes::from(serde_json::to_vec(&list).expect("JSON serializes"));
        let headers = [("content-type", "application/octet-stream".to_string())];
        let resp = self
            .send(
                Method::PUT,
                Some(name),
                Some("multipart-manifest=put"),
                &headers,
                || Ok(full(manifest.clone())),
                false,
            )
            .await?;
        Self::expect_success(resp, format!("storing the manifest of {name}")).await
    }

    /// Stores a file under `name` (segmented, as [`Self::put_stream`]), and
    /// checks that the store received data hashing to `md5_hex`.
    pub async fn put_file(&self, name: &str, path: &Path, md5_hex: &str) -> Result<(), StoreError> {
        let file = std::fs::File::open(path)
            .map_err(|e| StoreError::File(path.display().to_string(), e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Read;
            let mut file = file;
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.blocking_send(Bytes::from(buf)).is_err() {
                    return Ok(());
                }
            }
        });
        let stored = self.put_stream(name, rx).await;
        let read = reader
            .await
            .map_err(|e| StoreError::File(path.display().to_string(), std::io::Error::other(e)))?;
        let stored = stored?;
        let fail = |why: String| StoreError::Status(StatusCode::UNPROCESSABLE_ENTITY, why);
        if let Err(e) = read {
            let _ = self.delete(name).await;
            return Err(StoreError::File(path.display().to_string(), e));
        }
        if stored.md5 != md5_hex {
            let _ = self.delete(name).await;
            return Err(fail(format!(
                "storing {name}: sent data hashing to {}, not {md5_hex}",
                stored.md5
            )));
        }
        Ok(())
    }

    /// Sends a request to `<storage path>/<container>[/<name>]`, logging in
    /// again once if the token has expired. `body` makes a fresh body for
    /// each attempt.
    async fn send(
        &self,
        method: Method,
        name: Option<&str>,
        query: Option<&str>,
        headers: &[(&str, String)],
        body: impl Fn() -> Result<Body, StoreError>,
        streaming: bool,
    ) -> Result<Response<Incoming>, StoreError> {
        for attempt in 0..2 {
            let (token, path) = self.session(attempt > 0).await?;
            let mut uri = format!(
                "{path}/{}",
                object_store::http_util::encode(&self.config.container)
            );
            if let Some(n) = name {
                uri.push('/');
                uri.push_str(&object_store::http_util::encode(n));
            }
            if let Some(q) = query {
                uri.push('?');
                uri.push_str(q);
            }
            let mut b = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header("host", &self.config.proxy)
                .header("x-auth-token", token);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            let req = b.body(body()?).expect("valid request");
            let conn = self
                .client
                .connect(&self.config.proxy)
                .await
                .map_err(|e| StoreError::Unreachable(e.to_string()))?;
            let resp = if streaming {
                conn.send_streaming(req).await
            } else {
                conn.send(req).await
            }
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let _ = resp.into_body().collect().await;
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn expect_success(resp: Response<Incoming>, what: String) -> Result<(), StoreError> {
        let st = resp.status();
        let _ = resp.into_body().collect().await;
        if st.is_success() {
            Ok(())
        } else {
            Err(StoreError::Status(st, what))
        }
    }

    /// Creates the container (idempotent).
    pub async fn ensure_container(&self) -> Result<(), StoreError> {
        let resp = self
            .send(Method::PUT, None, None, &[], || Ok(empty()), false)
            .await?;
        Self::expect_success(
            resp,
            format!("creating container {}", self.config.container),
        )
        .await
    }

    /// The image's bytes as a stream.
    pub async fn get(&self, name: &str) -> Result<Response<Incoming>, StoreError> {
        self.get_range(name, None).await
    }

    /// The image's bytes, or one `Range` of them (206), as a stream.
    pub async fn get_range(
        &self,
        name: &str,
        range: Option<&str>,
    ) -> Result<Response<Incoming>, StoreError> {
        let headers: Vec<(&str, String)> = range
            .map(|r| ("range", r.to_string()))
            .into_iter()
            .collect();
        let resp = self
            .send(
                Method::GET,
                Some(name),
                None,
                &headers,
                || Ok(empty()),
                false,
            )
            .await?;
        if !resp.status().is_success() {
            let st = resp.status();
            let _ = resp.into_body().collect().await;
            return Err(StoreError::Status(st, format!("reading {name}")));
        }
        Ok(resp)
    }

    /// Deletes an image: its segments and manifest (or the one object an
    /// image stored before segmenting is); one already gone counts as
    /// deleted.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let headers = [("accept", "application/json".to_string())];
        let resp = self
            .send(
                Method::DELETE,
                Some(name),
                Some("multipart-manifest=delete"),
                &headers,
                || Ok(empty()),
                false,
            )
            .await?;
        let st = resp.status();
        if st == StatusCode::NOT_FOUND {
            let _ = resp.into_body().collect().await;
            return Ok(());
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let clean = report["Errors"].as_array().is_none_or(Vec::is_empty);
        if st.is_success() && clean {
            Ok(())
        } else {
            Err(StoreError::Status(st, format!("deleting {name}: {report}")))
        }
    }

    /// Deletes one plain object (a segment).
    async fn delete_plain(&self, name: &str) -> Result<(), StoreError> {
        let resp = self
            .send(Method::DELETE, Some(name), None, &[], || Ok(empty()), false)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            let _ = resp.into_body().collect().await;
            return Ok(());
        }
        Self::expect_success(resp, format!("deleting {name}")).await
    }
}
