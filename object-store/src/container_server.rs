//! Containers on a storage node: the record (timestamps, metadata, counts)
//! and the object listing, fed by listing rows from object servers. Every
//! change queues the container's stats for its account's servers.

use crate::device_db::{ContainerChange, DbError, ListParams, Listed, RowToApply};
use crate::object_server::request_timestamp;
use crate::records::{
    ContainerRecord, ContainerRow, ListingEntry, MetaMap, ObjectRow, PendingUpdate,
    Target as UpdateTarget, Update,
};
use crate::storage_node::{NodeState, Target};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use ring_tools::{NameHash, Ring};
use service_kit::server::RequestBody;

use service_kit::http_util::{full, query_pairs, set_header, status, text, Body};
use service_kit::timestamp::Timestamp;
use std::sync::Arc;

/// Metadata headers carried by a PUT/POST, stamped with its timestamp. An
/// empty value removes the key.
pub fn meta_from_headers(headers: &HeaderMap, prefixes: &[&str], ts: Timestamp) -> MetaMap {
    headers
        .iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.as_str().starts_with(p)))
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                (String::from_utf8_lossy(v.as_bytes()).into_owned(), ts),
            )
        })
        .collect()
}

pub const CONTAINER_META: [&str; 6] = [
    "x-container-meta-",
    "x-container-sysmeta-",
    "x-container-read",
    "x-container-write",
    "x-versions-location",
    "x-history-location",
];

/// Listing parameters from the query string (validated by the proxy).
pub fn list_params(query: Option<&str>) -> ListParams {
    let mut p = ListParams {
        limit: 10_000,
        ..Default::default()
    };
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "prefix" => p.prefix = v,
            "delimiter" => p.delimiter = Some(v).filter(|d| !d.is_empty()),
            "path_only" => p.path_only = v == "true",
            "marker" => p.marker = v,
            "end_marker" => p.end_marker = v,
            "limit" => p.limit = v.parse().unwrap_or(10_000).min(10_000),
            "reverse" => p.reverse = service_kit::http_util::truthy(&v),
            _ => {}
        }
    }
    p
}

