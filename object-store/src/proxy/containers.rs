//! Containers and accounts in the object layer: existence (with a short
//! cache, as Swift's memcache), metadata writes, deletes of empty
//! containers, and listings, typed ([`ListQuery`] in, [`ListingEntry`]s
//! out) for both front ends.

use super::backend::Path;
use super::object_versions::{is_hidden, versions_container};
use super::objects::{
    client_headers, with_timestamp, write_error, ObjectError, ObjectResult, Objects,
};
use crate::records::ListingEntry;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use service_kit::http_util::{encode, set_header};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whose listing.
#[derive(Clone, Debug)]
pub enum ListTarget {
    Account(String),
    Container(String, String),
}

impl ListTarget {
    fn node(&self) -> Path {
        match self {
            ListTarget::Account(a) => Path::Account(a.clone()),
            ListTarget::Container(a, c) => Path::Container(a.clone(), c.clone()),
        }
    }
}

/// Which entries of a listing.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Newest name first.
    pub(crate) reverse: bool,
    /// At most this many entries (the nodes' page size when `None`).
    pub(crate) limit: Option<usize>,
    /// Names with this after the prefix are grouped into one `subdir`.
    pub(crate) delimiter: Option<String>,
    /// Swift's `path=`: one level under the prefix, no subdirs.
    pub(crate) path_only: bool,
    /// Names that start with this (empty: all).
    pub(crate) prefix: String,
    /// Names after this one (empty: from the first).
    pub(crate) marker: String,
    /// Names before this one (empty: to the last).
    pub(crate) end_marker: String,
}

impl ListQuery {
    fn node_query(&self) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("prefix", &self.prefix),
            ("marker", &self.marker),
            ("end_marker", &self.end_marker),
        ] {
            if !v.is_empty() {
                q.push(format!("{k}={}", encode(v)));
            }
        }
        if let Some(d) = &self.delimiter {
            q.push(format!("delimiter={}", encode(d)));
        }
        if self.path_only {
            q.push("path_only=true".into());
        }
        if let Some(n) = self.limit {
            q.push(format!("limit={n}"));
        }
        if self.reverse {
            q.push("reverse=true".into());
        }
        q.join("&")
    }
}

/// A page of a listing, with the account's or container's headers
/// (counts, metadata).
pub struct Listing {
    pub headers: HeaderMap,
    pub entries: Vec<ListingEntry>,
}

/// Accounts and containers seen lately are trusted this long (Swift
/// caches them in memcache).
const RECENT_TTL: Duration = Duration::from_secs(5);

/// Accounts or containers a proxy saw lately: that they exist, and their
/// headers if it read them. A write through this proxy keeps the name and
/// drops the headers, so that changed metadata (quotas, versioning) is
/// read afresh.
pub(crate) struct Recent<K> {
    entries: Mutex<HashMap<K, Seen>>,
}

/// When a name was seen, and its headers if they were read.
type Seen = (Instant, Option<Arc<HeaderMap>>);

impl<K: Hash + Eq> Recent<K> {
    pub(crate) fn new() -> Recent<K> {
        Recent {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, Seen>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `None`: not seen lately; `Some(None)`: it exists, headers unknown.
    fn get(&self, key: &K) -> Option<Option<Arc<HeaderMap>>> {
        self.entries()
            .get(key)
            .filter(|(seen, _)| seen.elapsed() < RECENT_TTL)
            .map(|(_, h)| h.clone())
    }

    fn remember(&self, key: K, headers: Option<Arc<HeaderMap>>) {
        let mut entries = self.entries();
        if entries.len() > 100_000 {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), headers));
    }

    fn forget(&self, key: &K) {
        self.entries().remove(key);
    }
}

impl Objects {
    fn remember_container(
        &self,
        account: &str,
        container: &str,
        exists: bool,
        headers: Option<Arc<HeaderMap>>,
    ) {
        let key = (account.to_string(), container.to_string());
        if exists {
            self.known_containers.remember(key, headers);
        } else {
            self.known_containers.forget(&key);
        }
    }

    fn known(&self, account: &str, container: &str) -> Option<Option<Arc<HeaderMap>>> {
        self.known_containers
            .get(&(account.to_string(), container.to_string()))
    }

    /// Whether a container exists (a recent positive answer is trusted).
    pub async fn container_exists(&self, account: &str, container: &str) -> bool {
        self.known(account, container).is_some()
            || self.head_container(account, container).await.is_ok()
    }

