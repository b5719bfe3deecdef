//! The Glance Image API v2 over HTTP: a thin adapter from requests to the
//! image rules ([`crate::image`]), the inspector, the object store and the
//! cache.

#![cfg(feature = "service")]

use crate::cache::Cache;
use crate::chunks::ChunkStore;
use crate::config::RegistryConfig;
use crate::db::{ImageDb, Updated};
use crate::image::{check_tag, Image, ImageError, ListQuery, Status};
use crate::inspect::{ImageInfo, Limits};
use crate::verify::{self, Declared, Verified};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use service_kit::auth::{Identity, TempAuth};
use service_kit::http_util::json_response;
use service_kit::http_util::{
    collect_limited, decode, file_body, header_str, query_pairs, set_header, Body,
};
use service_kit::ids::new_id;
use service_kit::server::RequestBody;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Registry {
    pub config: RegistryConfig,
    pub db: Arc<ImageDb>,
    /// Image data: chunks and manifests in the object store.
    pub store: Arc<ChunkStore>,
    pub cache: Cache,
    pub auth: TempAuth,
    pub limits: Limits,
    pub uploads_ok: AtomicU64,
    pub uploads_failed: AtomicU64,
    /// Bytes the cache filled from other cached images' chunks.
    pub cache_chunk_bytes_local: AtomicU64,
    /// Time spent in the verdict (inspector, qemu-img info and measure), µs.
    pub verify_micros: AtomicU64,
    /// Objects to delete once the store answers (interrupted uploads found at start).
    pub delete_later: std::sync::Mutex<Vec<String>>,
}

/// A Glance fault: every error of the image API, written once.
pub struct GlanceFault {
    pub status: StatusCode,
    pub message: String,
}

impl service_kit::api_error::ApiError for GlanceFault {
    fn status(&self) -> StatusCode {
        self.status
    }

    /// `{"error": {"code", "title", "message"}}`: the shape
    /// python-glanceclient and openstacksdk read the message from.
    fn body(&self) -> (&'static str, bytes::Bytes) {
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
        }});
        let bytes = serde_json::to_vec(&body).expect("json");
        ("application/json; charset=utf-8", bytes.into())
    }
}

/// A Glance fault as the response.
pub fn fault(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let message = message.into();
    service_kit::api_error::ApiError::response(&GlanceFault { status, message })
}

