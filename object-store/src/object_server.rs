//! Object verbs on a storage node: small bodies inline with their records
//! in RocksDB, larger ones to files, listing updates owed to container
//! servers queued in the same batch as the record; reads through
//! [`crate::object_body`], which checks every byte before it is sent.

use crate::body_hashes::BodyHasher;
use crate::device_db::{DbError, DbResult, LinkWrite, MetaChange, SyncTicket};
use crate::object_body::{StoredBody, Unreadable};
use crate::records::{
    LinkOutcome, ObjectKind, ObjectRecord, ObjectRow, PendingUpdate, Target as UpdateTarget,
    Update, VersionLink, FOLLOWED_ETAG_HEADER, FOLLOWED_VERSION_HEADER, FOLLOW_VERSION_HEADER,
    INLINE_MAX, LINK_HEADER, LINK_ROW_HEADER, STORED_AT_HEADER,
};
use crate::storage_node::{Device, Target};
use crate::version_names;
use crate::write_locks;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use ring_tools::{NameHash, Ring};
use service_kit::http_util::{empty, header_str, set_header, status, text, Body};
use service_kit::range::Ranges;
use service_kit::server::RequestBody;
use service_kit::timestamp::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Headers stored with an object and returned on GET/HEAD.
pub fn stored_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    const KEPT: [&str; 7] = [
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
        "x-object-manifest",
        "x-static-large-object",
    ];
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n.starts_with("x-object-meta-")
                || n.starts_with("x-object-sysmeta-")
                || KEPT.contains(&n)
        })
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

pub fn request_timestamp(headers: &HeaderMap) -> Result<Timestamp, Response<Body>> {
    header_str(headers, "x-timestamp")
        .ok_or_else(|| text(StatusCode::BAD_REQUEST, "missing X-Timestamp"))?
        .parse()
        .map_err(|e: service_kit::timestamp::BadTimestamp| {
            text(StatusCode::BAD_REQUEST, e.to_string())
        })
}

pub fn now_secs() -> u64 {
    Timestamp::now().secs()
}

