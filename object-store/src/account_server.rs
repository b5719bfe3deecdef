//! Accounts on a storage node: metadata and the container listing with
//! object and byte counts, fed by container servers' stats.

use crate::container_server::{list_params, meta_from_headers};
use crate::device_db::{DbError, Listed};
use crate::object_server::request_timestamp;
use crate::records::{AccountRecord, ContainerRow, ListingEntry};
use crate::storage_node::Target;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use service_kit::server::RequestBody;

use service_kit::http_util::{full, set_header, status, text, Body};

pub const ACCOUNT_META: [&str; 2] = ["x-account-meta-", "x-account-sysmeta-"];

pub async fn handle(t: Target<'_>, req: Request<RequestBody>) -> Response<Body> {
    let account = t.names[0].clone();
    let hash = t.state.ring().hasher().account(&account);
    let part = t.partition;
    let dev = t.device.clone();
    match *req.method() {
        Method::GET | Method::HEAD => {
            let params = list_params(req.uri().query());
            let head = req.method() == Method::HEAD;
            let result = tokio::task::spawn_blocking(move || {
                let rec = dev.db.account(part, &hash)?.ok_or(DbError::NotFound)?;
                let rows = if head {
                    Vec::new()
                } else {
                    dev.db.list_containers(&hash, &params)?
                };
                Ok::<_, DbError>((rec, rows))
            })
            .await
            .expect("listing panicked");
            match result {
                Ok((rec, rows)) => listing_response(&rec, &rows),
                Err(DbError::NotFound) => status(StatusCode::NOT_FOUND),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Method::PUT | Method::POST => {
            let ts = match request_timestamp(req.headers()) {
                Ok(ts) => ts,
                Err(r) => return r,
            };
            let meta = meta_from_headers(req.headers(), &ACCOUNT_META, ts);
            let put = (req.method() == Method::PUT).then_some(ts);
            let result = tokio::task::spawn_blocking(move || {
                dev.db.update_account(part, &hash, &account, put, &meta)
            })
            .await
            .expect("account update panicked");
            match result {
                Ok(_) => status(StatusCode::NO_CONTENT),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

fn listing_response(rec: &AccountRecord, rows: &[Listed<ContainerRow>]) -> Response<Body> {
    let entries: Vec<ListingEntry> = rows
        .iter()
        .map(|l| match l {
            Listed::Subdir(s) => ListingEntry::Subdir { subdir: s.clone() },
            Listed::Row(name, r) => ListingEntry::Container {
                name: name.clone(),
                count: r.object_count,
                bytes: r.bytes_used,
                last_modified: r.put_timestamp.iso8601(),
            },
        })
        .collect();
    let mut resp = Response::new(full(serde_json::to_vec(&entries).expect("json")));
    let h = resp.headers_mut();
    set_header(h, "content-type", "application/json; charset=utf-8");
    set_header(
        h,
        "x-account-container-count",
        &rec.container_count.to_string(),
    );
    set_header(h, "x-account-object-count", &rec.object_count.to_string());
    set_header(h, "x-account-bytes-used", &rec.bytes_used.to_string());
    set_header(h, "x-timestamp", &rec.put_timestamp.to_string());
    set_header(h, "x-put-timestamp", &rec.put_timestamp.to_string());
    for (k, v) in crate::records::live_meta(&rec.meta) {
        set_header(h, k, v);
    }
    resp
}

/// Stats of one container, from one of its servers.
pub async fn handle_row(t: Target<'_>, req: Request<RequestBody>) -> Response<Body> {
    if req.method() != Method::PUT {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let row: ContainerRow = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad row: {e}")),
    };
    let (a, c) = (t.names[0].clone(), t.names[1].clone());
    let hash = t.state.ring().hasher().account(&a);
    let dev = t.device.clone();
    let part = t.partition;
    match tokio::task::spawn_blocking(move || dev.db.apply_container_row(part, &hash, &a, &c, &row))
        .await
        .expect("row update panicked")
    {
        Ok(true) => status(StatusCode::CREATED),
        Ok(false) => status(StatusCode::ACCEPTED),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