pub(crate) fn no_content() -> Response<Body> {
    let mut r = Response::new(service_kit::http_util::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn image_error(e: ImageError) -> Response<Body> {
    match e {
        ImageError::BadRequest(m) => fault(StatusCode::BAD_REQUEST, m),
        ImageError::Forbidden(_) | ImageError::Reserved(_) => {
            fault(StatusCode::FORBIDDEN, e.to_string())
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "registry error");
    fault(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub async fn handle(reg: Arc<Registry>, req: Request<RequestBody>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let method = req.method().clone();
    match parts.as_slice() {
        [] | ["versions"] => return versions(),
        ["healthcheck"] => return service_kit::http_util::text(StatusCode::OK, "OK"),
        ["metrics"] => return metrics(&reg),
        ["v2", ..] => {}
        _ => return fault(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
    let Some(who) = header_str(req.headers(), "x-auth-token").and_then(|t| reg.auth.check(&t))
    else {
        return fault(StatusCode::UNAUTHORIZED, "This server could not verify that you are authorized to access the document you requested.");
    };
    // Glance's default policy: `reader` lists, shows and downloads, and
    // changes nothing.
    if who.read_only() && !matches!(method, Method::GET | Method::HEAD) {
        return fault(
            StatusCode::FORBIDDEN,
            "You are not authorized to complete this action: the reader role may only read.",
        );
    }
    let parts: Vec<String> = parts.iter().map(|p| decode(p)).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, &parts[1..]) {
        (Method::GET, ["images"]) => list(&reg, &who, req.uri().query()),
        (Method::POST, ["images"]) => create(&reg, &who, req).await,
        (Method::GET, ["images", id]) => show(&reg, &who, id),
        (Method::PATCH, ["images", id]) => update(&reg, &who, id, req).await,
        (Method::DELETE, ["images", id]) => delete(&reg, &who, id).await,
        (Method::PUT, ["images", id, "file"]) => upload(&reg, &who, id, req).await,
        (Method::GET, ["images", id, "file"]) => download(&reg, &who, id, &req).await,
        (Method::GET, ["images", id, "chunks"]) => chunks(&reg, &who, id, None).await,
        (Method::GET, ["images", id, "chunks", chunk]) => chunks(&reg, &who, id, Some(chunk)).await,
        (Method::POST, ["images", id, "actions", action @ ("deactivate" | "reactivate")]) => {
            set_active(&reg, &who, id, *action == "reactivate")
        }
        (Method::GET, ["info", "stores"]) => json_response(
            StatusCode::OK,
            &json!({"stores": [{"id": "default", "default": true, "description": "the Nubo object store"}]}),
        ),
        (Method::PUT, ["images", id, "stage"]) => crate::import::stage(&reg, &who, id, req).await,
        (Method::POST, ["images", id, "import"]) => {
            crate::import::import(&reg, &who, id, req).await
        }
        (Method::GET, ["images", id, "members"]) => crate::members::list(&reg, &who, id),
        (Method::POST, ["images", id, "members"]) => crate::members::add(&reg, &who, id, req).await,
        (Method::GET, ["images", id, "members", m]) => crate::members::show(&reg, &who, id, m),
        (Method::PUT, ["images", id, "members", m]) => {
            crate::members::answer(&reg, &who, id, m, req).await
        }
        (Method::DELETE, ["images", id, "members", m]) => crate::members::remove(&reg, &who, id, m),
        (Method::PUT, ["images", id, "tags", t]) => tag(&reg, &who, id, t, true),
        (Method::DELETE, ["images", id, "tags", t]) => tag(&reg, &who, id, t, false),
        (Method::GET, ["schemas", "image"]) => {
            json_response(StatusCode::OK, &crate::schema::image())
        }
        (Method::GET, ["schemas", "member"]) => {
            json_response(StatusCode::OK, &crate::schema::member())
        }
        (Method::GET, ["schemas", "members"]) => {
            json_response(StatusCode::OK, &crate::schema::members())
        }
        (Method::GET, ["schemas", "images"]) => {
            json_response(StatusCode::OK, &crate::schema::images())
        }
        (Method::GET, ["info", "import"]) => json_response(
            StatusCode::OK,
            &json!({"import-methods": {"description": "Import methods available.", "type": "array", "value": crate::import::METHODS}}),
        ),
        (Method::GET, ["cache"]) => cache_list(&reg),
        (Method::DELETE, ["cache"]) if who.admin => {
            reg.cache.purge();
            no_content()
        }
        (Method::POST, ["cache", "prune"]) if who.admin => {
            let pruned = reg.cache.prune();
            json_response(
                StatusCode::OK,
                &json!({"pruned": pruned, "cache_bytes": reg.cache.used_bytes()}),
            )
        }
        (Method::POST, ["cache", "clean"]) if who.admin => {
            let stall = std::time::Duration::from_secs(reg.config.cache_stall_secs);
            json_response(StatusCode::OK, &json!({"cleaned": reg.cache.clean(stall)}))
        }
        (Method::PUT, ["cache", id]) if who.admin => prefetch(&reg, id),
        (Method::DELETE, ["cache", id]) if who.admin => {
            if reg.cache.remove(id) {
                no_content()
            } else {
                fault(StatusCode::NOT_FOUND, format!("Image {id} is not cached."))
            }
        }
        (_, ["cache", ..]) => fault(StatusCode::FORBIDDEN, "Cache management needs an admin."),
        _ => fault(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

fn versions() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"versions": [{"id": "v2.9", "status": "CURRENT", "links": [{"rel": "self", "href": "/v2/"}]}]}),
    )
}

fn not_found(id: &str) -> Response<Body> {
    fault(
        StatusCode::NOT_FOUND,
        format!("No image found with ID {id}"),
    )
}

/// The image if `who` may see it.
pub(crate) fn load(reg: &Registry, who: &Identity, id: &str) -> Result<Image, Response<Body>> {
    match reg.db.get(id) {
        Ok(Some(img)) if img.visible_to(&who.account, who.admin) => Ok(img),
        Ok(_) => Err(not_found(id)),
        Err(e) => Err(internal(e)),
    }
}

/// Changes one image atomically ([`ImageDb::update`]): `change` sees the
/// record as it is now, and may refuse with the response to send, in which
/// case nothing is written.
pub(crate) fn change_image(
    reg: &Registry,
    id: &str,
    change: impl FnOnce(&mut Image) -> Result<(), Response<Body>>,
) -> Result<Image, Response<Body>> {
    match reg.db.update(id, change) {
        Ok(Updated::Done(img)) => Ok(*img),
        Ok(Updated::Refused(r)) => Err(r),
        Ok(Updated::Missing) => Err(not_found(id)),
        Err(e) => Err(internal(e)),
    }
}

/// Glance's 409 for a transition the image's status does not allow.
pub(crate) fn bad_transition(from: Status, to: &str) -> Response<Body> {
    fault(
        StatusCode::CONFLICT,
        format!(
            "Image status transition from {} to {to} is not allowed",
            from.name()
        ),
    )
}

/// The image if `who` may change it.
pub(crate) fn load_owned(
    reg: &Registry,
    who: &Identity,
    id: &str,
) -> Result<Image, Response<Body>> {
    let img = load(reg, who, id)?;
    if !img.owned_by(&who.account, who.admin) {
        return Err(fault(
            StatusCode::FORBIDDEN,
            "You are not permitted to modify this image.",
        ));
    }
    Ok(img)
}

fn check_publicize(img: &Image, who: &Identity) -> Result<(), Response<Body>> {
    if img.visibility == "public" && !who.admin {
        return Err(fault(
            StatusCode::FORBIDDEN,
            "Only an admin may make an image public.",
        ));
    }
    Ok(())
}

fn list(reg: &Registry, who: &Identity, query: Option<&str>) -> Response<Body> {
    let pairs = query_pairs(query);
    let q = match ListQuery::parse(&pairs) {
        Ok(q) => q,
        Err(e) => return image_error(e),
    };
    let all = match reg.db.all() {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let visible: Vec<Image> = all
        .into_iter()
        .filter(|i| i.listed_for(&who.account, who.admin))
        .collect();
    let (page, more) = match q.page(visible) {
        Ok(p) => p,
        Err(e) => return image_error(e),
    };
    let mut body = json!({
        "images": page.iter().map(Image::to_json).collect::<Vec<_>>(),
        "schema": "/v2/schemas/images",
        "first": "/v2/images",
    });
    if more {
        let last = &page.last().expect("a full page").id;
        let kept: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "marker")
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    service_kit::http_util::encode(k),
                    service_kit::http_util::encode(v)
                )
            })
            .collect();
        let mut next = format!("/v2/images?marker={last}");
        for k in kept {
            next.push('&');
            next.push_str(&k);
        }
        body["next"] = json!(next);
    }
    json_response(StatusCode::OK, &body)
}

pub(crate) async fn json_body(req: Request<RequestBody>) -> Result<Value, Response<Body>> {
    let bytes = collect_limited(req.into_body(), 1 << 20)
        .await
        .ok_or_else(|| {
            fault(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large.",
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        fault(
            StatusCode::BAD_REQUEST,
            format!("Malformed JSON in request body: {e}"),
        )
    })
}

async fn create(reg: &Registry, who: &Identity, req: Request<RequestBody>) -> Response<Body> {
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(obj) = body.as_object() else {
        return fault(StatusCode::BAD_REQUEST, "An image is a JSON object.");
    };
    let img = match Image::create(new_id(), who.account.clone(), obj) {
        Ok(i) => i,
        Err(e) => return image_error(e),
    };
    if let Err(r) = check_publicize(&img, who) {
        return r;
    }
    match reg.db.insert(&img) {
        Ok(true) => {}
        Ok(false) => {
            return fault(
                StatusCode::CONFLICT,
                format!("Image with identifier {} already exists!", img.id),
            )
        }
        Err(e) => return internal(e),
    }
    let mut r = json_response(StatusCode::CREATED, &img.to_json());
    set_header(
        r.headers_mut(),
        "location",
        &format!("/v2/images/{}", img.id),
    );
    r
}

fn show(reg: &Registry, who: &Identity, id: &str) -> Response<Body> {
    match load(reg, who, id) {
        Ok(img) => json_response(StatusCode::OK, &img.to_json()),
        Err(r) => r,
    }
}

async fn update(
    reg: &Registry,
    who: &Identity,
    id: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    let ct = header_str(req.headers(), "content-type")
        .unwrap_or_default()
        .to_string();
    if !ct.starts_with("application/openstack-images-v2.1-json-patch")
        && !ct.starts_with("application/openstack-images-v2.0-json-patch")
    {
        return fault(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content type must be application/openstack-images-v2.1-json-patch",
        );
    }
    if let Err(r) = load_owned(reg, who, id) {
        return r;
    }
    let ops = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // Applied to the record as it is when written, not as it was read.
    let changed = change_image(reg, id, |img| {
        let new = img.apply_patch(&ops).map_err(image_error)?;
        check_publicize(&new, who)?;
        *img = new;
        Ok(())
    });
    match changed {
        Ok(new) => json_response(StatusCode::OK, &new.to_json()),
        Err(r) => r,
    }
}

async fn delete(reg: &Registry, who: &Identity, id: &str) -> Response<Body> {
    let img = match load_owned(reg, who, id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    // First marked deleted (atomically, so no upload can start on it),
    // then its data goes, then the record.
    let before = img.status;
    let marked = change_image(reg, id, |img| {
        if img.protected {
            return Err(fault(
                StatusCode::FORBIDDEN,
                format!("Image {id} is protected and cannot be deleted."),
            ));
        }
        if matches!(
            img.status,
            Status::Saving | Status::Importing | Status::Deleted
        ) {
            return Err(fault(
                StatusCode::CONFLICT,
                format!("Image {id} is being written; delete it when that ends."),
            ));
        }
        img.status = Status::Deleted;
        Ok(())
    });
    let img = match marked {
        Ok(i) => i,
        Err(r) => return r,
    };
    if let Some(loc) = &img.location {
        if let Err(e) = reg.store.delete(loc).await {
            let _ = change_image(reg, id, |img| {
                img.status = before;
                Ok(())
            });
            return fault(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Could not delete the image data: {e}"),
            );
        }
    }
    reg.cache.remove(id);
    if let Err(e) = reg.db.delete(id) {
        return internal(e);
    }
    no_content()
}

/// `POST /v2/images/{id}/actions/deactivate|reactivate` (admins): a
/// deactivated image keeps its data but only admins may download it.
fn set_active(reg: &Registry, who: &Identity, id: &str, active: bool) -> Response<Body> {
    if !who.admin {
        return fault(
            StatusCode::FORBIDDEN,
            "Only an admin may deactivate or reactivate an image.",
        );
    }
    if let Err(r) = load(reg, who, id) {
        return r;
    }
    let (from, to) = if active {
        (Status::Deactivated, Status::Active)
    } else {
        (Status::Active, Status::Deactivated)
    };
    let changed = change_image(reg, id, |img| {
        if img.status == to {
            // Already there: nothing to write.
            return Err(no_content());
        }
        if img.status != from {
            return Err(bad_transition(img.status, to.name()));
        }
        img.status = to;
        img.updated_at = service_kit::ids::now_iso8601();
        Ok(())
    });
    match changed {
        Ok(_) => no_content(),
        Err(r) => r,
    }
}

fn tag(reg: &Registry, who: &Identity, id: &str, tag: &str, add: bool) -> Response<Body> {
    if let Err(r) = load_owned(reg, who, id) {
        return r;
    }
    if add {
        if let Err(e) = check_tag(tag) {
            return image_error(e);
        }
    }
    let changed = change_image(reg, id, |img| {
        if add {
            if !img.tags.iter().any(|t| t == tag) {
                img.tags.push(tag.to_string());
            }
        } else {
            let before = img.tags.len();
            img.tags.retain(|t| t != tag);
            if img.tags.len() == before {
                return Err(fault(
                    StatusCode::NOT_FOUND,
                    format!("Tag {tag} not found."),
                ));
            }
        }
        img.updated_at = service_kit::ids::now_iso8601();
        Ok(())
    });
    match changed {
        Ok(_) => no_content(),
        Err(r) => r,
    }
}

/// What an upload produced, before the record says so.
struct Received {
    hashes: Hashes,
    info: ImageInfo,
}

/// Why an upload failed: the status the client sees and the reason.
pub(crate) struct Failed(pub StatusCode, pub String);

async fn upload(
    reg: &Registry,
    who: &Identity,
    id: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    let (head, body) = req.into_parts();
    if let Err(r) = load_owned(reg, who, id) {
        return refuse_upload(body, r).await;
    }
    let ct = header_str(&head.headers, "content-type")
        .unwrap_or_default()
        .to_string();
    if !ct.is_empty() && !ct.starts_with("application/octet-stream") {
        let r = fault(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content type must be application/octet-stream.",
        );
        return refuse_upload(body, r).await;
    }
    // queued -> saving is a compare-and-set: of two uploads to one image,
    // one wins and the other is told 409 before it touches anything.
    let claimed = change_image(reg, id, |img| {
        if img.status != Status::Queued {
            return Err(bad_transition(img.status, "saving"));
        }
        img.status = Status::Saving;
        img.updated_at = service_kit::ids::now_iso8601();
        Ok(())
    });
    let img = match claimed {
        Ok(i) => i,
        Err(r) => return refuse_upload(body, r).await,
    };
    let declared_len: Option<u64> =
        header_str(&head.headers, "content-length").and_then(|v| v.parse().ok());
    let client_md5 = client_checksum(&head.headers);
    let temp = reg.cache.incomplete_path(id);
    // The bytes go to the store as they arrive (so an upload costs about
    // one transfer, not two); if the image is then refused, the stored copy
    // is deleted before the answer, so nothing of it remains.
    let (tee, rx) = tokio::sync::mpsc::channel(8);
    let (received, stored) = tokio::join!(
        receive(reg, &img, body, &temp, declared_len, client_md5, tee),
        reg.store.put_stream(id, rx)
    );
    let result = match (received, stored) {
        (Ok(r), Ok(s)) if s.size == r.hashes.size => Ok((r, s)),
        (Ok(_), Ok(_)) => Err(Failed(
            StatusCode::SERVICE_UNAVAILABLE,
            "the object store received different data".into(),
        )),
        (Ok(_), Err(e)) => Err(Failed(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not store the image: {e}"),
        )),
        (Err(f), _) => Err(f),
    };
    if result.is_err() {
        if let Err(e) = reg.store.delete(id).await {
            tracing::error!(image = %id, error = %e, "could not delete the data of a refused upload");
        }
    }
    match result {
        Ok((r, stored)) => {
            // saving -> active, only from saving (this upload's claim).
            let done = change_image(reg, id, |img| {
                if img.status != Status::Saving {
                    return Err(bad_transition(img.status, "active"));
                }
                img.status = Status::Active;
                img.virtual_size = Some(r.info.virtual_size);
                r.hashes.clone().record(img);
                img.disk_format
                    .get_or_insert_with(|| r.info.format.name().to_string());
                img.container_format
                    .get_or_insert_with(|| r.info.container.unwrap_or("bare").to_string());
                for (k, v) in &r.info.properties {
                    img.properties.entry(k.clone()).or_insert_with(|| v.clone());
                }
                img.location = Some(id.to_string());
                img.failure = None;
                img.updated_at = service_kit::ids::now_iso8601();
                Ok(())
            });
            if let Err(resp) = done {
                let _ = reg.store.delete(id).await;
                let _ = std::fs::remove_file(&temp);
                return resp;
            }
            // The uploaded file is a complete copy: it becomes the cached
            // one, with its chunks recorded beside it.
            let _ = service_kit::server::blocking(|| {
                crate::chunks::save_sidecar(&temp, &stored.manifest)
            });
            if reg.cache.commit(&temp, id).is_err() {
                let _ = std::fs::remove_file(&temp);
                let _ = std::fs::remove_file(crate::chunks::sidecar(&temp));
            }
            reg.uploads_ok.fetch_add(1, Ordering::Relaxed);
            no_content()
        }
        Err(Failed(status, reason)) => {
            let _ = std::fs::remove_file(&temp);
            let _ = change_image(reg, id, |img| {
                if img.status != Status::Saving {
                    return Err(no_content());
                }
                img.status = Status::Killed;
                img.failure = Some(reason.clone());
                img.updated_at = service_kit::ids::now_iso8601();
                Ok(())
            });
            reg.uploads_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(image = %id, %reason, "upload refused");
            fault(status, reason)
        }
    }
}

/// Answers an upload refused before its data was read. A modest body is
/// read and dropped first, so that clients that send the whole body before
/// reading the answer (most HTTP libraries) see the refusal rather than a
/// broken connection; a large one is cut off.
async fn refuse_upload(mut body: RequestBody, mut refusal: Response<Body>) -> Response<Body> {
    const DRAIN: u64 = 64 << 20;
    let mut read = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |d| d.len() as u64);
        if read > DRAIN {
            set_header(refusal.headers_mut(), "connection", "close");
            break;
        }
    }
    refusal
}

/// `Content-MD5` (base64, as HTTP has it) or Glance v1's `x-image-meta-checksum` (hex).
fn client_checksum(h: &http::HeaderMap) -> Option<String> {
    if let Some(v) = header_str(h, "x-image-meta-checksum") {
        return Some(v.trim().to_ascii_lowercase());
    }
    use base64::Engine;
    header_str(h, "content-md5")
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .map(hex::encode)
}

/// Where a copy of an upload's bytes goes as they arrive (the object store).
pub(crate) type Tee = tokio::sync::mpsc::Sender<Bytes>;

/// The hashes of an image's data, all from one pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hashes {
    pub size: u64,
    pub md5: String,
    pub sha512: String,
    pub blake3: String,
}

impl Hashes {
    /// Sets the record's hashes and size.
    pub fn record(self, img: &mut Image) {
        img.size = Some(self.size);
        img.checksum = Some(self.md5);
        img.os_hash_value = Some(self.sha512);
        img.blake3 = Some(self.blake3);
    }
}

/// Hashes what it is fed: MD5 (`checksum`), SHA-512 (`os_hash_value`),
/// BLAKE3 (`nubo_blake3`).
#[derive(Default)]
pub(crate) struct Hashing {
    md5: Md5,
    sha512: sha2::Sha512,
    blake3: blake3::Hasher,
    size: u64,
}

impl Hashing {
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha512.update(data);
        self.blake3.update(data);
        self.size += data.len() as u64;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Hashes {
        Hashes {
            size: self.size,
            md5: hex::encode(self.md5.finalize()),
            sha512: hex::encode(self.sha512.finalize()),
            blake3: self.blake3.finalize().to_hex().to_string(),
        }
    }
}

/// Streams a request body to a new file at `path` while a writer thread
/// hashes it (every hash in one pass). Stops at `max` bytes.
pub(crate) async fn stream_to_file(
    mut body: RequestBody,
    path: &Path,
    max: u64,
    tee: Option<Tee>,
) -> Result<Hashes, Failed> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let path = path.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Hashes> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut hashing = Hashing::default();
        while let Some(chunk) = rx.blocking_recv() {
            hashing.update(&chunk);
            // Zeros become holes, as on the storage nodes.
            service_kit::fs::write_sparse(&mut f, &chunk)?;
        }
        f.set_len(hashing.size())?;
        f.sync_all()?;
        Ok(hashing.finish())
    });
    let mut received = 0u64;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    received += data.len() as u64;
                    if received > max {
                        failure = Some(Failed(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("image is larger than {max} bytes"),
                        ));
                        break;
                    }
                    if let Some(t) = &tee {
                        // The store falling behind slows the client down.
                        if t.send(data.clone()).await.is_err() {
                            failure = Some(Failed(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "the object store stopped taking the image".into(),
                            ));
                            break;
                        }
                    }
                    if tx.send(data).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                failure = Some(Failed(
                    StatusCode::BAD_REQUEST,
                    format!("upload interrupted: {e}"),
                ));
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Some(f) = failure {
        return Err(f);
    }
    written.map_err(|e| {
        Failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not stage the image: {e}"),
        )
    })
}