pub async fn handle(t: Target<'_>, req: Request<RequestBody>) -> Response<Body> {
    let hash = t
        .state
        .ring()
        .hasher()
        .object(&t.names[0], &t.names[1], &t.names[2]);
    match *req.method() {
        Method::PUT => put(t, hash, req).await,
        Method::GET | Method::HEAD => get(t, hash, req).await,
        Method::DELETE => delete(t, hash, req).await,
        Method::POST => post(t, hash, req).await,
        ref m if *m == write_locks::lock_method() || *m == write_locks::unlock_method() => {
            write_locks::handle(&t.state.write_locks, &t.names.join("/"), &req)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

fn db_error(e: DbError) -> Response<Body> {
    match e {
        DbError::Conflict(ts) => {
            let mut r = status(StatusCode::CONFLICT);
            set_header(r.headers_mut(), "x-backend-timestamp", &ts.to_string());
            r
        }
        DbError::NotFound => status(StatusCode::NOT_FOUND),
        DbError::NotEmpty => status(StatusCode::CONFLICT),
        other => {
            tracing::error!(error = %other, "metadata database error");
            text(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
        }
    }
}

fn io_error(e: std::io::Error) -> Response<Body> {
    if e.raw_os_error() == Some(28) {
        // ENOSPC: the proxy writes to a handoff instead.
        return text(StatusCode::INSUFFICIENT_STORAGE, "device is full");
    }
    tracing::error!(error = %e, "object file error");
    text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The listing row a write owes (the same for every target), as the
/// node's answer carries it (`x-nubo-listing-row`) so that the proxy can
/// make it visible on every container replica before it acknowledges the
/// write; the updater delivers it durably.
fn listing_row(owed: &[PendingUpdate]) -> Option<String> {
    match &owed.first()?.update {
        Update::ObjectRow { row, .. } => serde_json::to_string(row).ok(),
        Update::ContainerRow { .. } => None,
    }
}

/// Sets the listing row on a write's answer.
fn with_row(mut r: Response<Body>, row: Option<String>) -> Response<Body> {
    if let Some(row) = row {
        set_header(r.headers_mut(), "x-nubo-listing-row", &row);
    }
    r
}

/// The container servers this write owes a listing row (chosen by the proxy).
fn owed_updates(
    headers: &HeaderMap,
    t: &Target<'_>,
    row: ObjectRow,
) -> Result<Vec<PendingUpdate>, Response<Body>> {
    let Some(raw) = header_str(headers, "x-nubo-container-update") else {
        return Ok(Vec::new());
    };
    let targets: Vec<UpdateTarget> = serde_json::from_str(&raw).map_err(|e| {
        text(
            StatusCode::BAD_REQUEST,
            format!("bad x-nubo-container-update: {e}"),
        )
    })?;
    Ok(targets
        .into_iter()
        .map(|target| PendingUpdate {
            target,
            update: Update::ObjectRow {
                account: t.names[0].clone(),
                container: t.names[1].clone(),
                object: t.names[2].clone(),
                row: row.clone(),
                link: None,
            },
            immediate: true,
        })
        .collect())
}

/// A link to write with the version a PUT stores.
struct RequestedLink {
    hash: NameHash,
    record: ObjectRecord,
    owed: Vec<PendingUpdate>,
    row: ObjectRow,
}

/// The link a versioned PUT asks for, checked to be of the version's own
/// object (placed with it, so on this partition): the object's current
/// record, an empty link with the version's timestamp.
fn requested_link(
    headers: &HeaderMap,
    t: &Target<'_>,
    ts: Timestamp,
) -> Result<Option<RequestedLink>, Response<Body>> {
    let Some(raw) = header_str(headers, LINK_HEADER) else {
        return Ok(None);
    };
    let link: VersionLink = serde_json::from_str(&raw)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("bad {LINK_HEADER}: {e}")))?;
    let (account, container, object) = (&t.names[0], &t.names[1], &t.names[2]);
    if *container == link.container
        || version_names::placement(container, object) != (&link.container, &link.object)
    {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "a version link must be of the version's own object",
        ));
    }
    let hash = t
        .state
        .ring()
        .hasher()
        .object(account, &link.container, &link.object);
    let mut stored = link.headers;
    stored.insert(version_names::LINK_MARK.into(), "1".into());
    // Listed as the version it stands for.
    let listed = |name: &str| {
        stored.get(&format!(
            "x-object-sysmeta-container-update-override-{name}"
        ))
    };
    let (blake3, chunk_hashes) = BodyHasher::default().finish();
    let empty_md5 = hex::encode(Md5::digest(b""));
    let row = ObjectRow {
        timestamp: ts,
        deleted: false,
        size: listed("size").and_then(|v| v.parse().ok()).unwrap_or(0),
        etag: listed("etag").cloned().unwrap_or_else(|| empty_md5.clone()),
        content_type: link.content_type.clone(),
    };
    let owed = link
        .targets
        .into_iter()
        .map(|target| PendingUpdate {
            target,
            update: Update::ObjectRow {
                account: account.clone(),
                container: link.container.clone(),
                object: link.object.clone(),
                row: row.clone(),
                link: None,
            },
            immediate: true,
        })
        .collect();
    let record = ObjectRecord {
        account: account.clone(),
        container: link.container,
        object: link.object,
        timestamp: ts,
        kind: ObjectKind::Data,
        size: 0,
        etag: empty_md5,
        blake3: blake3.to_hex().to_string(),
        chunk_hashes,
        inline: true,
        content_type: link.content_type,
        headers: stored,
        meta_timestamp: ts,
        delete_at: None,
    };
    Ok(Some(RequestedLink {
        hash,
        record,
        owed,
        row,
    }))
}

async fn put(t: Target<'_>, hash: NameHash, req: Request<RequestBody>) -> Response<Body> {
    let ts = match request_timestamp(req.headers()) {
        Ok(ts) => ts,
        Err(r) => return r,
    };
    let headers = req.headers().clone();
    // The proxy streams bodies chunked, their length in its own header.
    let expected_len: Option<u64> = header_str(&headers, "content-length")
        .or_else(|| header_str(&headers, "x-nubo-content-length"))
        .and_then(|v| v.parse().ok());
    // The ETag comes from the sender when it says so (the proxy's trailer,
    // the replicator's header): MD5 is then computed once per object, by
    // the proxy, not once per replica.
    let etag_sent = headers.contains_key("x-nubo-etag")
        || header_str(&headers, "trailer")
            .is_some_and(|t| t.to_ascii_lowercase().contains("x-nubo-etag"));
    let delete_at: Option<u64> = header_str(&headers, "x-delete-at").and_then(|v| v.parse().ok());
    let content_type = header_str(&headers, "content-type")
        .map(|v| v.into_owned())
        .unwrap_or_else(|| "application/octet-stream".into());

    // Checked before the body is read, so that a proxy asking
    // `Expect: 100-continue` hears 507 at once and turns to a handoff.
    if !t.device.files.has_room(
        expected_len.unwrap_or(0),
        t.state.config.fallocate_reserve_bytes,
    ) {
        return text(StatusCode::INSUFFICIENT_STORAGE, "device is full");
    }
    let small = expected_len.is_some_and(|n| n <= SMALL_OBJECT);
    if !small {
        // Refuse early what is already known to be older, before streaming.
        let dev = t.device.clone();
        match tokio::task::spawn_blocking(move || dev.db.object(t.partition, &hash)).await {
            Ok(Ok(Some(old))) if old.timestamp >= ts => {
                return db_error(DbError::Conflict(old.timestamp))
            }
            Ok(Err(e)) => return db_error(e),
            _ => {}
        }
    }
    let mut md5 = (!etag_sent).then(Md5::new);
    let mut b3 = BodyHasher::default();
    let mut trailers = HeaderMap::new();
    let mut size = 0u64;
    let mut in_memory = Vec::new();
    let mut temp = None;
    if !small {
        temp = match t.device.files.create_temp().await {
            Ok(f) => Some(f),
            Err(e) => return io_error(e),
        };
    }
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            // The sender went away mid-body: nothing is stored.
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("body aborted: {e}")),
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
                continue;
            }
        };
        {
            if let Some(m) = md5.as_mut() {
                m.update(&data);
            }
            b3.update(&data);
            size += data.len() as u64;
            match temp.as_mut() {
                Some(f) => {
                    if let Err(e) = f.write(&data).await {
                        return io_error(e);
                    }
                }
                None if size <= SMALL_OBJECT => in_memory.extend_from_slice(&data),
                None => return text(StatusCode::BAD_REQUEST, "body longer than Content-Length"),
            }
        }
    }
    if expected_len.is_some_and(|n| n != size) {
        return text(StatusCode::BAD_REQUEST, "body shorter than Content-Length");
    }
    let sent = |name: &str| {
        header_str(&trailers, name)
            .or_else(|| header_str(&headers, name))
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let etag = match md5 {
        Some(m) => hex::encode(m.finalize()),
        None => match sent("x-nubo-etag") {
            Some(e)
                if !e.is_empty()
                    && e.len() <= 64
                    && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                e
            }
            _ => return text(StatusCode::BAD_REQUEST, "the body's x-nubo-etag is missing"),
        },
    };
    let (blake3, chunk_hashes) = b3.finish();
    // What the sender hashed is what arrived here.
    if sent("x-nubo-blake3").is_some_and(|b| b != blake3.to_hex().as_str()) {
        return text(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body does not match the sender's blake3",
        );
    }
    let inline = small && size <= INLINE_MAX;
    if let Some(client_etag) = header_str(&headers, "etag") {
        if client_etag.trim_matches('"').to_ascii_lowercase() != etag {
            return text(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ETag does not match the body",
            );
        }
    }
    let record = ObjectRecord {
        account: t.names[0].clone(),
        container: t.names[1].clone(),
        object: t.names[2].clone(),
        timestamp: ts,
        kind: ObjectKind::Data,
        size,
        etag: etag.clone(),
        blake3: blake3.to_hex().to_string(),
        chunk_hashes,
        inline,
        content_type: content_type.clone(),
        headers: {
            // System metadata known only once the body has passed (the
            // S3 checksum the proxy checked) comes as trailers.
            let mut kept = stored_headers(&headers);
            kept.extend(
                stored_headers(&trailers)
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("x-object-sysmeta-")),
            );
            kept
        },
        meta_timestamp: ts,
        delete_at,
    };
    // A large object's manifest is listed as the whole object.
    let listed_size = header_str(&headers, "x-object-sysmeta-container-update-override-size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(size);
    // An override known only once the body has passed (a sealed body's
    // plaintext MD5) comes as a trailer.
    let override_etag = "x-object-sysmeta-container-update-override-etag";
    let listed_etag = header_str(&trailers, override_etag)
        .or_else(|| header_str(&headers, override_etag))
        .map_or_else(|| etag.clone(), |v| v.into_owned());
    let owed = match owed_updates(
        &headers,
        &t,
        ObjectRow {
            timestamp: ts,
            deleted: false,
            size: listed_size,
            etag: listed_etag,
            content_type,
        },
    ) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let link = match requested_link(&headers, &t, ts) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let dest = t.device.files.data_path(t.partition, &hash, ts);
    if let Some(temp) = temp {
        if let Err(e) = temp.commit(dest.clone()).await {
            return io_error(e);
        }
    }
    let part = t.partition;
    let row = listing_row(&owed);
    let dev = t.device.clone();
    let mut body = None;
    if inline {
        // Body and record in one batch.
        body = Some(in_memory);
    } else if small {
        // The file first, unless a newer version is already here.
        let (d, file) = (dev.clone(), dest.clone());
        let written = tokio::task::spawn_blocking(move || {
            if let Some(old) = d.db.object(part, &hash).map_err(PutError::Db)? {
                if old.timestamp >= ts {
                    return Err(PutError::Db(DbError::Conflict(old.timestamp)));
                }
            }
            d.files.write_whole(&file, &in_memory).map_err(PutError::Io)
        })
        .await
        .expect("object write panicked");
        match written {
            Ok(()) => {}
            Err(PutError::Db(e @ DbError::Conflict(_))) => {
                // The newer version may still wait for its sync.
                let synced = dev.db.durable(dev.db.sync_point()).await;
                return db_error(synced.err().unwrap_or(e));
            }
            Err(PutError::Db(e)) => return db_error(e),
            Err(PutError::Io(e)) => {
                let _ = tokio::fs::remove_file(&dest).await;
                return io_error(e);
            }
        }
    }
    let result = commit(&dev, move |d| {
        let written = match &link {
            None => {
                d.db.write_object(part, &hash, &record, body.as_deref(), &owed)
            }
            Some(l) => {
                let write = LinkWrite {
                    hash: l.hash,
                    record: &l.record,
                    owed: &l.owed,
                };
                let (old, outcome, ticket) =
                    d.db.write_version(part, &hash, &record, body.as_deref(), &owed, Some(&write))?;
                let row = (outcome == Some(LinkOutcome::Linked))
                    .then(|| serde_json::to_string(&l.row).ok())
                    .flatten();
                return Ok(((old, outcome, row), ticket));
            }
        };
        written.map(|(old, ticket)| ((old, None, None), ticket))
    })
    .await;
    match result {
        Ok((old, link_outcome, link_row)) => {
            t.state.updates_queued.notify_one();
            if let Some(old) = old.filter(|o| o.kind == ObjectKind::Data && !o.inline) {
                t.device.files.remove(part, &hash, old.timestamp).await;
            }
            let mut r = status(StatusCode::CREATED);
            set_header(r.headers_mut(), "etag", &etag);
            if let Some(o) = link_outcome {
                set_header(r.headers_mut(), LINK_HEADER, o.as_str());
            }
            if let Some(row) = link_row {
                set_header(r.headers_mut(), LINK_ROW_HEADER, &row);
            }
            with_row(r, row)
        }
        Err(e) => {
            // The file this write installed goes; after a conflict with a
            // version of the same timestamp, a small file's path may be
            // that version's, so it stays (as when found before writing).
            if !inline && (!small || !matches!(e, DbError::Conflict(_))) {
                let _ = tokio::fs::remove_file(&dest).await;
            }
            db_error(e)
        }
    }
}

