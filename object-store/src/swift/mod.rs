//! The Swift API on the proxy: TempAuth, accounts, containers and objects,
//! listings, metadata, ranges, conditionals, copies and expiry, with large
//! objects, bulk delete and TempURL in their own modules.

pub mod bulk;
pub mod conditional;
pub mod info;
pub mod large_objects;
pub mod listing;
pub mod names;

pub mod tempurl;

use crate::container_server::CONTAINER_META;
use crate::proxy::backend::{Path, MAX_OBJECT_SIZE};
use crate::proxy::ProxyState;
use crate::records::Target as UpdateTarget;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use names::{check_metadata, parse_path, NameError};
use service_kit::auth::Identity;
use service_kit::http_util::{
    empty, full, header_str, query_pairs, set_header, status, text, Body, BoxError,
};
use service_kit::range::{self, Ranges};
use service_kit::timestamp::Timestamp;

/// `GET /auth/v1.0` with `X-Auth-User` / `X-Auth-Key` (or the `X-Storage-*` forms).
pub fn auth_response(state: &ProxyState, req: &Request<Incoming>) -> Response<Body> {
    let h = req.headers();
    let user = header_str(h, "x-auth-user").or_else(|| header_str(h, "x-storage-user"));
    let key = header_str(h, "x-auth-key").or_else(|| header_str(h, "x-storage-pass"));
    let (Some(user), Some(key)) = (user, key) else {
        return text(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: X-Auth-User and X-Auth-Key are required",
        );
    };
    let Some(token) = state.auth.login(&user, &key) else {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let base = match state.auth.public_url() {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = header_str(h, "host")
                .map(|h| h.into_owned())
                .unwrap_or_else(|| format!("{}:{}", state.config.bind_ip, state.config.port));
            format!("http://{host}")
        }
    };
    let url = format!("{base}/v1/{}", token.identity.account);
    let mut r = status(StatusCode::OK);
    let rh = r.headers_mut();
    set_header(rh, "x-storage-url", &url);
    set_header(rh, "x-auth-token", &token.token);
    set_header(rh, "x-storage-token", &token.token);
    set_header(rh, "x-auth-token-expires", &token.expires_in.to_string());
    r
}