/// Runs the one verdict ([`verify::verify`]) on a received file, against
/// what the image record declares, off the async workers. The work
/// directory (an OVA's extracted disk) is `<file>.verify`; the caller
/// removes it once done with [`Verified::disk`].
pub(crate) async fn check_image(
    reg: &Registry,
    img: &Image,
    file: &Path,
) -> Result<Verified, Failed> {
    let limits = reg.limits.clone();
    let file = file.to_path_buf();
    let work = work_dir(&file);
    let (disk_format, container_format) = (img.disk_format.clone(), img.container_format.clone());
    let started = std::time::Instant::now();
    let verdict = tokio::task::spawn_blocking(move || {
        let declared = Declared {
            disk_format: disk_format.as_deref(),
            container_format: container_format.as_deref(),
        };
        verify::verify(&file, declared, &limits, &work)
    })
    .await
    .map_err(|e| Failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    reg.verify_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    verdict.map_err(|e| match e {
        verify::VerifyError::Io(e) => Failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        e => Failed(StatusCode::BAD_REQUEST, e.to_string()),
    })
}

/// Where [`check_image`] may extract an OVA's disk for `file`.
pub(crate) fn work_dir(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".verify");
    PathBuf::from(name)
}

/// An upload's data: received, hashed, inspected and checked against what
/// the client declared.
async fn receive(
    reg: &Registry,
    img: &Image,
    body: RequestBody,
    temp: &Path,
    declared_len: Option<u64>,
    client_md5: Option<String>,
    tee: Tee,
) -> Result<Received, Failed> {
    let hashes = stream_to_file(body, temp, reg.config.max_image_size, Some(tee)).await?;
    let (size, md5) = (hashes.size, hashes.md5.clone());
    if declared_len.is_some_and(|n| n != size) {
        return Err(Failed(
            StatusCode::BAD_REQUEST,
            format!("received {size} bytes, not the declared length"),
        ));
    }
    if let Some(want) = client_md5 {
        if want != md5 {
            return Err(Failed(
                StatusCode::BAD_REQUEST,
                format!("checksum mismatch: the client sent {want}, the data hashes to {md5}"),
            ));
        }
    }
    let verified = check_image(reg, img, temp).await;
    let _ = std::fs::remove_dir_all(work_dir(temp));
    Ok(Received {
        hashes,
        info: verified?.info,
    })
}