/// Runs an object write on the blocking pool, then waits for its WAL sync
/// (shared with concurrent writers) without holding a thread. Returns the
/// commit's result (with the version replaced, whose file may go now). A
/// conflict is answered only
/// once the newer version it lost to is durable too.
async fn commit<T: Send + 'static>(
    dev: &Arc<Device>,
    write: impl FnOnce(&Device) -> DbResult<(T, SyncTicket)> + Send + 'static,
) -> DbResult<T> {
    let d = dev.clone();
    let written = tokio::task::spawn_blocking(move || write(&d))
        .await
        .expect("object write panicked");
    let (out, ticket) = match written {
        Ok(w) => w,
        Err(DbError::Conflict(ts)) => {
            dev.db.durable(dev.db.sync_point()).await?;
            return Err(DbError::Conflict(ts));
        }
        Err(e) => return Err(e),
    };
    dev.db.durable(ticket).await?;
    Ok(out)
}

/// Bodies up to this size are received in memory and written in one go.
const SMALL_OBJECT: u64 = 1 << 20;

enum PutError {
    Db(DbError),
    Io(std::io::Error),
}

fn not_found_at(ts: Timestamp) -> Response<Body> {
    let mut r = status(StatusCode::NOT_FOUND);
    set_header(r.headers_mut(), "x-backend-timestamp", &ts.to_string());
    r
}