pub async fn handle(state: &ProxyState, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let path = match parse_path(rest) {
        Ok(p) => p,
        Err(e @ NameError::InvalidUtf8) => {
            return text(StatusCode::PRECONDITION_FAILED, e.to_string())
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let token = header_str(req.headers(), "x-auth-token")
        .or_else(|| header_str(req.headers(), "x-storage-token"));
    match token.and_then(|t| state.auth.check(&t)) {
        Some(id) if id.account == path.account && id.admin => {}
        Some(Identity { .. }) => return text(StatusCode::FORBIDDEN, "Forbidden"),
        None => {
            let signed = tempurl::from_query(&query_pairs(req.uri().query()));
            let granted = match (&signed, &path.container, &path.object) {
                (Some(s), Some(c), Some(_)) => {
                    let keys = temp_url_keys(state, &path.account, c).await;
                    let full_path = format!("/v1/{rest}");
                    let decoded = percent_encoding::percent_decode_str(&full_path)
                        .decode_utf8_lossy()
                        .into_owned();
                    tempurl::valid(s, req.method().as_str(), &decoded, &keys, unix_now())
                }
                _ => false,
            };
            if !granted {
                return text(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
        }
    }
    let a = path.account.clone();
    match (path.container, path.object) {
        (None, _) if req.method() == Method::POST && query_value(&req, "bulk-delete").is_some() => {
            bulk::handle(state, req, &a).await
        }
        (None, _) => account(state, req, a).await,
        (Some(c), None) => container(state, req, a, c).await,
        (Some(c), Some(o)) => object(state, req, a, c, o).await,
    }
}

/// The TempURL keys of an account and a container (metadata).
async fn temp_url_keys(state: &ProxyState, a: &str, c: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for (path, prefix) in [
        (Path::Account(a.into()), "x-account-meta-temp-url-key"),
        (
            Path::Container(a.into(), c.into()),
            "x-container-meta-temp-url-key",
        ),
    ] {
        let r = state
            .backend
            .read(Method::HEAD, &path, HeaderMap::new(), None)
            .await;
        for suffix in ["", "-2"] {
            if let Some(k) = header_str(r.headers(), &format!("{prefix}{suffix}")) {
                keys.push(k.into_owned());
            }
        }
    }
    keys
}

fn query_value(req: &Request<Incoming>, key: &str) -> Option<String> {
    query_pairs(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Request headers the nodes should see for a metadata write, with
/// `X-Remove-*-Meta-Foo` turned into an empty `X-*-Meta-Foo` (a removal).
fn metadata_headers(h: &HeaderMap, kinds: &[&str], kind: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    let remove = format!("x-remove-{kind}-");
    for (name, value) in h {
        let n = name.as_str();
        if let Some(rest) = n.strip_prefix(&remove) {
            set_header(&mut out, &format!("x-{kind}-{rest}"), "");
        } else if kinds.iter().any(|p| n.starts_with(p)) && !n.contains("sysmeta") {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

pub(crate) fn with_timestamp(mut h: HeaderMap) -> HeaderMap {
    set_header(&mut h, "x-timestamp", &Timestamp::now().to_string());
    h
}

/// Drops headers that only nodes and proxies speak.
fn public_headers(h: &HeaderMap) -> HeaderMap {
    filtered_headers(h, false)
}

/// Drops what only nodes speak; with `keep_sysmeta`, system metadata stays
/// (for the proxy's own front ends, e.g. S3's multipart ETag and checksums).
fn filtered_headers(h: &HeaderMap, keep_sysmeta: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        let n = k.as_str();
        if n.starts_with("x-backend-")
            || n.starts_with("x-nubo-")
            || (n.contains("-sysmeta-") && !keep_sysmeta)
            || n == "x-put-timestamp"
            || n == "connection"
            || n == "transfer-encoding"
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

/// Listing query parameters to forward to nodes, checked.
fn listing_query(req: &Request<Incoming>) -> Result<String, Response<Body>> {
    let mut q = Vec::new();
    for (k, v) in query_pairs(req.uri().query()) {
        match k.as_str() {
            "limit" => match v.parse::<usize>() {
                Ok(n) if n <= 10_000 => q.push(format!("limit={n}")),
                _ => {
                    return Err(text(
                        StatusCode::PRECONDITION_FAILED,
                        "Maximum limit is 10000",
                    ))
                }
            },
            "prefix" | "marker" | "end_marker" | "reverse" => {
                q.push(format!("{k}={}", service_kit::http_util::encode(&v)))
            }
            "delimiter" => {
                if v.chars().count() > 1 {
                    return Err(text(StatusCode::PRECONDITION_FAILED, "Bad delimiter"));
                }
                q.push(format!("delimiter={}", service_kit::http_util::encode(&v)));
            }
            _ => {}
        }
    }
    Ok(q.join("&"))
}

async fn listing(
    state: &ProxyState,
    req: &Request<Incoming>,
    path: Path,
    root: &str,
    item: &str,
    name: &str,
) -> Response<Body> {
    let q = match listing_query(req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let fmt = listing::format(query_value(req, "format").as_deref(), req.headers());
    let is_account = matches!(path, Path::Account(_));
    // HEAD asks every replica and the newest answer wins (a container just
    // deleted on a quorum is gone even if one replica has not heard yet).
    let resp = if req.method() == Method::HEAD {
        state.backend.head_newest(&path, HeaderMap::new()).await
    } else {
        state
            .backend
            .read(Method::GET, &path, HeaderMap::new(), Some(&q))
            .await
    };
    let (parts, body) = resp.into_parts();
    let (headers, entries) = if parts.status.is_success() {
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return status(StatusCode::SERVICE_UNAVAILABLE),
        };
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap_or_default();
        (public_headers(&parts.headers), entries)
    } else if parts.status == StatusCode::NOT_FOUND && is_account {
        // Accounts exist from their first use (account_autocreate).
        let mut h = HeaderMap::new();
        for k in [
            "x-account-container-count",
            "x-account-object-count",
            "x-account-bytes-used",
        ] {
            set_header(&mut h, k, "0");
        }
        (h, Vec::new())
    } else {
        return status(parts.status);
    };
    let head = req.method() == Method::HEAD;
    let body = listing::render(&entries, fmt, root, item, name);
    let empty_plain = entries.is_empty() && fmt == listing::Format::Plain;
    let mut r = if head || empty_plain {
        Response::new(empty())
    } else {
        Response::new(full(body.clone()))
    };
    *r.status_mut() = if empty_plain || head && entries.is_empty() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    if head {
        *r.status_mut() = StatusCode::NO_CONTENT;
    }
    *r.headers_mut() = headers;
    set_header(r.headers_mut(), "content-type", listing::content_type(fmt));
    let len = if head || empty_plain { 0 } else { body.len() };
    set_header(r.headers_mut(), "content-length", &len.to_string());
    r
}

async fn account(state: &ProxyState, req: Request<Incoming>, a: String) -> Response<Body> {
    match *req.method() {
        Method::GET | Method::HEAD => {
            listing(
                state,
                &req,
                Path::Account(a.clone()),
                "account",
                "container",
                &a,
            )
            .await
        }
        Method::POST => {
            if let Err(e) = check_metadata(req.headers(), "account") {
                return text(StatusCode::BAD_REQUEST, e);
            }
            let h = with_timestamp(metadata_headers(
                req.headers(),
                &["x-account-meta-"],
                "account",
            ));
            let out = state
                .backend
                .write(Method::POST, &Path::Account(a), h, Bytes::new(), |_, _| {})
                .await;
            status(if out.status.is_success() {
                StatusCode::NO_CONTENT
            } else {
                out.status
            })
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

async fn container(
    state: &ProxyState,
    req: Request<Incoming>,
    a: String,
    c: String,
) -> Response<Body> {
    let path = Path::Container(a.clone(), c.clone());
    match *req.method() {
        Method::GET | Method::HEAD => listing(state, &req, path, "container", "object", &c).await,
        Method::PUT | Method::POST => {
            if let Err(e) = check_metadata(req.headers(), "container") {
                return text(StatusCode::BAD_REQUEST, e);
            }
            let h = with_timestamp(metadata_headers(
                req.headers(),
                &CONTAINER_META,
                "container",
            ));
            let out = state
                .backend
                .write(req.method().clone(), &path, h, Bytes::new(), |_, _| {})
                .await;
            if out.status.is_success() {
                state.remember_container(&a, &c, true);
            }
            status(out.status)
        }
        Method::DELETE => {
            let st = delete_container(state, &a, &c).await;
            if st == StatusCode::CONFLICT {
                return text(
                    StatusCode::CONFLICT,
                    "There was a conflict when trying to complete your request.",
                );
            }
            status(st)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// Deletes an empty container. Listing rows reach container replicas
/// asynchronously: right after a client deleted the last object, a replica
/// may still count it and refuse. When the listing already shows nothing,
/// the delete is retried for up to 3 s so that delete-all-then-remove works.
pub async fn delete_container(state: &ProxyState, a: &str, c: &str) -> StatusCode {
    let path = Path::Container(a.into(), c.into());
    for _ in 0..30 {
        let out = state
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
            state.remember_container(a, c, false);
        }
        if out.status != StatusCode::CONFLICT {
            return out.status;
        }
        // A replica that already deleted the container lists nothing.
        let listing = state
            .backend
            .read(Method::GET, &path, HeaderMap::new(), Some("limit=1"))
            .await;
        if listing.status().is_success() {
            let body = listing
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if body.as_ref() != b"[]" {
                return StatusCode::CONFLICT;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    StatusCode::CONFLICT
}

pub async fn container_exists(state: &ProxyState, a: &str, c: &str) -> bool {
    if state.container_known(a, c) {
        return true;
    }
    let r = state
        .backend
        .head_newest(&Path::Container(a.into(), c.into()), HeaderMap::new())
        .await;
    let exists = r.status().is_success();
    state.remember_container(a, c, exists);
    exists
}

/// Which container replicas each object replica owes its listing row.
/// Object replica i updates container replicas i and i+1: a write that
/// succeeds on a quorum while one replica fails still reaches every
/// container replica. (Swift gives each object replica one container
/// replica and leaves the gap a failed replica makes to the container
/// replicator; rows are batched per target, so the second target is cheap.)
fn container_update_targets(state: &ProxyState, a: &str, c: &str) -> Vec<Vec<UpdateTarget>> {
    let ring = state.backend.ring();
    let (_, part) = ring.locate(&[a, c]);
    let targets: Vec<UpdateTarget> = ring
        .primaries(part)
        .map(|d| UpdateTarget {
            addr: d.node_addr(),
            device: d.device.clone(),
            partition: part,
        })
        .collect();
    let n = targets.len();
    (0..n)
        .map(|i| {
            let mut owed = vec![targets[i].clone()];
            if n > 1 {
                owed.push(targets[(i + 1) % n].clone());
            }
            owed
        })
        .collect()
}

fn unix_now() -> u64 {
    Timestamp::now().secs()
}

async fn object(
    state: &ProxyState,
    req: Request<Incoming>,
    a: String,
    c: String,
    o: String,
) -> Response<Body> {
    let path = Path::Object(a.clone(), c.clone(), o.clone());
    match req.method().as_str() {
        "GET" | "HEAD" => get_object(state, req, path).await,
        "PUT" => {
            let (parts, body) = req.into_parts();
            let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
            put_object(state, &parts.headers, body, &a, &c, &o, parts.uri.query()).await
        }
        "COPY" => {
            let Some(dest) = header_str(req.headers(), "destination").map(|d| d.into_owned())
            else {
                return text(
                    StatusCode::PRECONDITION_FAILED,
                    "You must provide a Destination header",
                );
            };
            let dest = dest.trim_start_matches('/');
            let Some((dc, d_o)) = dest.split_once('/') else {
                return text(
                    StatusCode::PRECONDITION_FAILED,
                    "Destination header must be of the form <container name>/<object name>",
                );
            };
            let dc = percent_encoding::percent_decode_str(dc)
                .decode_utf8_lossy()
                .into_owned();
            let d_o = percent_encoding::percent_decode_str(d_o)
                .decode_utf8_lossy()
                .into_owned();
            let mut headers = req.headers().clone();
            set_header(
                &mut headers,
                "x-copy-from",
                &format!(
                    "/{}/{}",
                    service_kit::http_util::encode(&c),
                    service_kit::http_util::encode(&o)
                ),
            );
            headers.remove("destination");
            headers.insert("content-length", HeaderValue::from_static("0"));
            let mut r = put_object(state, &headers, empty(), &a, &dc, &d_o, None).await;
            if r.status() == StatusCode::CREATED {
                set_header(r.headers_mut(), "x-copied-from", &format!("{c}/{o}"));
            }
            r
        }
        "POST" => {
            if let Err(e) = check_metadata(req.headers(), "object") {
                return text(StatusCode::BAD_REQUEST, e);
            }
            let mut h = metadata_headers(
                req.headers(),
                &[
                    "x-object-meta-",
                    "content-encoding",
                    "content-disposition",
                    "x-delete-at",
                    "x-object-manifest",
                ],
                "object",
            );
            if let Err(r) = expiry_header(req.headers(), &mut h) {
                return r;
            }
            let out = state
                .backend
                .write(
                    Method::POST,
                    &path,
                    with_timestamp(h),
                    Bytes::new(),
                    |_, _| {},
                )
                .await;
            status(if out.status.is_success() {
                StatusCode::ACCEPTED
            } else {
                out.status
            })
        }
        "DELETE" => {
            if query_value(&req, "multipart-manifest").as_deref() == Some("delete") {
                return large_objects::delete_manifest(state, &req, &a, &c, &o).await;
            }
            status(delete_object(state, &a, &c, &o).await)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// The type Swift (Python's `mimetypes`) would guess from an extension.
pub fn guess_content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "js" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "iso" => "application/x-iso9660-image",
        _ => "application/octet-stream",
    }
}

/// X-Delete-After becomes X-Delete-At; a time in the past is refused.
fn expiry_header(from: &HeaderMap, to: &mut HeaderMap) -> Result<(), Response<Body>> {
    to.remove("x-delete-after");
    if let Some(after) = header_str(from, "x-delete-after") {
        let n: u64 = after
            .trim()
            .parse()
            .map_err(|_| text(StatusCode::BAD_REQUEST, "Non-integer X-Delete-After"))?;
        set_header(to, "x-delete-at", &(unix_now() + n).to_string());
    } else if let Some(at) = header_str(from, "x-delete-at") {
        let n: u64 = at
            .trim()
            .parse()
            .map_err(|_| text(StatusCode::BAD_REQUEST, "Non-integer X-Delete-At"))?;
        if n <= unix_now() {
            return Err(text(StatusCode::BAD_REQUEST, "X-Delete-At in past"));
        }
        set_header(to, "x-delete-at", &n.to_string());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn put_object(
    state: &ProxyState,
    headers: &HeaderMap,
    body: Body,
    a: &str,
    c: &str,
    o: &str,
    query: Option<&str>,
) -> Response<Body> {
    put_object_with_sysmeta(state, headers, HeaderMap::new(), body, a, c, o, query).await
}

/// An object PUT from one of the proxy's own front ends, which may attach
/// system metadata (clients' `*-sysmeta-*` headers are always dropped).
#[allow(clippy::too_many_arguments)]
pub async fn put_object_with_sysmeta(
    state: &ProxyState,
    headers: &HeaderMap,
    sysmeta: HeaderMap,
    body: Body,
    a: &str,
    c: &str,
    o: &str,
    query: Option<&str>,
) -> Response<Body> {
    let chunked = header_str(headers, "transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length: Option<u64> = match header_str(headers, "content-length") {
        Some(v) => match v.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => return text(StatusCode::BAD_REQUEST, "Invalid Content-Length"),
        },
        None => None,
    };
    if length.is_none() && !chunked {
        return text(
            StatusCode::LENGTH_REQUIRED,
            "Missing Content-Length or Transfer-Encoding: chunked",
        );
    }
    if length.is_some_and(|n| n > MAX_OBJECT_SIZE) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "Your request is too large.");
    }
    if let Err(e) = check_metadata(headers, "object") {
        return text(StatusCode::BAD_REQUEST, e);
    }
    let mut h = metadata_headers(
        headers,
        &[
            "x-object-meta-",
            "content-type",
            "content-encoding",
            "content-disposition",
            "x-object-manifest",
            "etag",
        ],
        "object",
    );
    for (k, v) in &sysmeta {
        if k.as_str().contains("-sysmeta-") {
            h.insert(k.clone(), v.clone());
        }
    }
    if let Err(r) = expiry_header(headers, &mut h) {
        return r;
    }
    if !container_exists(state, a, c).await {
        return text(StatusCode::NOT_FOUND, "Container not found");
    }
    if let Some(v) = header_str(headers, "if-none-match") {
        if v.trim() != "*" {
            return text(StatusCode::BAD_REQUEST, "If-None-Match only supports *");
        }
        let existing = state
            .backend
            .head_newest(
                &Path::Object(a.into(), c.into(), o.into()),
                HeaderMap::new(),
            )
            .await;
        if existing.status().is_success() {
            return status(StatusCode::PRECONDITION_FAILED);
        }
    }
    if !h.contains_key("content-type") {
        // As Swift: guessed from the name's extension when not given.
        set_header(&mut h, "content-type", guess_content_type(o));
    }
    let mut body = body;
    if let Some(source) = header_str(headers, "x-copy-from") {
        let src = source.trim_start_matches('/');
        let Some((sc, so)) = src.split_once('/') else {
            return text(
                StatusCode::PRECONDITION_FAILED,
                "X-Copy-From header must be of the form <container name>/<object name>",
            );
        };
        let sc = percent_encoding::percent_decode_str(sc)
            .decode_utf8_lossy()
            .into_owned();
        let so = percent_encoding::percent_decode_str(so)
            .decode_utf8_lossy()
            .into_owned();
        let src_resp = open_object(state, &Path::Object(a.into(), sc, so), HeaderMap::new()).await;
        if !src_resp.status().is_success() {
            return status(src_resp.status());
        }
        let (sp, sb) = src_resp.into_parts();
        // The copy keeps the source's metadata unless the request sets its own
        // (X-Fresh-Metadata drops it).
        let fresh =
            header_str(headers, "x-fresh-metadata").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        for (k, v) in &sp.headers {
            let n = k.as_str();
            let copyable = (n.starts_with("x-object-meta-") && !fresh)
                || n == "content-encoding"
                || n == "content-disposition";
            if copyable && !h.contains_key(k) {
                h.insert(k.clone(), v.clone());
            }
            if n == "content-type" && !headers.contains_key("content-type") {
                h.insert(k.clone(), v.clone());
            }
        }
        h.remove("etag");
        if let Some(len) = sp.headers.get("content-length") {
            h.insert("content-length", len.clone());
        }
        body = sb;
    } else if let Some(n) = length {
        set_header(&mut h, "content-length", &n.to_string());
    }
    if query_pairs(query)
        .iter()
        .any(|(k, v)| k == "multipart-manifest" && v == "put")
    {
        return large_objects::put_manifest(state, h, body, a, c, o).await;
    }
    let out = store_object(state, h, body, a, c, o).await;
    let mut r = status(out.status);
    if out.status.is_success() {
        *r.status_mut() = StatusCode::CREATED;
        if let Some(e) = out.etag {
            set_header(r.headers_mut(), "etag", &e);
        }
        set_header(
            r.headers_mut(),
            "last-modified",
            &Timestamp::now().http_date(),
        );
        set_header(r.headers_mut(), "content-length", "0");
    } else if out.status == StatusCode::UNPROCESSABLE_ENTITY {
        return text(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity: the ETag does not match the body",
        );
    } else if out.status == StatusCode::CONFLICT {
        *r.status_mut() = StatusCode::ACCEPTED;
    }
    r
}

/// Writes an object with the headers given (timestamp added) and its
/// listing rows owed to the container's servers.
pub async fn store_object(
    state: &ProxyState,
    h: HeaderMap,
    body: Body,
    a: &str,
    c: &str,
    o: &str,
) -> crate::proxy::backend::WriteOutcome {
    let targets = container_update_targets(state, a, c);
    state
        .backend
        .put_object(
            &Path::Object(a.into(), c.into(), o.into()),
            with_timestamp(h),
            body,
            targets,
        )
        .await
}

/// Deletes one object (tombstones at quorum, listing rows queued).
pub async fn delete_object(state: &ProxyState, a: &str, c: &str, o: &str) -> StatusCode {
    let targets = container_update_targets(state, a, c);
    state
        .backend
        .write(
            Method::DELETE,
            &Path::Object(a.into(), c.into(), o.into()),
            with_timestamp(HeaderMap::new()),
            Bytes::new(),
            |i, h| {
                if let Some(t) = targets.get(i) {
                    set_header(
                        h,
                        "x-nubo-container-update",
                        &serde_json::to_string(t).expect("json"),
                    );
                }
            },
        )
        .await
        .status
}

/// The whole object (large objects assembled), for copies and GETs.
pub async fn open_object(state: &ProxyState, path: &Path, headers: HeaderMap) -> Response<Body> {
    state.backend.read(Method::GET, path, headers, None).await
}

fn modified_secs(h: &HeaderMap) -> u64 {
    header_str(h, "x-timestamp")
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| t.secs())
        .unwrap_or(0)
}

async fn get_object(state: &ProxyState, req: Request<Incoming>, path: Path) -> Response<Body> {
    let manifest_get = query_value(&req, "multipart-manifest").as_deref() == Some("get");
    let mut resp = read_object(state, req.method(), req.headers(), &path, manifest_get).await;
    let public = public_headers(resp.headers());
    *resp.headers_mut() = public;
    resp
}

/// GET or HEAD of an object as a client asked for it (range, conditions),
/// large objects assembled unless `manifest_get`. Shared by Swift and S3.
pub async fn read_object(
    state: &ProxyState,
    method: &Method,
    request_headers: &HeaderMap,
    path: &Path,
    manifest_get: bool,
) -> Response<Body> {
    let method = method.clone();
    let path = path.clone();
    let range_header = header_str(request_headers, "range").map(|r| r.into_owned());
    let multi = range_header.as_deref().is_some_and(|r| r.contains(','));
    let resp = if method == Method::HEAD || multi {
        state.backend.head_newest(&path, HeaderMap::new()).await
    } else {
        let mut h = HeaderMap::new();
        if let Some(r) = &range_header {
            set_header(&mut h, "range", r);
        }
        state.backend.read(Method::GET, &path, h, None).await
    };
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        let mut r = status(parts.status);
        if parts.status == StatusCode::RANGE_NOT_SATISFIABLE {
            if let Some(v) = parts.headers.get("content-range") {
                r.headers_mut().insert("content-range", v.clone());
            }
        }
        return r;
    }
    if !manifest_get && large_objects::is_large(&parts.headers) {
        return large_objects::get(state, &method, request_headers, &path, parts.headers).await;
    }
    let etag = header_str(&parts.headers, "etag")
        .map(|e| e.into_owned())
        .unwrap_or_default();
    if let Some(st) = conditional::check(
        &method,
        request_headers,
        &etag,
        modified_secs(&parts.headers),
    ) {
        let mut r = status(st);
        set_header(r.headers_mut(), "etag", &etag);
        return r;
    }
    let mut headers = filtered_headers(&parts.headers, true);
    headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    if method == Method::HEAD {
        let mut r = Response::new(empty());
        *r.headers_mut() = headers;
        return r;
    }
    if multi {
        let size: u64 = header_str(&parts.headers, "x-nubo-size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        return match range::resolve(range_header.as_deref(), size) {
            Ranges::Unsatisfiable => {
                let mut r = status(StatusCode::RANGE_NOT_SATISFIABLE);
                set_header(r.headers_mut(), "content-range", &format!("bytes */{size}"));
                r
            }
            Ranges::Whole => {
                let r = state
                    .backend
                    .read(Method::GET, &path, HeaderMap::new(), None)
                    .await;
                let (p, b) = r.into_parts();
                let mut out = Response::new(b);
                *out.status_mut() = p.status;
                *out.headers_mut() = filtered_headers(&p.headers, true);
                out
            }
            Ranges::Parts(ranges) => multi_range(state, path, headers, ranges, size),
        };
    }
    let mut r = Response::new(body);
    *r.status_mut() = parts.status;
    *r.headers_mut() = headers;
    r
}

/// A body fed by a task: for responses assembled from several node reads.
pub fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    (tx, BodyExt::boxed_unsync(StreamBody::new(Box::pin(stream))))
}

/// `multipart/byteranges`, each part read from the replicas on its own.
fn multi_range(
    state: &ProxyState,
    path: Path,
    mut headers: HeaderMap,
    ranges: Vec<(u64, u64)>,
    size: u64,
) -> Response<Body> {
    let boundary = hex::encode(service_kit::ids::rand_bytes::<16>());
    let content_type = header_str(&headers, "content-type")
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let part_head = |a: u64, b: u64| {
        format!("--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {a}-{b}/{size}\r\n\r\n")
    };
    let total: u64 = ranges
        .iter()
        .map(|(a, b)| part_head(*a, *b).len() as u64 + (b - a + 1) + 2)
        .sum::<u64>()
        + format!("--{boundary}--").len() as u64;
    let (tx, body) = channel_body();
    let backend = state.backend_handle();
    let heads: Vec<String> = ranges.iter().map(|(a, b)| part_head(*a, *b)).collect();
    let closing = format!("--{boundary}--");
    tokio::spawn(async move {
        for ((a, b), head) in ranges.into_iter().zip(heads) {
            if tx.send(Ok(Frame::data(Bytes::from(head)))).await.is_err() {
                return;
            }
            let mut h = HeaderMap::new();
            set_header(&mut h, "range", &format!("bytes={a}-{b}"));
            let resp = backend.read(Method::GET, &path, h, None).await;
            if resp.status() != StatusCode::PARTIAL_CONTENT && resp.status() != StatusCode::OK {
                let _ = tx
                    .send(Err(service_kit::http_util::box_error("range read failed")))
                    .await;
                return;
            }
            let mut body = resp.into_body();
            while let Some(f) = body.frame().await {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"\r\n")))).await;
        }
        let _ = tx.send(Ok(Frame::data(Bytes::from(closing)))).await;
    });
    headers.remove("etag");
    set_header(
        &mut headers,
        "content-type",
        &format!("multipart/byteranges;boundary={boundary}"),
    );
    set_header(&mut headers, "content-length", &total.to_string());
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    *r.headers_mut() = headers;
    r
}