    /// A container's headers as recently seen (at most
    /// [`RECENT_TTL`] old), or as read now.
    pub async fn container_meta(
        &self,
        account: &str,
        container: &str,
    ) -> ObjectResult<Arc<HeaderMap>> {
        if let Some(Some(h)) = self.known(account, container) {
            return Ok(h);
        }
        self.head_container(account, container).await.map(Arc::new)
    }

    /// A container's headers (counts, metadata), the newest replica's.
    pub async fn head_container(&self, account: &str, container: &str) -> ObjectResult<HeaderMap> {
        let r = self
            .backend
            .head_newest(
                &Path::Container(account.into(), container.into()),
                HeaderMap::new(),
            )
            .await;
        let exists = r.status().is_success();
        let headers = client_headers(r.headers());
        let known = exists.then(|| Arc::new(headers.clone()));
        self.remember_container(account, container, exists, known);
        match r.status() {
            s if s.is_success() => Ok(headers),
            StatusCode::NOT_FOUND => Err(ObjectError::NoSuchContainer),
            s => Err(ObjectError::Unavailable(s)),
        }
    }

    /// An account's headers; an account nobody wrote to yet exists, empty
    /// (Swift's `account_autocreate`).
    pub async fn head_account(&self, account: &str) -> ObjectResult<HeaderMap> {
        let r = self
            .backend
            .head_newest(&Path::Account(account.into()), HeaderMap::new())
            .await;
        let headers = match r.status() {
            s if s.is_success() => client_headers(r.headers()),
            StatusCode::NOT_FOUND => empty_account_headers(),
            s => return Err(ObjectError::Unavailable(s)),
        };
        self.known_accounts
            .remember(account.to_string(), Some(Arc::new(headers.clone())));
        Ok(headers)
    }

    /// An account's headers as recently seen (at most
    /// [`RECENT_TTL`] old), or as read now.
    pub async fn account_meta(&self, account: &str) -> ObjectResult<Arc<HeaderMap>> {
        match self.known_accounts.get(&account.to_string()) {
            Some(Some(h)) => Ok(h),
            _ => self.head_account(account).await.map(Arc::new),
        }
    }

    /// A metadata write (PUT or POST) of an account or a container: the
    /// status of the quorum.
    async fn write_record(
        &self,
        method: Method,
        path: Path,
        meta: HeaderMap,
        missing: ObjectError,
    ) -> ObjectResult<StatusCode> {
        let out = self
            .backend
            .write(method, &path, with_timestamp(meta), Bytes::new(), |_, _| {})
            .await;
        if !out.status.is_success() {
            return Err(write_error(&out, missing));
        }
        Ok(out.status)
    }

    /// Creates a container or updates its metadata (node-form headers:
    /// `x-container-meta-*`, ACLs, sync keys); `true` if it was created.
    pub async fn put_container(
        &self,
        account: &str,
        container: &str,
        meta: HeaderMap,
    ) -> ObjectResult<bool> {
        let path = Path::Container(account.into(), container.into());
        let status = self
            .write_record(Method::PUT, path, meta, ObjectError::NoSuchContainer)
            .await?;
        self.remember_container(account, container, true, None);
        Ok(status == StatusCode::CREATED)
    }

    /// Updates a container's metadata.
    pub async fn post_container(
        &self,
        account: &str,
        container: &str,
        meta: HeaderMap,
    ) -> ObjectResult<()> {
        let path = Path::Container(account.into(), container.into());
        self.write_record(Method::POST, path, meta, ObjectError::NoSuchContainer)
            .await?;
        // Its metadata (quotas) is read afresh next time.
        self.remember_container(account, container, true, None);
        Ok(())
    }

    /// Updates an account's metadata.
    pub async fn post_account(&self, account: &str, meta: HeaderMap) -> ObjectResult<()> {
        let path = Path::Account(account.into());
        let missing = ObjectError::Unavailable(StatusCode::NOT_FOUND);
        self.write_record(Method::POST, path, meta, missing).await?;
        // Its metadata (a quota) is read afresh next time.
        self.known_accounts.forget(&account.to_string());
        Ok(())
    }