/// Response headers describing a stored object.
pub fn describe(rec: &ObjectRecord, headers: &mut HeaderMap) {
    set_header(headers, "etag", &rec.etag);
    set_header(headers, "content-type", &rec.content_type);
    set_header(headers, "x-timestamp", &rec.timestamp.to_string());
    set_header(headers, "x-backend-timestamp", &rec.timestamp.to_string());
    set_header(
        headers,
        "last-modified",
        &rec.meta_timestamp.max(rec.timestamp).http_date(),
    );
    set_header(headers, "x-nubo-size", &rec.size.to_string());
    if let Some(at) = rec.delete_at {
        set_header(headers, "x-delete-at", &at.to_string());
    }
    for (k, v) in &rec.headers {
        set_header(headers, k, v);
    }
}

async fn get(t: Target<'_>, hash: NameHash, req: Request<RequestBody>) -> Response<Body> {
    let wanted = header_str(req.headers(), STORED_AT_HEADER).and_then(|t| t.parse().ok());
    // Asked to, a link to a version is followed here, to the version
    // stored beside it: one read rather than two, in one blocking call.
    let follow = wanted.is_none() && req.headers().contains_key(FOLLOW_VERSION_HEADER);
    let ring = follow.then(|| t.state.ring());
    let (dev, part) = (t.device.clone(), t.partition);
    let found = tokio::task::spawn_blocking(move || {
        let Some(rec) = dev.db.object(part, &hash)? else {
            return Ok(None);
        };
        let linked = ring
            .filter(|_| version_names::is_version_link(&rec))
            .and_then(|ring| linked_version(&dev, part, &ring, &rec));
        Ok(Some((rec, linked)))
    })
    .await;
    let (rec, linked) = match found {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return status(StatusCode::NOT_FOUND),
        Ok(Err(e)) => return db_error(e),
        Err(_) => return status(StatusCode::INTERNAL_SERVER_ERROR),
    };
    if wanted.is_some_and(|at: Timestamp| at != rec.timestamp) {
        // Another record than the one asked for: no timestamp, so that
        // the proxy neither takes it for a deletion nor stops here.
        return status(StatusCode::NOT_FOUND);
    }
    if rec.kind == ObjectKind::Tombstone || rec.is_expired(now_secs()) {
        return not_found_at(rec.timestamp.max(rec.meta_timestamp));
    }
    // The answer is dated as the link (`x-backend-timestamp`), which is
    // what a replica's tombstone or another's link is compared with.
    let link_at = rec.timestamp;
    let (hash, rec, followed) = match linked {
        Some(v) => (v.hash, v.record, Some((v.target, v.etag))),
        None => (hash, rec, None),
    };
    // One range is served here; the proxy splits multi-range requests.
    // A large-object manifest is assembled by the proxy, which applies the
    // client's range to the whole; the manifest itself is always sent whole.
    // So is a symlink, whose range applies to its target.
    let manifest = rec.headers.contains_key("x-static-large-object")
        || rec.headers.contains_key("x-object-manifest")
        || rec
            .headers
            .contains_key(crate::symlink_format::TARGET_HEADER);
    let range_header = header_str(req.headers(), "range").filter(|_| !manifest);
    let range = service_kit::range::resolve(range_header.as_deref(), rec.size);
    let (first, last, partial) = match range {
        Ranges::Parts(p) if p.len() == 1 => (p[0].0, p[0].1, true),
        Ranges::Parts(_) | Ranges::Whole => (0, rec.size.saturating_sub(1), false),
        Ranges::Unsatisfiable => {
            let mut r = status(StatusCode::RANGE_NOT_SATISFIABLE);
            set_header(
                r.headers_mut(),
                "content-range",
                &format!("bytes */{}", rec.size),
            );
            return r;
        }
    };
    let len = if rec.size == 0 { 0 } else { last - first + 1 };
    let mut resp = if req.method() == Method::HEAD || len == 0 {
        Response::new(empty())
    } else {
        let body = StoredBody {
            state: t.state.clone(),
            device: t.device.clone(),
            part,
            hash,
            record: rec.clone(),
        };
        match body.read(first, last).await {
            Ok(b) => Response::new(b),
            // Lost or bad here (and now quarantined): the proxy asks
            // another replica.
            Err(Unreadable::Missing | Unreadable::Corrupt) => return status(StatusCode::NOT_FOUND),
            Err(Unreadable::Io(e)) => return io_error(e),
        }
    };
    *resp.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    describe(&rec, resp.headers_mut());
    set_header(resp.headers_mut(), "content-length", &len.to_string());
    if partial {
        set_header(
            resp.headers_mut(),
            "content-range",
            &format!("bytes {first}-{last}/{}", rec.size),
        );
    }
    if let Some((target, etag)) = followed {
        crate::metrics::NodeMetrics::add(&t.state.metrics.version_links_followed, 1);
        set_header(
            resp.headers_mut(),
            "x-backend-timestamp",
            &link_at.to_string(),
        );
        set_header(resp.headers_mut(), FOLLOWED_VERSION_HEADER, &target);
        if let Some(etag) = etag {
            set_header(resp.headers_mut(), FOLLOWED_ETAG_HEADER, &etag);
        }
    }
    resp
}

