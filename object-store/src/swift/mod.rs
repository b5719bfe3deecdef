//! The Swift API on the proxy: a thin layer that parses Swift requests
//! into the object layer's typed operations ([`crate::proxy::objects`]) and
//! writes their results and errors ([`error`]) as Swift does. TempAuth
//! logins, listings' formats, bulk delete and TempURL have their own
//! modules.

pub mod bulk;
pub mod error;
pub mod info;
pub mod listing;
pub mod names;
pub mod tempurl;

use crate::container_server::CONTAINER_META;
use crate::proxy::conditions::Conditions;
use crate::proxy::containers::{ListQuery, ListTarget};
use crate::proxy::limits::MAX_MANIFEST_BYTES;
use crate::proxy::objects::{
    unix_now, CopyObject, KeepFromSource, ObjectMeta, ObjectPath, PutObject, ReadObject,
    WriteCondition,
};
use crate::proxy::segments::SegmentRef;
use crate::proxy::ProxyState;
use error::SwiftError;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use names::{check_metadata, parse_path, NameError};
use service_kit::auth::Identity;
use service_kit::http_util::{
    collect_limited, full, header_str, query_pairs, set_header, status, text, Body, BoxError,
};

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
    // A temporary URL reaches one container only (see `Scope`).
    let mut scope = Scope::Account;
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
            if let Some(c) = &path.container {
                scope = Scope::Container(c.clone());
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
        (Some(c), Some(o)) => object(state, req, a, c, o, &scope).await,
    }
}

/// What a request may reach: its account (a token), or the one container
/// of the temporary URL that granted it. A write through a temporary URL
/// may not name data elsewhere (a DLO's `X-Object-Manifest`, an SLO's
/// segments, `X-Copy-From`): a GET of it through the URL would then read
/// another container (CVE-2015-5223 in Swift). Such a write is 400.
enum Scope {
    Account,
    Container(String),
}

