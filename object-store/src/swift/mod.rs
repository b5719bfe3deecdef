//! The Swift API on the proxy: a thin layer that parses Swift requests
//! into the object layer's typed operations ([`crate::proxy::objects`]) and
//! writes their results and errors ([`error`]) as Swift does. TempAuth
//! logins, listings' formats, bulk delete and TempURL have their own
//! modules.

pub mod acl;
pub mod bulk;
pub mod cors;
pub mod error;
pub mod formpost;
pub mod info;
pub mod listing;
pub mod names;
pub mod staticweb;
pub mod tempurl;

use crate::container_server::CONTAINER_META;
use crate::proxy::conditions::Conditions;
use crate::proxy::containers::{ListQuery, ListTarget};
use crate::proxy::limits::MAX_MANIFEST_BYTES;
use crate::proxy::manifest::{self, SegmentRef};
use crate::proxy::object_versions;
use crate::proxy::objects::{
    unix_now, CopyObject, KeepFromSource, ObjectError, ObjectMeta, ObjectPath, PutObject,
    ReadObject, WriteCondition, Written,
};
use crate::proxy::versions::{HISTORY_LOCATION, VERSIONS_LOCATION};
use crate::proxy::ProxyState;
use crate::symlink_format::Link;
use error::SwiftError;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use names::{check_merged_metadata, check_metadata, parse_path, NameError};
use service_kit::auth::Identity;
use service_kit::http_util::{
    collect_limited, full, header_str, query_pairs, set_header, status, text, Body, BoxError,
};
use service_kit::server::RequestBody;
use service_kit::timestamp::Timestamp;