fn db_error(e: DbError) -> Response<Body> {
    match e {
        DbError::NotFound => status(StatusCode::NOT_FOUND),
        DbError::Deleted(ts) => {
            // The deletion's time lets the proxy rank it against a replica
            // that has not heard of it yet.
            let mut r = status(StatusCode::NOT_FOUND);
            set_header(r.headers_mut(), "x-backend-timestamp", &ts.to_string());
            r
        }
        DbError::NotEmpty => text(
            StatusCode::CONFLICT,
            "There was a conflict when trying to complete your request.",
        ),
        DbError::Conflict(_) => status(StatusCode::ACCEPTED),
        other => text(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

pub async fn handle(t: Target<'_>, req: Request<RequestBody>) -> Response<Body> {
    let (account, container) = (t.names[0].clone(), t.names[1].clone());
    let hash = t.state.ring().hasher().container(&account, &container);
    let part = t.partition;
    let dev = t.device.clone();
    let change = match *req.method() {
        Method::GET | Method::HEAD => {
            let params = list_params(req.uri().query());
            let head = req.method() == Method::HEAD;
            let result = tokio::task::spawn_blocking(move || {
                let rec = dev.db.container(part, &hash)?.ok_or(DbError::NotFound)?;
                if !rec.exists() {
                    return Err(DbError::Deleted(rec.delete_timestamp));
                }
                let rows = if head {
                    Vec::new()
                } else {
                    dev.db.list_objects(&hash, &params)?
                };
                Ok::<_, DbError>((rec, rows))
            })
            .await
            .expect("listing panicked");
            return match result {
                Ok((rec, rows)) => listing_response(&rec, &rows),
                Err(e) => db_error(e),
            };
        }
        Method::PUT => match request_timestamp(req.headers()) {
            Ok(ts) => {
                ContainerChange::Put(ts, meta_from_headers(req.headers(), &CONTAINER_META, ts))
            }
            Err(r) => return r,
        },
        Method::POST => match request_timestamp(req.headers()) {
            Ok(ts) => ContainerChange::Post(meta_from_headers(req.headers(), &CONTAINER_META, ts)),
            Err(r) => return r,
        },
        Method::DELETE => match request_timestamp(req.headers()) {
            Ok(ts) => ContainerChange::Delete(ts),
            Err(r) => return r,
        },
        _ => return status(StatusCode::METHOD_NOT_ALLOWED),
    };
    let method = req.method().clone();
    let (a, c) = (account.clone(), container.clone());
    let ring = t.state.ring();
    let created_or_deleted = method != Method::POST;
    let result = tokio::task::spawn_blocking(move || {
        let existed = dev.db.container(part, &hash)?.is_some_and(|r| r.exists());
        let rec = dev.db.update_container(part, &hash, &a, &c, change)?;
        let mut owed = Vec::new();
        if created_or_deleted {
            owed = account_updates(&ring, &rec, true);
            dev.db.queue(&owed, true)?;
        }
        Ok::<_, DbError>((existed, owed))
    })
    .await
    .expect("container update panicked");
    match result {
        Ok((existed, owed)) => {
            if created_or_deleted {
                // The account lists (or no longer lists) the container
                // before the change is acknowledged, as a bucket listing
                // right after a CreateBucket shows it; the queued copies
                // are delivered again by the updater (and a failure here
                // is left to it).
                let now: Vec<PendingUpdate> = owed.into_iter().map(|(_, u)| u).collect();
                crate::updater::deliver_now(t.state, &now).await;
                t.state.updates_queued.notify_one();
            }
            status(match method {
                Method::PUT if existed => StatusCode::ACCEPTED,
                Method::PUT => StatusCode::CREATED,
                _ => StatusCode::NO_CONTENT,
            })
        }
        Err(e) => db_error(e),
    }
}

/// This container's current stats, owed to every primary of its account.
fn account_updates(
    ring: &Ring,
    rec: &ContainerRecord,
    immediate: bool,
) -> Vec<(NameHash, PendingUpdate)> {
    let (_, account_part) = ring.locate(&[&rec.account]);
    let container_hash = ring.hasher().container(&rec.account, &rec.container);
    let row = ContainerRow {
        put_timestamp: rec.put_timestamp,
        delete_timestamp: rec.delete_timestamp,
        object_count: rec.object_count,
        bytes_used: rec.bytes_used,
        stats_timestamp: Timestamp::now(),
    };
    ring.primaries(account_part)
        .map(|d| {
            (
                container_hash,
                PendingUpdate {
                    target: UpdateTarget {
                        addr: d.node_addr(),
                        device: d.device.clone(),
                        partition: account_part,
                    },
                    update: Update::ContainerRow {
                        account: rec.account.clone(),
                        container: rec.container.clone(),
                        row: row.clone(),
                    },
                    immediate,
                },
            )
        })
        .collect()
}

fn listing_response(rec: &ContainerRecord, rows: &[Listed<ObjectRow>]) -> Response<Body> {
    let entries: Vec<ListingEntry> = rows
        .iter()
        .map(|l| match l {
            Listed::Subdir(s) => ListingEntry::Subdir { subdir: s.clone() },
            Listed::Row(name, r) => {
                let listed = crate::records::split_listing_etag(&r.etag);
                ListingEntry::Object {
                    name: name.clone(),
                    hash: listed.hash,
                    bytes: r.size,
                    content_type: r.content_type.clone(),
                    last_modified: r.timestamp.iso8601(),
                    slo_etag: listed.slo_etag,
                    s3_etag: listed.s3_etag,
                    version_id: listed.version_id,
                }
            }
        })
        .collect();
    let mut resp = Response::new(full(serde_json::to_vec(&entries).expect("json")));
    let h = resp.headers_mut();
    set_header(h, "content-type", "application/json; charset=utf-8");
    set_header(h, "x-container-object-count", &rec.object_count.to_string());
    set_header(h, "x-container-bytes-used", &rec.bytes_used.to_string());
    set_header(h, "x-timestamp", &rec.put_timestamp.to_string());
    set_header(h, "x-put-timestamp", &rec.put_timestamp.to_string());
    set_header(h, "x-backend-timestamp", &rec.put_timestamp.to_string());
    for (k, v) in crate::records::live_meta(&rec.meta) {
        set_header(h, k, v);
    }
    resp
}

/// One row of a batch (`PUT /rows/{device}`): object servers deliver the
/// rows they owe one device together, applied with a single WAL sync.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct BatchedRow {
    pub partition: u32,
    pub account: String,
    pub container: String,
    pub object: String,
    pub row: ObjectRow,
}

pub async fn handle_rows(
    state: Arc<NodeState>,
    device: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    if req.method() != Method::PUT {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let dev = match state.device(device) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
    };
    // `durable=no`: rows a write delivers before it is acknowledged, to be
    // listed at once; the sender keeps them queued and delivers them again
    // durably (one sync for many writes) before it forgets them.
    let durable = !query_pairs(req.uri().query())
        .iter()
        .any(|(k, v)| k == "durable" && v == "no");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let rows: Vec<BatchedRow> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad rows: {e}")),
    };
    let d = dev.clone();
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let ring = st.ring();
        let to_apply: Vec<RowToApply<'_>> = rows
            .iter()
            .map(|r| RowToApply {
                part: r.partition,
                container_hash: ring.hasher().container(&r.account, &r.container),
                account: &r.account,
                container: &r.container,
                object: &r.object,
                row: &r.row,
            })
            .collect();
        // Each changed container's stats once, however many of its rows
        // came (a row delivered again changes nothing, and owes nothing).
        let owed: Vec<_> = dev
            .db
            .apply_object_rows(&to_apply)?
            .iter()
            .flat_map(|rec| account_updates(&ring, rec, false))
            .collect();
        if !owed.is_empty() {
            dev.db.queue(&owed, false)?;
        }
        // One WAL sync for the rows and the stats they make owed, shared
        // with concurrent writers and waited for below without a thread.
        Ok(durable.then(|| dev.db.sync_point()))
    })
    .await
    .expect("row batch panicked");
    let result = match result {
        Ok(Some(ticket)) => d.db.durable(ticket).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            state.updates_queued.notify_one();
            status(StatusCode::CREATED)
        }
        Err(e) => db_error(e),
    }
}