impl Scope {
    fn allows(&self, container: &str) -> Result<(), SwiftError> {
        match self {
            Scope::Container(c) if c != container => Err(SwiftError::BadRequest(format!(
                "A temporary URL for container {c} cannot reach container {container}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The TempURL keys of an account and a container (metadata).
async fn temp_url_keys(state: &ProxyState, a: &str, c: &str) -> Vec<String> {
    let account = state.objects.head_account(a).await.unwrap_or_default();
    let container = state.objects.head_container(a, c).await.unwrap_or_default();
    let mut keys = Vec::new();
    for (h, prefix) in [
        (&account, "x-account-meta-temp-url-key"),
        (&container, "x-container-meta-temp-url-key"),
    ] {
        for suffix in ["", "-2"] {
            if let Some(k) = header_str(h, &format!("{prefix}{suffix}")) {
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

/// Request headers the nodes should see for an account or container
/// metadata write, with `X-Remove-*-Meta-Foo` turned into an empty
/// `X-*-Meta-Foo` (a removal).
fn metadata_headers(h: &HeaderMap, kinds: &[&str], kind: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    let remove = format!("x-remove-{kind}-");
    for (name, value) in h {
        let n = name.as_str();
        // System metadata is the proxy's: a client neither sets nor
        // removes it (as Swift's gatekeeper strips it).
        if n.contains("sysmeta") {
            continue;
        }
        if let Some(rest) = n.strip_prefix(&remove) {
            set_header(&mut out, &format!("x-{kind}-{rest}"), "");
        } else if kinds.iter().any(|p| n.starts_with(p)) {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

/// Headers a Swift client sees: no system metadata.
fn public_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        if !k.as_str().contains("-sysmeta-") {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// An object's metadata as a Swift request sets it.
fn object_meta(h: &HeaderMap) -> Result<ObjectMeta, SwiftError> {
    check_metadata(h, "object").map_err(SwiftError::BadRequest)?;
    let mut meta = ObjectMeta {
        content_type: header_str(h, "content-type").map(|c| c.into_owned()),
        dlo_manifest: header_str(h, "x-object-manifest").map(|c| c.into_owned()),
        delete_at: expiry(h)?,
        ..Default::default()
    };
    for (name, value) in h {
        let n = name.as_str();
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Some(k) = n.strip_prefix("x-object-meta-") {
            meta.user.push((k.to_string(), value));
        } else if let Some(k) = n.strip_prefix("x-remove-object-meta-") {
            meta.user.push((k.to_string(), String::new()));
        } else if n == "content-encoding" || n == "content-disposition" {
            meta.headers.push((n.to_string(), value));
        }
    }
    Ok(meta)
}

/// X-Delete-After becomes an absolute X-Delete-At.
fn expiry(h: &HeaderMap) -> Result<Option<u64>, SwiftError> {
    if let Some(after) = header_str(h, "x-delete-after") {
        let n: u64 = after
            .trim()
            .parse()
            .map_err(|_| SwiftError::BadRequest("Non-integer X-Delete-After".into()))?;
        return Ok(Some(unix_now() + n));
    }
    match header_str(h, "x-delete-at") {
        Some(at) => at
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| SwiftError::BadRequest("Non-integer X-Delete-At".into())),
        None => Ok(None),
    }
}

/// Listing query parameters, checked.
fn list_query(req: &Request<Incoming>) -> Result<ListQuery, SwiftError> {
    let mut q = ListQuery::default();
    for (k, v) in query_pairs(req.uri().query()) {
        match k.as_str() {
            "limit" => match v.parse::<usize>() {
                Ok(n) if n <= crate::proxy::limits::MAX_LISTING => q.limit = Some(n),
                _ => {
                    return Err(SwiftError::Precondition("Maximum limit is 10000".into()));
                }
            },
            "prefix" => q.prefix = v,
            "marker" => q.marker = v,
            "end_marker" => q.end_marker = v,
            "reverse" => {
                q.reverse = matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
            }
            "delimiter" => {
                let mut chars = v.chars();
                match (chars.next(), chars.next()) {
                    (None, _) => {}
                    (Some(d), None) => q.delimiter = Some(d),
                    _ => return Err(SwiftError::Precondition("Bad delimiter".into())),
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

async fn listing(
    state: &ProxyState,
    req: &Request<Incoming>,
    target: ListTarget,
    root: &str,
    item: &str,
    name: &str,
) -> Result<Response<Body>, SwiftError> {
    let query = list_query(req)?;
    let fmt = listing::format(query_value(req, "format").as_deref(), req.headers());
    if req.method() == Method::HEAD {
        // Every replica is asked and the newest answer wins (a container
        // just deleted on a quorum is gone even if one replica has not
        // heard yet).
        let headers = match &target {
            ListTarget::Account(a) => state.objects.head_account(a).await?,
            ListTarget::Container(a, c) => state.objects.head_container(a, c).await?,
        };
        let mut r = status(StatusCode::NO_CONTENT);
        *r.headers_mut() = public_headers(&headers);
        set_header(r.headers_mut(), "content-type", listing::content_type(fmt));
        set_header(r.headers_mut(), "content-length", "0");
        return Ok(r);
    }
    let page = state.objects.list(&target, &query).await?;
    let empty_plain = page.entries.is_empty() && fmt == listing::Format::Plain;
    let body = listing::render(&page.entries, fmt, root, item, name);
    let len = if empty_plain { 0 } else { body.len() };
    let mut r = if empty_plain {
        status(StatusCode::NO_CONTENT)
    } else {
        Response::new(full(body))
    };
    *r.headers_mut() = public_headers(&page.headers);
    set_header(r.headers_mut(), "content-type", listing::content_type(fmt));
    set_header(r.headers_mut(), "content-length", &len.to_string());
    Ok(r)
}

/// Either outcome of a handler, as the response.
fn respond(result: Result<Response<Body>, SwiftError>) -> Response<Body> {
    result.unwrap_or_else(|e| service_kit::api_error::ApiError::response(&e))
}

async fn account(state: &ProxyState, req: Request<Incoming>, a: String) -> Response<Body> {
    respond(match *req.method() {
        Method::GET | Method::HEAD => {
            let target = ListTarget::Account(a.clone());
            listing(state, &req, target, "account", "container", &a).await
        }
        Method::POST => {
            async {
                check_metadata(req.headers(), "account").map_err(SwiftError::BadRequest)?;
                let h = metadata_headers(req.headers(), &["x-account-meta-"], "account");
                state.objects.post_account(&a, h).await?;
                Ok(status(StatusCode::NO_CONTENT))
            }
            .await
        }
        _ => Ok(status(StatusCode::METHOD_NOT_ALLOWED)),
    })
}

async fn container(
    state: &ProxyState,
    req: Request<Incoming>,
    a: String,
    c: String,
) -> Response<Body> {
    respond(match *req.method() {
        Method::GET | Method::HEAD => {
            let target = ListTarget::Container(a, c.clone());
            listing(state, &req, target, "container", "object", &c).await
        }
        Method::PUT | Method::POST => {
            async {
                check_metadata(req.headers(), "container").map_err(SwiftError::BadRequest)?;
                let h = metadata_headers(req.headers(), &CONTAINER_META, "container");
                if req.method() == Method::PUT {
                    let created = state.objects.put_container(&a, &c, h).await?;
                    Ok(status(if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::ACCEPTED
                    }))
                } else {
                    state.objects.post_container(&a, &c, h).await?;
                    Ok(status(StatusCode::NO_CONTENT))
                }
            }
            .await
        }
        Method::DELETE => state
            .objects
            .delete_container(&a, &c)
            .await
            .map(|()| status(StatusCode::NO_CONTENT))
            .map_err(SwiftError::from),
        _ => Ok(status(StatusCode::METHOD_NOT_ALLOWED)),
    })
}

/// `<container>/<object>` of a Destination or X-Copy-From header.
fn copy_path(value: &str, header: &str) -> Result<(String, String), SwiftError> {
    let trimmed = value.trim_start_matches('/');
    let Some((c, o)) = trimmed.split_once('/') else {
        return Err(SwiftError::Precondition(format!(
            "{header} header must be of the form <container name>/<object name>"
        )));
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok((decode(c), decode(o)))
}

async fn object(
    state: &ProxyState,
    req: Request<Incoming>,
    a: String,
    c: String,
    o: String,
    scope: &Scope,
) -> Response<Body> {
    let path = ObjectPath::new(&a, &c, &o);
    respond(match req.method().as_str() {
        "GET" | "HEAD" => get_object(state, &req, path).await,
        "PUT" => {
            let (parts, body) = req.into_parts();
            let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
            put_object(state, &parts.headers, body, path, parts.uri.query(), scope).await
        }
        "COPY" => match scope {
            Scope::Account => copy_object(state, req.headers(), path).await,
            Scope::Container(_) => Err(SwiftError::BadRequest(
                "COPY is not allowed with a temporary URL".into(),
            )),
        },
        "POST" => {
            async {
                let meta = object_meta(req.headers())?;
                state.objects.update_meta(&path, meta).await?;
                Ok(status(StatusCode::ACCEPTED))
            }
            .await
        }
        "DELETE" => {
            if query_value(&req, "multipart-manifest").as_deref() == Some("delete") {
                state
                    .objects
                    .delete_with_segments(&path)
                    .await
                    .map(|r| bulk::report(req.headers(), r.deleted, r.not_found, &r.errors))
                    .map_err(SwiftError::from)
            } else {
                state
                    .objects
                    .delete(&path)
                    .await
                    .map(|()| status(StatusCode::NO_CONTENT))
                    .map_err(SwiftError::from)
            }
        }
        _ => Ok(status(StatusCode::METHOD_NOT_ALLOWED)),
    })
}

/// `COPY` with a `Destination`: a PUT of the destination from the source.
async fn copy_object(
    state: &ProxyState,
    headers: &HeaderMap,
    from: ObjectPath,
) -> Result<Response<Body>, SwiftError> {
    let Some(dest) = header_str(headers, "destination") else {
        return Err(SwiftError::Precondition(
            "You must provide a Destination header".into(),
        ));
    };
    let (dc, d_o) = copy_path(&dest, "Destination")?;
    let to = ObjectPath::new(&from.account, dc, d_o);
    let copied_from = format!("{}/{}", from.container, from.object);
    let mut r = copy(state, headers, from, to).await?;
    set_header(r.headers_mut(), "x-copied-from", &copied_from);
    Ok(r)
}

async fn copy(
    state: &ProxyState,
    headers: &HeaderMap,
    from: ObjectPath,
    to: ObjectPath,
) -> Result<Response<Body>, SwiftError> {
    let fresh =
        header_str(headers, "x-fresh-metadata").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let written = state
        .objects
        .copy(CopyObject {
            from,
            to,
            conditions: Conditions::default(),
            range: None,
            meta: object_meta(headers)?,
            keep: if fresh {
                KeepFromSource::HeadersOnly
            } else {
                KeepFromSource::Everything
            },
            checksum: None,
            carry_system: Vec::new(),
        })
        .await?;
    Ok(created(&written.etag, written.last_modified))
}

fn created(etag: &str, modified: service_kit::timestamp::Timestamp) -> Response<Body> {
    let mut r = status(StatusCode::CREATED);
    set_header(r.headers_mut(), "etag", etag);
    set_header(r.headers_mut(), "last-modified", &modified.http_date());
    set_header(r.headers_mut(), "content-length", "0");
    r
}

async fn put_object(
    state: &ProxyState,
    headers: &HeaderMap,
    body: Body,
    path: ObjectPath,
    query: Option<&str>,
    scope: &Scope,
) -> Result<Response<Body>, SwiftError> {
    let chunked = header_str(headers, "transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length: Option<u64> = match header_str(headers, "content-length") {
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| SwiftError::BadRequest("Invalid Content-Length".into()))?,
        ),
        None => None,
    };
    if length.is_none() && !chunked {
        return Err(SwiftError::LengthRequired);
    }
    if let Some(source) = header_str(headers, "x-copy-from") {
        let (sc, so) = copy_path(&source, "X-Copy-From")?;
        scope.allows(&sc)?;
        let from = ObjectPath::new(&path.account, sc, so);
        return copy(state, headers, from, path).await;
    }
    let meta = object_meta(headers)?;
    if let Some(m) = &meta.dlo_manifest {
        // Read as the object layer reads it: split, then decoded.
        let raw = m.split('/').next().unwrap_or_default();
        scope.allows(&percent_encoding::percent_decode_str(raw).decode_utf8_lossy())?;
    }
    if query_pairs(query)
        .iter()
        .any(|(k, v)| k == "multipart-manifest" && v == "put")
    {
        let raw = collect_limited(body, MAX_MANIFEST_BYTES)
            .await
            .ok_or(SwiftError::ManifestTooLarge)?;
        let refs: Vec<SegmentRef> = serde_json::from_slice(&raw)
            .map_err(|e| SwiftError::BadRequest(format!("Manifest must be valid JSON: {e}")))?;
        for r in &refs {
            let container = r.path.trim_start_matches('/').split('/').next();
            scope.allows(container.unwrap_or_default())?;
        }
        let written = state.objects.put_static_large(&path, meta, &refs).await?;
        let mut r = created(&format!("\"{}\"", written.etag), written.last_modified);
        r.headers_mut().remove("last-modified");
        return Ok(r);
    }
    let if_none_match = match header_str(headers, "if-none-match") {
        Some(v) if v.trim() == "*" => true,
        Some(_) => {
            return Err(SwiftError::BadRequest(
                "If-None-Match only supports *".into(),
            ))
        }
        None => false,
    };
    let written = state
        .objects
        .put(PutObject {
            path,
            length,
            meta,
            checksum: None,
            expected_md5: header_str(headers, "etag").map(|e| e.trim_matches('"').to_string()),
            condition: if_none_match.then_some(WriteCondition::IfNoneMatch),
            body,
        })
        .await?;
    Ok(created(&written.etag, written.last_modified))
}

async fn get_object(
    state: &ProxyState,
    req: &Request<Incoming>,
    path: ObjectPath,
) -> Result<Response<Body>, SwiftError> {
    let read = state
        .objects
        .get(ReadObject {
            path,
            head: req.method() == Method::HEAD,
            range: header_str(req.headers(), "range").map(|r| r.into_owned()),
            conditions: Conditions::from_headers(req.headers()),
            manifest: query_value(req, "multipart-manifest").as_deref() == Some("get"),
        })
        .await?;
    let mut r = Response::new(read.body);
    if read.partial {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    *r.headers_mut() = public_headers(&read.headers);
    Ok(r)
}