/// Fetches an image from the store into `temp`, checking its MD5: chunk
/// by chunk, taking each from a cached image that holds it where one does
/// (so a new version of a cached image moves only what changed), and
/// recording its chunks beside it. An image stored before chunking is
/// read whole.
pub(crate) async fn fetch(
    reg: &Registry,
    img: &Image,
    temp: PathBuf,
) -> Result<u64, std::io::Error> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let loc = img.location.clone().unwrap_or_else(|| img.id.clone());
    let mut md5 = Md5::new();
    let size = match reg
        .store
        .manifest(&loc)
        .await
        .map_err(std::io::Error::other)?
    {
        Some(manifest) => {
            let dir = reg.cache.complete_dir().to_path_buf();
            let index = service_kit::server::blocking(|| crate::chunks::local_index(&dir));
            let store = reg.store.clone();
            let done = crate::chunks::assemble(
                &manifest,
                &index,
                &temp,
                |id| {
                    let store = store.clone();
                    async move { store.chunk(&id).await.map_err(|e| e.to_string()) }
                },
                |data| md5.update(data),
            )
            .await
            .map_err(std::io::Error::other)?;
            reg.cache_chunk_bytes_local
                .fetch_add(done.local_bytes, Ordering::Relaxed);
            service_kit::server::blocking(|| crate::chunks::save_sidecar(&temp, &manifest))?;
            manifest.size
        }
        None => {
            let resp = reg
                .store
                .get_range(&loc, None)
                .await
                .map_err(std::io::Error::other)?;
            let mut body = resp.into_body();
            let mut f = tokio::fs::File::create(&temp).await?;
            let mut size = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(std::io::Error::other)?;
                if let Ok(data) = frame.into_data() {
                    md5.update(&data);
                    size += data.len() as u64;
                    // Zeros become holes, as everywhere images are written.
                    if service_kit::fs::is_hole(&data) {
                        f.flush().await?;
                        f.seek(std::io::SeekFrom::Current(data.len() as i64))
                            .await?;
                    } else {
                        f.write_all(&data).await?;
                    }
                }
            }
            f.flush().await?;
            f.set_len(size).await?;
            f.sync_all().await?;
            size
        }
    };
    let got = hex::encode(md5.finalize());
    if img.checksum.as_deref().is_some_and(|want| want != got) {
        return Err(std::io::Error::other(format!(
            "stored data of {} does not match its checksum",
            img.id
        )));
    }
    Ok(size)
}