/// `GET /auth/v1.0` with `X-Auth-User` / `X-Auth-Key` (or the `X-Storage-*` forms).
pub async fn auth_response(state: &ProxyState, req: &Request<RequestBody>) -> Response<Body> {
    let h = req.headers();
    let user = header_str(h, "x-auth-user").or_else(|| header_str(h, "x-storage-user"));
    let key = header_str(h, "x-auth-key").or_else(|| header_str(h, "x-storage-pass"));
    let (Some(user), Some(key)) = (user, key) else {
        return unauthorized("unknown");
    };
    let Some(token) = state.auth.login_swift(&user, &key).await else {
        return unauthorized(user.split(':').next().unwrap_or("unknown"));
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

/// A Swift request, with CORS around it: a preflight `OPTIONS` is
/// answered from the container's CORS metadata, and an answer to a
/// request with an `Origin` the container allows gets the CORS headers.
pub async fn handle(state: &ProxyState, req: Request<RequestBody>, rest: &str) -> Response<Body> {
    let path = match parse_path(rest) {
        Ok(p) => p,
        Err(e @ NameError::InvalidUtf8) => {
            return text(StatusCode::PRECONDITION_FAILED, e.to_string())
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let origin = header_str(req.headers(), "origin").map(|o| o.into_owned());
    // Only a request with an Origin needs its container again afterwards.
    let container = origin
        .as_ref()
        .and(path.container.clone())
        .map(|c| (path.account.clone(), c));
    if req.method() == Method::OPTIONS {
        let Some(origin) = origin else {
            return cors::options();
        };
        let Some((a, c)) = container else {
            return status(StatusCode::UNAUTHORIZED);
        };
        let Ok(meta) = state.objects.container_meta(&a, &c).await else {
            return status(StatusCode::UNAUTHORIZED);
        };
        let h = req.headers();
        return cors::Cors::of(&meta).preflight(
            &origin,
            header_str(h, "access-control-request-method").as_deref(),
            header_str(h, "access-control-request-headers").as_deref(),
        );
    }
    let mut answer = handle_request(state, req, path, rest).await;
    if let (Some(origin), Some((a, c))) = (origin, container) {
        if let Ok(meta) = state.objects.container_meta(&a, &c).await {
            cors::Cors::of(&meta).decorate(&origin, answer.headers_mut());
        }
    }
    answer
}

async fn handle_request(
    state: &ProxyState,
    req: Request<RequestBody>,
    path: names::SwiftPath,
    rest: &str,
) -> Response<Body> {
    // A form upload carries its own signature (FormPost), token or not.
    if formpost::is_form(&req) {
        if let Some(c) = &path.container {
            let keys = temp_url_keys(state, &path.account, c).await;
            let full_path = percent_encoding::percent_decode_str(&format!("/v1/{rest}"))
                .decode_utf8_lossy()
                .into_owned();
            return formpost::handle(state, req, &path, &full_path, keys).await;
        }
    }
    let token = header_str(req.headers(), "x-auth-token")
        .or_else(|| header_str(req.headers(), "x-storage-token"));
    // A temporary URL reaches one container only (see `Scope`).
    let mut scope = Scope::Account;
    let mut operator = false;
    match token.and_then(|t| state.auth.check(&t)) {
        // An operator (`.reseller_admin`) controls every account.
        Some(id) if id.reseller_admin => operator = true,
        // Swift's `operator_roles` (admin, member) own the account;
        // `reader` may only read it.
        Some(id) if id.account == path.account && id.owns_account() => {}
        Some(id)
            if id.account == path.account
                && id.reads_account()
                && (req.method() == Method::GET || req.method() == Method::HEAD) => {}
        // Anyone else: what the container's ACLs grant them.
        Some(id) => {
            if !acl_grants(state, &req, &path, &id).await {
                return text(StatusCode::FORBIDDEN, "Forbidden");
            }
        }
        None => {
            let query = query_pairs(req.uri().query());
            scope = match tempurl::from_query(&query) {
                Some(signed) => {
                    let granted = match (&path.container, &path.object) {
                        (Some(c), Some(_)) => {
                            let keys = temp_url_keys(state, &path.account, c).await;
                            let full_path = format!("/v1/{rest}");
                            let decoded = percent_encoding::percent_decode_str(&full_path)
                                .decode_utf8_lossy()
                                .into_owned();
                            let client = req
                                .extensions()
                                .get::<service_kit::server::PeerAddr>()
                                .map(|p| p.0.ip());
                            let method = req.method().as_str();
                            tempurl::valid(&signed, method, &decoded, client, &keys, unix_now())
                        }
                        _ => false,
                    };
                    match (&path.container, granted) {
                        (Some(c), true) => Scope::TempUrl {
                            container: c.clone(),
                            disposition: tempurl::disposition(&query),
                        },
                        _ => return unauthorized(&path.account),
                    }
                }
                None => match public_scope(state, &req, &path).await {
                    Some(s) => s,
                    None => return unauthorized(&path.account),
                },
            };
        }
    }
    // A website (anonymous, or asked for with `X-Web-Mode`): directories
    // serve their index or listing.
    let web = matches!(scope, Scope::Public { .. })
        || header_str(req.headers(), "x-web-mode")
            .is_some_and(|v| service_kit::http_util::truthy(&v));
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    if let (true, true, Some(c)) = (web, read, &path.container) {
        let site = match state.objects.container_meta(&path.account, c).await {
            Ok(meta) => staticweb::Site::of(&meta),
            Err(_) => None,
        };
        if let Some(site) = site {
            return web_request(state, req, &path, rest, &site, &scope).await;
        }
    }
    let a = path.account.clone();
    if req.method() == Method::PUT && matches!(scope, Scope::Account) {
        if let Some(format) = query_value(&req, "extract-archive") {
            let Some(compression) = bulk::Compression::parse(&format) else {
                return text(StatusCode::BAD_REQUEST, "Unsupported archive format");
            };
            let base = match (&path.container, &path.object) {
                (Some(c), Some(o)) => format!("{c}/{o}"),
                (Some(c), None) => c.clone(),
                _ => String::new(),
            };
            return bulk::extract(state, req, &a, &base, compression).await;
        }
    }
    match (path.container, path.object) {
        // Swift's bulk middleware takes a bulk delete as a POST or a DELETE.
        (None, _)
            if matches!(*req.method(), Method::POST | Method::DELETE)
                && query_value(&req, "bulk-delete").is_some() =>
        {
            bulk::handle(state, req, &a).await
        }
        (None, _) => account(state, req, a, operator).await,
        (Some(c), None) => container(state, req, a, c).await,
        (Some(c), Some(o)) => object(state, req, a, c, o, &scope).await,
    }
}

/// Whether the container's ACLs let a user of another project (or a
/// user without an operator role) do this: `X-Container-Read` lets them
/// list the container and read its objects, `X-Container-Write` lets them
/// put, post and delete objects (not copy: the source would need its own
/// check). Nothing at the account or on the container itself.
async fn acl_grants(
    state: &ProxyState,
    req: &Request<RequestBody>,
    path: &names::SwiftPath,
    id: &Identity,
) -> bool {
    let Some(c) = &path.container else {
        return false;
    };
    let method = req.method();
    let read = *method == Method::GET || *method == Method::HEAD;
    let write = path.object.is_some()
        && matches!(*method, Method::PUT | Method::POST | Method::DELETE)
        && !req.headers().contains_key("x-copy-from");
    if !read && !write {
        return false;
    }
    let Ok(meta) = state.objects.container_meta(&path.account, c).await else {
        return false;
    };
    let header = if read {
        "x-container-read"
    } else {
        "x-container-write"
    };
    let Some(acl) = header_str(&meta, header) else {
        return false;
    };
    let project_id = id
        .account
        .strip_prefix(service_kit::auth::RESELLER_PREFIX)
        .unwrap_or_default();
    acl::names_user(
        &acl,
        &acl::AclUser {
            project_id,
            project_name: &id.project_name,
            user_id: &id.user_id,
            user_name: &id.user,
        },
    )
}

/// What a request without a token may read by the container's ACL
/// (`X-Container-Read`): its objects with `.r:*` (or a matching
/// referrer), its listing with `.rlistings` too. Reads only.
async fn public_scope(
    state: &ProxyState,
    req: &Request<RequestBody>,
    path: &names::SwiftPath,
) -> Option<Scope> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let c = path.container.as_ref()?;
    let meta = state.objects.container_meta(&path.account, c).await.ok()?;
    let acl = header_str(&meta, "x-container-read")?;
    let referrer = header_str(req.headers(), "referer");
    let grant = acl::public_read(&acl, referrer.as_deref());
    // A container path is a listing, or a website's index (checked there).
    let website = staticweb::Site::of(&meta).is_some();
    let allowed = if path.object.is_some() {
        grant.objects
    } else {
        grant.listings || (grant.objects && website)
    };
    allowed.then(|| Scope::Public {
        container: c.clone(),
    })
}

/// A website read: an object as usual, unless it is missing or a
/// directory; then the site's index, listing, redirect or error page.
async fn web_request(
    state: &ProxyState,
    req: Request<RequestBody>,
    path: &names::SwiftPath,
    rest: &str,
    site: &staticweb::Site,
    scope: &Scope,
) -> Response<Body> {
    let name = path.object.clone().unwrap_or_default();
    let container = path.container.clone().unwrap_or_default();
    let is_dir = name.is_empty() || name.ends_with('/');
    if !is_dir {
        let p = ObjectPath::new(&path.account, &container, &name);
        match get_object(state, &req, p, scope).await {
            Err(SwiftError::Object(ObjectError::NoSuchObject)) => {}
            other => return respond(other),
        }
    }
    let url_path = format!("/v1/{rest}");
    let web = staticweb::WebRequest {
        account: &path.account,
        container: &container,
        name: &name,
        url_path: &url_path,
        head: req.method() == Method::HEAD,
        within: scope.segments_within(),
    };
    respond(staticweb::serve(state, site, web).await)
}

/// 401 with the challenge Swift's TempAuth gives (`WWW-Authenticate`).
fn unauthorized(realm: &str) -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized");
    set_header(
        r.headers_mut(),
        "www-authenticate",
        &format!("Swift realm=\"{}\"", realm.replace('"', "")),
    );
    r
}

/// What a request may reach: its account (a token), or the one container
/// of the temporary URL that granted it. A write through a temporary URL
/// may not name data elsewhere (a DLO's `X-Object-Manifest`, an SLO's
/// segments, `X-Copy-From`): a GET of it through the URL would then read
/// another container (CVE-2015-5223 in Swift). Such a write is 400, and a
/// read of a large object whose segments lie elsewhere is 403.
enum Scope {
    Account,
    /// A read without a token that the container's ACL allows.
    Public {
        container: String,
    },
    TempUrl {
        container: String,
        /// The download name its responses give.
        disposition: tempurl::Disposition,
    },
}

impl Scope {
    fn allows(&self, container: &str) -> Result<(), SwiftError> {
        match self {
            Scope::TempUrl { container: c, .. } if c != container => Err(SwiftError::BadRequest(
                format!("A temporary URL for container {c} cannot reach container {container}"),
            )),
            _ => Ok(()),
        }
    }

    /// The container large objects' segments must be in.
    fn segments_within(&self) -> Option<String> {
        match self {
            Scope::Account => None,
            Scope::TempUrl { container, .. } | Scope::Public { container } => {
                Some(container.clone())
            }
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

fn query_value(req: &Request<RequestBody>, key: &str) -> Option<String> {
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
        } else if let Some(location) = n
            .strip_prefix("x-remove-")
            .map(|l| format!("x-{l}"))
            .filter(|l| [VERSIONS_LOCATION, HISTORY_LOCATION].contains(&l.as_str()))
        {
            set_header(&mut out, &location, "");
        } else if kinds.iter().any(|p| n.starts_with(p)) {
            out.insert(name.clone(), value.clone());
        }
    }
    // One versioning mode at a time: setting one clears the other.
    for (set, other) in [
        (VERSIONS_LOCATION, HISTORY_LOCATION),
        (HISTORY_LOCATION, VERSIONS_LOCATION),
    ] {
        if header_str(&out, set).is_some_and(|v| !v.is_empty()) {
            set_header(&mut out, other, "");
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

/// An account's or container's headers as Swift shows them: a container
/// has its storage policy and, as `Last-Modified`, the time it was made or
/// its metadata last changed (its put timestamp, rounded up).
fn listing_headers(h: &HeaderMap, target: &ListTarget) -> HeaderMap {
    let mut out = public_headers(h);
    if let ListTarget::Container(..) = target {
        set_header(&mut out, "x-storage-policy", info::POLICY);
        match object_versions::State::of(h) {
            object_versions::State::Off => {}
            object_versions::State::Enabled => set_header(&mut out, "x-versions-enabled", "True"),
            object_versions::State::Suspended => {
                set_header(&mut out, "x-versions-enabled", "False")
            }
        }
        let put = header_str(h, "x-timestamp").and_then(|t| t.parse::<Timestamp>().ok());
        if let Some(t) = put {
            let ceil = t.secs() + u64::from(t != Timestamp::from_secs(t.secs()));
            set_header(
                &mut out,
                "last-modified",
                &Timestamp::from_secs(ceil).http_date(),
            );
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
fn list_query(req: &Request<RequestBody>) -> Result<ListQuery, SwiftError> {
    let mut q = ListQuery::default();
    let mut path = None;
    for (k, v) in query_pairs(req.uri().query()) {
        match k.as_str() {
            // As Swift: a limit that is not a number is ignored; one above
            // the maximum is refused.
            "limit" => match v.parse::<usize>() {
                Ok(n) if n <= crate::proxy::limits::MAX_LISTING => q.limit = Some(n),
                Ok(_) => {
                    return Err(SwiftError::Precondition(format!(
                        "Maximum limit is {}",
                        crate::proxy::limits::MAX_LISTING
                    )));
                }
                Err(_) => {}
            },
            "prefix" => q.prefix = v,
            "marker" => q.marker = v,
            "end_marker" => q.end_marker = v,
            "reverse" => q.reverse = service_kit::http_util::truthy(&v),
            "delimiter" => q.delimiter = Some(v).filter(|d| !d.is_empty()),
            "path" => path = Some(v),
            _ => {}
        }
    }
    // `path=p` lists what is directly in the pseudo-directory `p/`
    // (Swift: it overrides prefix and delimiter).
    if let Some(p) = path {
        let p = p.trim_end_matches('/');
        q.prefix = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        q.delimiter = Some("/".into());
        q.path_only = true;
    }
    Ok(q)
}

async fn listing(
    state: &ProxyState,
    req: &Request<RequestBody>,
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
        *r.headers_mut() = listing_headers(&headers, &target);
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
    *r.headers_mut() = listing_headers(&page.headers, &target);
    set_header(r.headers_mut(), "content-type", listing::content_type(fmt));
    set_header(r.headers_mut(), "content-length", &len.to_string());
    Ok(r)
}

/// Either outcome of a handler, as the response.
fn respond(result: Result<Response<Body>, SwiftError>) -> Response<Body> {
    result.unwrap_or_else(|e| service_kit::api_error::ApiError::response(&e))
}

/// An account request; `operator`: the requester is `.reseller_admin`, who
/// alone sets the account's quota (Swift's `account_quotas`).
async fn account(
    state: &ProxyState,
    req: Request<RequestBody>,
    a: String,
    operator: bool,
) -> Response<Body> {
    respond(match *req.method() {
        Method::GET | Method::HEAD => {
            let target = ListTarget::Account(a.clone());
            listing(state, &req, target, "account", "container", &a).await
        }
        Method::POST => {
            async {
                check_metadata(req.headers(), "account").map_err(SwiftError::BadRequest)?;
                let h = metadata_headers(req.headers(), &["x-account-meta-"], "account");
                if let Some(q) = header_str(&h, crate::proxy::quotas::ACCOUNT_QUOTA_BYTES) {
                    if !operator {
                        return Err(SwiftError::Forbidden);
                    }
                    if !q.is_empty() && !q.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(SwiftError::BadRequest("Invalid bytes quota.".into()));
                    }
                }
                let stored = state.objects.head_account(&a).await?;
                check_merged_metadata(&stored, &h, "account").map_err(SwiftError::BadRequest)?;
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
    req: Request<RequestBody>,
    a: String,
    c: String,
) -> Response<Body> {
    respond(match *req.method() {
        Method::GET if query_value(&req, "versions").is_some() => {
            versions_listing(state, &req, &a, &c).await
        }
        Method::GET | Method::HEAD => {
            let target = ListTarget::Container(a, c.clone());
            listing(state, &req, target, "container", "object", &c).await
        }
        Method::PUT | Method::POST => {
            async {
                check_metadata(req.headers(), "container").map_err(SwiftError::BadRequest)?;
                crate::proxy::quotas::check_values(req.headers())
                    .map_err(SwiftError::BadRequest)?;
                crate::proxy::versions::check_headers(req.headers())
                    .map_err(SwiftError::BadRequest)?;
                if let Some(p) = header_str(req.headers(), "x-storage-policy") {
                    if !p.trim().eq_ignore_ascii_case(info::POLICY) {
                        return Err(SwiftError::BadRequest(format!(
                            "Invalid X-Storage-Policy '{p}'"
                        )));
                    }
                }
                let h = metadata_headers(req.headers(), &CONTAINER_META, "container");
                match state.objects.head_container(&a, &c).await {
                    Ok(stored) => check_merged_metadata(&stored, &h, "container")
                        .map_err(SwiftError::BadRequest)?,
                    Err(ObjectError::NoSuchContainer) => {}
                    Err(e) => return Err(e.into()),
                }
                let versioning = versions_enabled(req.headers(), &h)?;
                let answer = if req.method() == Method::PUT {
                    let created = state.objects.put_container(&a, &c, h).await?;
                    status(if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::ACCEPTED
                    })
                } else {
                    state.objects.post_container(&a, &c, h).await?;
                    status(StatusCode::NO_CONTENT)
                };
                if let Some(enabled) = versioning {
                    state.objects.set_versioning(&a, &c, enabled).await?;
                }
                Ok(answer)
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

/// `GET ?versions`: every version of the container's objects (Swift's
/// object versioning listing), with `version_id` and `is_latest`.
async fn versions_listing(
    state: &ProxyState,
    req: &Request<RequestBody>,
    a: &str,
    c: &str,
) -> Result<Response<Body>, SwiftError> {
    let query = list_query(req)?;
    let limit = query.limit.unwrap_or(crate::proxy::limits::MAX_LISTING);
    let version_marker = query_value(req, "version_marker");
    let page = state
        .objects
        .list_versions(
            a,
            c,
            &query.prefix,
            &query.marker,
            version_marker.as_deref(),
            limit,
        )
        .await?;
    let rows: Vec<serde_json::Value> = page
        .entries
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": v.key,
                "hash": v.etag,
                "bytes": v.size,
                "content_type": v.content_type,
                "last_modified": v.last_modified,
                "version_id": v.version_id,
                "is_latest": v.is_latest,
            })
        })
        .collect();
    let fmt = listing::format(query_value(req, "format").as_deref(), req.headers());
    let body = match fmt {
        listing::Format::Json => serde_json::to_vec(&rows).expect("json"),
        listing::Format::Plain => page
            .entries
            .iter()
            .map(|v| format!("{}\n", v.key))
            .collect::<String>()
            .into_bytes(),
        listing::Format::Xml => {
            let mut out = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"{}\">",
                service_kit::http_util::xml_escape(c)
            );
            for v in &page.entries {
                out.push_str(&format!(
                    "<object><name>{}</name><hash>{}</hash><bytes>{}</bytes><content_type>{}</content_type><last_modified>{}</last_modified><version_id>{}</version_id><is_latest>{}</is_latest></object>",
                    service_kit::http_util::xml_escape(&v.key),
                    v.etag,
                    v.size,
                    service_kit::http_util::xml_escape(&v.content_type),
                    v.last_modified,
                    v.version_id,
                    v.is_latest
                ));
            }
            out.push_str("</container>");
            out.into_bytes()
        }
    };
    let headers = state.objects.head_container(a, c).await?;
    let len = body.len();
    let mut r = Response::new(full(body));
    *r.headers_mut() = listing_headers(&headers, &ListTarget::Container(a.into(), c.into()));
    set_header(r.headers_mut(), "content-type", listing::content_type(fmt));
    set_header(r.headers_mut(), "content-length", &len.to_string());
    Ok(r)
}

/// `X-Versions-Enabled` on a container write: the state to set, if any.
/// The older versioning modes and this one exclude each other.
fn versions_enabled(request: &HeaderMap, writing: &HeaderMap) -> Result<Option<bool>, SwiftError> {
    let Some(v) = header_str(request, "x-versions-enabled") else {
        return Ok(None);
    };
    let legacy = [VERSIONS_LOCATION, HISTORY_LOCATION]
        .iter()
        .any(|n| header_str(writing, n).is_some_and(|v| !v.is_empty()));
    if legacy {
        return Err(SwiftError::BadRequest(
            "Cannot use X-Versions-Enabled with X-Versions-Location or X-History-Location".into(),
        ));
    }
    Ok(Some(service_kit::http_util::truthy(&v)))
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
    req: Request<RequestBody>,
    a: String,
    c: String,
    o: String,
    scope: &Scope,
) -> Response<Body> {
    let path = ObjectPath::new(&a, &c, &o);
    respond(match req.method().as_str() {
        "GET" | "HEAD" => get_object(state, &req, path, scope).await,
        "PUT" => {
            let (parts, body) = req.into_parts();
            let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
            put_object(state, &parts.headers, body, path, parts.uri.query(), scope).await
        }
        "COPY" => match scope {
            Scope::Account => copy_object(state, req.headers(), req.uri().query(), path).await,
            Scope::TempUrl { .. } | Scope::Public { .. } => Err(SwiftError::BadRequest(
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
                async {
                    if_delete_at(state, req.headers(), &path).await?;
                    let done = match query_value(&req, "version-id") {
                        Some(v) => state.objects.delete_version(&path, &v, false).await?,
                        None => state.objects.delete_object(&path).await?,
                    };
                    let mut r = status(StatusCode::NO_CONTENT);
                    if let Some(v) = &done.version_id {
                        set_header(r.headers_mut(), "x-object-version-id", v);
                    }
                    if done.delete_marker {
                        set_header(r.headers_mut(), "x-object-version-type", "delete-marker");
                    }
                    Ok(r)
                }
                .await
            }
        }
        _ => Ok(status(StatusCode::METHOD_NOT_ALLOWED)),
    })
}

/// `X-If-Delete-At` on a DELETE (Swift's expirer sends it): the object
/// is deleted only if it still expires at that time; 412 otherwise.
async fn if_delete_at(
    state: &ProxyState,
    headers: &HeaderMap,
    path: &ObjectPath,
) -> Result<(), SwiftError> {
    let Some(v) = header_str(headers, "x-if-delete-at") else {
        return Ok(());
    };
    let want: u64 = v
        .trim()
        .parse()
        .map_err(|_| SwiftError::BadRequest("Bad X-If-Delete-At header value".into()))?;
    let stored = state.objects.head_newest(path).await?;
    let at = header_str(&stored, "x-delete-at").and_then(|v| v.parse::<u64>().ok());
    if at != Some(want) {
        return Err(ObjectError::PreconditionFailed { etag: None }.into());
    }
    Ok(())
}

/// `COPY` with a `Destination`: a PUT of the destination from the source.
async fn copy_object(
    state: &ProxyState,
    headers: &HeaderMap,
    query: Option<&str>,
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
    let mut r = copy(state, headers, query, from, to, None).await?;
    set_header(r.headers_mut(), "x-copied-from", &copied_from);
    Ok(r)
}

async fn copy(
    state: &ProxyState,
    headers: &HeaderMap,
    query: Option<&str>,
    from: ObjectPath,
    to: ObjectPath,
    segments_within: Option<String>,
) -> Result<Response<Body>, SwiftError> {
    let fresh =
        header_str(headers, "x-fresh-metadata").is_some_and(|v| service_kit::http_util::truthy(&v));
    let written = state
        .objects
        .copy(CopyObject {
            from,
            to,
            conditions: Conditions::default(),
            // Swift's copy honours a Range on the request: the copy is that part.
            range: header_str(headers, "range").map(|r| r.into_owned()),
            meta: object_meta(headers)?,
            keep: if fresh {
                KeepFromSource::ContentType
            } else {
                KeepFromSource::Everything
            },
            checksum: None,
            carry_system: Vec::new(),
            manifest: query_pairs(query)
                .iter()
                .any(|(k, v)| k == "multipart-manifest" && v == "get"),
            segments_within,
            symlink: query_pairs(query)
                .iter()
                .any(|(k, v)| k == "symlink" && v == "get"),
            // A COPY of one version (`?version-id=`).
            source_version: query_pairs(query)
                .into_iter()
                .find(|(k, _)| k == "version-id")
                .map(|(_, v)| v),
            source_key: None,
            source_stored_at: None,
            sealing: None,
        })
        .await?;
    Ok(written_answer(&written))
}

/// 201 for a write, with its version where versions are kept.
fn written_answer(written: &Written) -> Response<Body> {
    let mut r = created(&written.etag, written.last_modified);
    if let Some(v) = &written.version_id {
        set_header(r.headers_mut(), "x-object-version-id", v);
    }
    r
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
    let te = header_str(headers, "transfer-encoding");
    // As Swift: one coding, `chunked`; a list of codings is 501 (a lone
    // other coding never gets here: the HTTP layer answers 400).
    if te.as_deref().is_some_and(|t| t.contains(',')) {
        return Err(SwiftError::NotImplemented(
            "Unsupported Transfer-Coding header value specified in Transfer-Encoding header".into(),
        ));
    }
    let chunked = te.is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
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
        return copy(state, headers, query, from, path, scope.segments_within()).await;
    }
    let meta = object_meta(headers)?;
    if let Some(target) = header_str(headers, "x-symlink-target") {
        if length != Some(0) {
            return Err(SwiftError::BadRequest(
                "Symlink requests require a zero byte body".into(),
            ));
        }
        let Some((container, object)) = Link::parse(&target) else {
            return Err(SwiftError::Precondition(
                "X-Symlink-Target header must be of the form <container name>/<object name>".into(),
            ));
        };
        scope.allows(&container)?;
        let account = header_str(headers, "x-symlink-target-account")
            .map(|a| a.into_owned())
            .filter(|a| *a != path.account);
        if account.is_some() && matches!(scope, Scope::TempUrl { .. }) {
            return Err(SwiftError::BadRequest(
                "A temporary URL cannot reach another account".into(),
            ));
        }
        let link = Link {
            container,
            object,
            account,
            etag: header_str(headers, "x-symlink-target-etag").map(|e| e.into_owned()),
        };
        let written = state.objects.put_symlink(path, meta, link).await?;
        return Ok(written_answer(&written));
    }
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
        let refs = manifest::parse_request(&raw).map_err(SwiftError::BadRequest)?;
        for r in &refs {
            if let SegmentRef::Object { path, .. } = r {
                let container = path.trim_start_matches('/').split('/').next();
                scope.allows(container.unwrap_or_default())?;
            }
        }
        let written = state.objects.put_static_large(&path, meta, &refs).await?;
        let mut r = written_answer(&written);
        set_header(r.headers_mut(), "etag", &format!("\"{}\"", written.etag));
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
            sealing: None,
            at: None,
            body,
        })
        .await?;
    Ok(written_answer(&written))
}

async fn get_object(
    state: &ProxyState,
    req: &Request<RequestBody>,
    path: ObjectPath,
    scope: &Scope,
) -> Result<Response<Body>, SwiftError> {
    let object = path.object.clone();
    let read = state
        .objects
        .get(ReadObject {
            path,
            head: req.method() == Method::HEAD,
            range: header_str(req.headers(), "range").map(|r| r.into_owned()),
            conditions: Conditions::from_headers(req.headers()),
            manifest: query_value(req, "multipart-manifest").as_deref() == Some("get"),
            segments_within: scope.segments_within(),
            symlink: query_value(req, "symlink").as_deref() == Some("get"),
            version: query_value(req, "version-id"),
            customer_key: None,
            stored_at: None,
            part: None,
        })
        .await?;
    let mut r = Response::new(read.body);
    if read.partial {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let mut headers = public_headers(&read.headers);
    // A link read as itself says what it names.
    headers.extend(Link::client_headers(&read.headers));
    let version = header_str(
        &read.headers,
        &format!("x-object-sysmeta-{}", object_versions::VERSION_ID_KEY),
    );
    if let Some(v) = version {
        set_header(&mut headers, "x-object-version-id", &v);
    }
    if let Scope::TempUrl { disposition, .. } = scope {
        // As Swift's tempurl: user metadata is not shown (but for
        // `X-Object-Meta-Public-*`), and the response names a download.
        let private: Vec<_> = headers
            .keys()
            .filter(|k| {
                let k = k.as_str();
                k.starts_with("x-object-meta-") && !k.starts_with("x-object-meta-public-")
            })
            .cloned()
            .collect();
        for k in private {
            headers.remove(&k);
        }
        let stored = header_str(&headers, "content-disposition").map(|d| d.into_owned());
        let value = tempurl::content_disposition(disposition, &object, stored.as_deref());
        set_header(&mut headers, "content-disposition", &value);
    }
    *r.headers_mut() = headers;
    Ok(r)
}