/// A version found where its link is ([`linked_version`]).
struct LinkedVersion {
    hash: NameHash,
    record: ObjectRecord,
    /// The link's target, percent-encoded as stored.
    target: String,
    /// The ETag the link says the version has.
    etag: Option<String>,
}

/// The version a version link names, where it is stored here (placed with
/// its object, so on this partition) and holds data. `None` (a read error
/// too) leaves the link to the proxy, which follows it as any link.
fn linked_version(
    dev: &Device,
    part: u32,
    ring: &Ring,
    link: &ObjectRecord,
) -> Option<LinkedVersion> {
    let named = crate::symlink_format::Link::of_stored(&link.headers)?;
    if named.account.is_some()
        || named.container == link.container
        || version_names::placement(&named.container, &named.object)
            != (link.container.as_str(), link.object.as_str())
    {
        return None;
    }
    let hash = ring
        .hasher()
        .object(&link.account, &named.container, &named.object);
    let record = dev.db.object(part, &hash).ok()??;
    let live = record.kind == ObjectKind::Data && !record.is_expired(now_secs());
    live.then(|| LinkedVersion {
        hash,
        record,
        target: named.target(),
        etag: named.etag,
    })
}

async fn delete(t: Target<'_>, hash: NameHash, req: Request<RequestBody>) -> Response<Body> {
    let ts = match request_timestamp(req.headers()) {
        Ok(ts) => ts,
        Err(r) => return r,
    };
    let record = ObjectRecord::tombstone(&t.names[0], &t.names[1], &t.names[2], ts);
    let row = ObjectRow {
        timestamp: ts,
        deleted: true,
        size: 0,
        etag: String::new(),
        content_type: String::new(),
    };
    let owed = match owed_updates(req.headers(), &t, row) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let dev = t.device.clone();
    let part = t.partition;
    let row = listing_row(&owed);
    let result = commit(&dev, move |d| {
        d.db.write_object(part, &hash, &record, None, &owed)
    })
    .await;
    match result {
        Ok(old) => {
            t.state.updates_queued.notify_one();
            let existed = match old {
                Some(o) if o.kind == ObjectKind::Data => {
                    if !o.inline {
                        t.device.files.remove(part, &hash, o.timestamp).await;
                    }
                    !o.is_expired(now_secs())
                }
                _ => false,
            };
            with_row(
                status(if existed {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::NOT_FOUND
                }),
                row,
            )
        }
        Err(e) => db_error(e),
    }
}

async fn post(t: Target<'_>, hash: NameHash, req: Request<RequestBody>) -> Response<Body> {
    let ts = match request_timestamp(req.headers()) {
        Ok(ts) => ts,
        Err(r) => return r,
    };
    // `x-nubo-post: system`: the proxy sets system metadata items only.
    let change = if header_str(req.headers(), "x-nubo-post").as_deref() == Some("system") {
        MetaChange::System(stored_headers(req.headers()))
    } else {
        MetaChange::Replace {
            headers: stored_headers(req.headers()),
            delete_at: header_str(req.headers(), "x-delete-at").and_then(|v| v.parse().ok()),
            content_type: header_str(req.headers(), "content-type").map(|t| t.into_owned()),
        }
    };
    let dev = t.device.clone();
    let part = t.partition;
    let now = now_secs();
    let result =
        tokio::task::spawn_blocking(move || dev.db.post_object(part, &hash, ts, change, now))
            .await
            .expect("metadata write panicked");
    match result {
        Ok(rec) if rec.is_expired(now_secs()) => not_found_at(rec.timestamp),
        Ok(_) => status(StatusCode::ACCEPTED),
        Err(e) => db_error(e),
    }
}