/// `GET /v2/images/{id}/chunks` (ours): the chunks of an image, in order,
/// for hosts that keep chunks of other images; `GET .../chunks/{chunk}`:
/// one of them. Both with the download's permissions.
async fn chunks(reg: &Registry, who: &Identity, id: &str, chunk: Option<&str>) -> Response<Body> {
    let img = match load(reg, who, id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if img.status != Status::Active && !(img.status == Status::Deactivated && who.admin) {
        return fault(
            StatusCode::CONFLICT,
            format!("Image {id} has no data to read."),
        );
    }
    let loc = img.location.clone().unwrap_or_else(|| img.id.clone());
    let manifest = match reg.store.manifest(&loc).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return fault(
                StatusCode::NOT_FOUND,
                format!("Image {id} is not stored as chunks."),
            )
        }
        Err(e) => return fault(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let Some(chunk) = chunk else {
        return json_response(
            StatusCode::OK,
            &serde_json::to_value(manifest.as_ref()).unwrap_or_default(),
        );
    };
    let mut at = 0u64;
    let Some(found) = manifest.chunks.iter().find(|c| {
        at += c.len;
        c.id == chunk
    }) else {
        return fault(
            StatusCode::NOT_FOUND,
            format!("Image {id} has no chunk {chunk}."),
        );
    };
    // From the cached copy when there is one (checked like any local
    // chunk), else from the store.
    if let Some(path) = reg.cache.peek(id) {
        let local = crate::chunks::LocalChunk {
            file: path,
            offset: at - found.len,
            len: found.len,
        };
        let chunk_id = chunk.to_string();
        let read =
            tokio::task::spawn_blocking(move || crate::chunks::read_local(&local, &chunk_id))
                .await
                .ok()
                .flatten();
        if let Some(data) = read {
            let mut r = Response::new(service_kit::http_util::full(data));
            set_header(r.headers_mut(), "content-type", "application/octet-stream");
            return r;
        }
    }
    match reg.store.chunk(chunk).await {
        Ok(data) => {
            let mut r = Response::new(service_kit::http_util::full(data));
            set_header(r.headers_mut(), "content-type", "application/octet-stream");
            r
        }
        Err(e) => fault(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn download(
    reg: &Registry,
    who: &Identity,
    id: &str,
    req: &Request<RequestBody>,
) -> Response<Body> {
    let img = match load(reg, who, id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match img.status {
        Status::Active => {}
        Status::Deactivated if !who.admin => {
            return fault(
                StatusCode::FORBIDDEN,
                "The requested image has been deactivated. Image data download is forbidden.",
            )
        }
        // Glance: no data yet is 204.
        _ => return no_content(),
    }
    let range = header_str(req.headers(), "range");
    // The cached copy, opened before anything can prune it; an image the
    // cache cannot keep (larger than it, or pruned at once by others) is
    // streamed from the store instead.
    for _ in 0..2 {
        let path = match reg
            .cache
            .get_or_fetch(id, |temp| fetch(reg, &img, temp))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                return fault(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Could not read the image data: {e}"),
                )
            }
        };
        if let Ok(file) = tokio::fs::File::open(&path).await {
            return serve_file(file, range.as_deref(), img.checksum.as_deref()).await;
        }
    }
    let loc = img.location.clone().unwrap_or_else(|| img.id.clone());
    match reg.store.get_range(&loc, range.as_deref()).await {
        Ok(mut r) => {
            let keep: Vec<_> = ["content-length", "content-range"]
                .into_iter()
                .filter_map(|n| r.headers().get(n).map(|v| (n, v.clone())))
                .collect();
            r.headers_mut().clear();
            for (n, v) in keep {
                r.headers_mut().insert(n, v);
            }
            set_header(r.headers_mut(), "content-type", "application/octet-stream");
            r
        }
        Err(crate::store::StoreError::Status(StatusCode::RANGE_NOT_SATISFIABLE, range)) => {
            let mut r = fault(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Requested range not satisfiable.",
            );
            set_header(r.headers_mut(), "content-range", &range);
            r
        }
        Err(e) => fault(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Could not read the image data: {e}"),
        ),
    }
}

/// A cached file as the response body, whole or one byte range.
async fn serve_file(
    mut file: tokio::fs::File,
    range: Option<&str>,
    md5: Option<&str>,
) -> Response<Body> {
    use service_kit::range::{resolve, Ranges};
    use tokio::io::AsyncSeekExt;
    let size = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return internal(e),
    };
    let (status, first, len) = match resolve(range, size) {
        Ranges::Whole => (StatusCode::OK, 0, size),
        Ranges::Parts(p) if p.len() == 1 => {
            (StatusCode::PARTIAL_CONTENT, p[0].0, p[0].1 - p[0].0 + 1)
        }
        Ranges::Parts(_) => {
            return fault(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Only one byte range is supported.",
            )
        }
        Ranges::Unsatisfiable => {
            let mut r = fault(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Requested range not satisfiable.",
            );
            set_header(r.headers_mut(), "content-range", &format!("bytes */{size}"));
            return r;
        }
    };
    if first > 0 {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(first)).await {
            return internal(e);
        }
    }
    let mut r = Response::new(file_body(file, len));
    *r.status_mut() = status;
    let h = r.headers_mut();
    set_header(h, "content-type", "application/octet-stream");
    set_header(h, "content-length", &len.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        set_header(
            h,
            "content-range",
            &format!("bytes {first}-{}/{size}", first + len - 1),
        );
    } else if let Some(m) = md5 {
        set_header(h, "content-md5", m);
    }
    r
}

fn cache_list(reg: &Registry) -> Response<Body> {
    let cached: Vec<Value> = reg
        .cache
        .entries()
        .into_iter()
        .map(|e| json!({"image_id": e.id, "size": e.size, "last_accessed": e.last_accessed, "last_modified": e.last_accessed, "hits": Value::Null}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"cached_images": cached, "queued_images": []}),
    )
}