    /// Deletes an empty container. Listing rows reach container replicas
    /// asynchronously: right after a client deleted the last object, a
    /// replica may still count it and refuse. When the listing already
    /// shows nothing, the delete is retried for up to 3 s so that
    /// delete-all-then-remove works.
    pub async fn delete_container(&self, account: &str, container: &str) -> ObjectResult<()> {
        // A container whose versions are kept is empty only without them.
        let versions = ListTarget::Container(account.into(), versions_container(container));
        let one = ListQuery {
            limit: Some(1),
            ..Default::default()
        };
        match self.list(&versions, &one).await {
            Ok(page) if !page.entries.is_empty() => return Err(ObjectError::ContainerNotEmpty),
            _ => {}
        }
        self.delete_empty_container(account, container).await?;
        if !is_hidden(container) {
            let _ = self
                .delete_empty_container(account, &versions_container(container))
                .await;
        }
        Ok(())
    }

    async fn delete_empty_container(&self, account: &str, container: &str) -> ObjectResult<()> {
        let path = Path::Container(account.into(), container.into());
        for _ in 0..30 {
            let out = self
                .backend
                .write(
                    Method::DELETE,
                    &path,
                    with_timestamp(HeaderMap::new()),
                    Bytes::new(),
                    |_, _| {},
                )
                .await;
            if out.status.is_success() {
                self.remember_container(account, container, false, None);
                return Ok(());
            }
            if out.status != StatusCode::CONFLICT {
                return Err(write_error(&out, ObjectError::NoSuchContainer));
            }
            // A replica that already deleted the container lists nothing.
            let query = ListQuery {
                limit: Some(1),
                ..Default::default()
            };
            match self
                .list(
                    &ListTarget::Container(account.into(), container.into()),
                    &query,
                )
                .await
            {
                Ok(l) if !l.entries.is_empty() => return Err(ObjectError::ContainerNotEmpty),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ObjectError::ContainerNotEmpty)
    }

    /// One page of an account's containers or a container's objects.
    pub async fn list(&self, target: &ListTarget, query: &ListQuery) -> ObjectResult<Listing> {
        let r = self
            .backend
            .read(
                Method::GET,
                &target.node(),
                HeaderMap::new(),
                Some(&query.node_query()),
            )
            .await;
        let (parts, body) = r.into_parts();
        match parts.status {
            s if s.is_success() => {
                let bytes = body
                    .collect()
                    .await
                    .map_err(|_| ObjectError::Unavailable(StatusCode::SERVICE_UNAVAILABLE))?
                    .to_bytes();
                let mut entries: Vec<ListingEntry> =
                    serde_json::from_slice(&bytes).map_err(|e| {
                        tracing::error!(error = %e, "a node sent a listing that does not parse");
                        ObjectError::Unavailable(StatusCode::BAD_GATEWAY)
                    })?;
                if let ListTarget::Account(_) = target {
                    // Versions containers are the proxy's, not the client's.
                    entries.retain(|e| !is_hidden(e.name()));
                }
                Ok(Listing {
                    headers: client_headers(&parts.headers),
                    entries,
                })
            }
            StatusCode::NOT_FOUND => match target {
                ListTarget::Account(_) => Ok(Listing {
                    headers: empty_account_headers(),
                    entries: Vec::new(),
                }),
                ListTarget::Container(..) => Err(ObjectError::NoSuchContainer),
            },
            s => Err(ObjectError::Unavailable(s)),
        }
    }

    /// Every entry of a listing from `query`'s marker on, page by page
    /// (large-object segments, multipart parts), at most `cap` of them.
    pub async fn list_all(
        &self,
        target: &ListTarget,
        mut query: ListQuery,
        cap: usize,
    ) -> ObjectResult<Vec<ListingEntry>> {
        let mut out = Vec::new();
        loop {
            let page = self.list(target, &query).await?.entries;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            query.marker = last.name().to_string();
            out.extend(page);
            if out.len() > cap {
                return Err(ObjectError::InvalidArgument(format!(
                    "more than {cap} entries"
                )));
            }
        }
    }
}

/// What an account nobody wrote to reports.
fn empty_account_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for k in [
        "x-account-container-count",
        "x-account-object-count",
        "x-account-bytes-used",
    ] {
        set_header(&mut h, k, "0");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_are_encoded() {
        let q = ListQuery {
            prefix: "a b/".into(),
            delimiter: Some("/".into()),
            limit: Some(2),
            reverse: true,
            ..Default::default()
        };
        assert_eq!(
            q.node_query(),
            "prefix=a%20b%2F&delimiter=%2F&limit=2&reverse=true"
        );
    }
}
