//! The registry's client of the object store: plain objects through our
//! own Swift API on the proxy (never through the proxy's or a node's file
//! system), in the registry's container of its service account. What an
//! image is made of (chunks and a manifest) is [`crate::chunks`]'s.

#![cfg(feature = "service")]

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use service_kit::client::{HttpClient, Timeouts};
use service_kit::http_util::{empty, full, header_str, Body};
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
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The proxy, `host:port`.
    pub proxy: String,
    /// A TempAuth user (`account:user`) and key.
    pub user: String,
    pub key: String,
    #[serde(default = "images")]
    pub container: String,
}

fn images() -> String {
    "images".into()
}
pub struct ObjectStore {
    config: StoreConfig,
    client: HttpClient,
    /// (token, storage path `/v1/AUTH_x`, when to log in again) from the
    /// last login.
    session: tokio::sync::Mutex<Option<(String, String, std::time::Instant)>>,
}

impl ObjectStore {
    pub fn new(config: StoreConfig) -> ObjectStore {
        ObjectStore {
            config,
            client: HttpClient::new(Timeouts {
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

    /// One small object from memory, with extra headers (user metadata);
    /// the ETag (MD5) the store computed.
    pub async fn put_object_meta(
        &self,
        name: &str,
        data: Bytes,
        meta: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let mut headers = vec![
            ("content-type", "application/octet-stream".to_string()),
            ("content-length", data.len().to_string()),
        ];
        headers.extend(meta.iter().map(|(k, v)| (*k, v.to_string())));
        let resp = self
            .send(
                Method::PUT,
                Some(name),
                None,
                &headers,
                || Ok(full(data.clone())),
                false,
            )
            .await?;
        let st = resp.status();
        let etag = header_str(resp.headers(), "etag").map(|e| e.trim_matches('"').to_string());
        let _ = resp.into_body().collect().await;
        match (st, etag) {
            // A newer write of the same name won (Swift's 202): another
            // image's upload stored the same chunk at the same moment. A
            // chunk's name is its content's hash, so what is stored is what
            // was sent; the caller checks the stored ETag.
            (StatusCode::ACCEPTED, None) => {
                let h = self.head(name).await?;
                header_str(&h, "etag")
                    .map(|e| e.trim_matches('"').to_string())
                    .ok_or_else(|| StoreError::Status(st, format!("storing {name}: no ETag")))
            }
            (st, Some(e)) if st.is_success() => Ok(e),
            (st, _) if st.is_success() => {
                Err(StoreError::Status(st, format!("storing {name}: no ETag")))
            }
            _ => Err(StoreError::Status(st, format!("storing {name}"))),
        }
    }

    /// One small object from memory; the ETag (MD5) the store computed.
    pub async fn put_bytes(&self, name: &str, data: Bytes) -> Result<String, StoreError> {
        self.put_object_meta(name, data, &[]).await
    }

    /// An object's headers (an error for anything but success).
    pub async fn head(&self, name: &str) -> Result<http::HeaderMap, StoreError> {
        let resp = self
            .send(Method::HEAD, Some(name), None, &[], || Ok(empty()), false)
            .await?;
        let st = resp.status();
        let (parts, body) = resp.into_parts();
        let _ = body.collect().await;
        if !st.is_success() {
            return Err(StoreError::Status(st, format!("reading {name}")));
        }
        Ok(parts.headers)
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
                service_kit::http_util::encode(&self.config.container)
            );
            if let Some(n) = name {
                uri.push('/');
                uri.push_str(&service_kit::http_util::encode(n));
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

    /// An object's bytes, or one `Range` of them (206), as a stream.
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

    /// Deletes an object, with its segments if it is a Static Large Object
    /// (images stored before chunking); one already gone counts as deleted.
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

    /// Deletes one plain object (a chunk).
    pub async fn delete_plain(&self, name: &str) -> Result<(), StoreError> {
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