/// Queues an image for caching: fetched in the background.
fn prefetch(reg: &Arc<Registry>, id: &str) -> Response<Body> {
    let img = match reg.db.get(id) {
        Ok(Some(i)) if i.status == Status::Active => i,
        Ok(_) => return not_found(id),
        Err(e) => return internal(e),
    };
    let reg = reg.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        if let Err(e) = reg
            .cache
            .get_or_fetch(&id, |temp| fetch(&reg, &img, temp))
            .await
        {
            tracing::warn!(image = %id, error = %e, "prefetch failed");
        }
    });
    let mut r = no_content();
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn metrics(reg: &Registry) -> Response<Body> {
    let c = &reg.cache;
    let mut out = String::new();
    let counters = [
        (
            "nubo_registry_cache_hits_total",
            "Image reads served from the cache.",
            c.hits.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_cache_misses_total",
            "Image reads that fetched from the object store.",
            c.misses.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_cache_bytes_fetched_total",
            "Bytes fetched into the cache.",
            c.bytes_fetched.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_cache_pruned_total",
            "Cached images removed by the pruner.",
            c.pruned.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_uploads_total",
            "Uploads that made an image active.",
            reg.uploads_ok.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_uploads_refused_total",
            "Uploads refused or failed (image killed).",
            reg.uploads_failed.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_chunk_bytes_new_total",
            "Bytes of image chunks the store did not have, stored.",
            reg.store.bytes_new.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_chunk_bytes_deduplicated_total",
            "Bytes of image data whose chunks the store already had.",
            reg.store.bytes_deduplicated.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_chunks_collected_total",
            "Chunks no image held any more, deleted.",
            reg.store.chunks_collected.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_cache_chunk_bytes_local_total",
            "Bytes the cache filled from chunks of other cached images.",
            reg.cache_chunk_bytes_local.load(Ordering::Relaxed),
        ),
        (
            "nubo_registry_verify_microseconds_total",
            "Time spent verifying images (inspector and qemu-img).",
            reg.verify_micros.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP nubo_registry_cache_bytes Bytes of complete images in the cache.\n# TYPE nubo_registry_cache_bytes gauge\nnubo_registry_cache_bytes {}\n",
        c.used_bytes()
    ));
    service_kit::http_util::text(StatusCode::OK, out)
}
