//! The object layer: typed operations on accounts, containers and objects
//! that both front ends call (Swift in `swift/`, S3 in `s3/`).
//!
//! It owns what the store means whatever the protocol: metadata limits,
//! expiry, preconditions, ranges, copies (large objects read whole); with
//! containers, accounts and listings in [`super::containers`] and large
//! objects in [`super::segments`].
//! It reaches the storage nodes only through [`Backend`]. A front end
//! parses its protocol into these requests, and maps [`ObjectError`] to its
//! own errors in one place (`swift/error.rs`, `s3/error.rs`).

use super::backend::{owe_rows, Backend, BodyDigests, Lease, Path, WriteOutcome};
use super::checksums::{Algorithm, ChecksumCheck, Expected};
use super::conditions::{Conditions, Failed};
use super::containers::Recent;
use super::encryption::{
    container_default, open_body, sealed_len, CustomerKey, Key, Keys, OpenError, Sealed, Sealing,
    Window, ETAG_HEADER,
};
use super::limits::{check_metadata, MAX_MANIFEST_BYTES, MAX_OBJECT_SIZE};
use super::manifest::StoredSegment;
use super::object_versions::{is_hidden, Deleted, LinkPlan, Prepared, State};
use super::retention::LockConfig;
use super::segments;
use crate::container_server::BatchedRow;
use crate::listing_rows::RowBatches;
use crate::records::{
    LinkOutcome, ObjectRow, Target as UpdateTarget, FOLLOWED_VERSION_HEADER, FOLLOW_VERSION_HEADER,
    INLINE_MAX, LINK_HEADER, STORED_AT_HEADER,
};
use crate::symlink_format::Link;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use service_kit::http_util::{channel_body, collect_limited, empty, header_str, set_header, Body};
use service_kit::range::{self, Ranges};
use service_kit::timestamp::Timestamp;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Why an operation failed, whatever the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no such container")]
    NoSuchContainer,
    #[error("no such object")]
    NoSuchObject,
    #[error("Your request is too large.")]
    TooLarge,
    #[error("the body does not match its ETag or Content-MD5")]
    BadDigest,
    #[error("a precondition failed")]
    PreconditionFailed { etag: Option<String> },
    #[error("not modified")]
    NotModified { etag: String },
    #[error("the range is not satisfiable")]
    RangeNotSatisfiable { size: Option<u64> },
    /// A part number past the object's parts.
    #[error("The requested partnumber is not satisfiable")]
    NoSuchPart { parts: u32 },
    #[error("{0}")]
    MetadataInvalid(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A large object's manifest names segments that are missing or differ.
    #[error("{0}")]
    ManifestInvalid(String),
    /// No version with that id.
    #[error("The specified version does not exist.")]
    NoSuchVersion,
    /// The version asked for is a delete marker.
    #[error("The specified method is not allowed against this resource.")]
    DeleteMarker { version_id: String },
    /// A retained or held version (S3 Object Lock), or a change that
    /// retention forbids.
    #[error("Access Denied: {0}")]
    Retained(&'static str),
    /// The container's state forbids the change (suspending versioning
    /// where Object Lock is on).
    #[error("{0}")]
    InvalidState(String),
    /// The write would pass the container's quota.
    #[error("Upload exceeds quota.")]
    QuotaExceeded,
    /// A stored large object or symlink cannot be followed (a nested
    /// manifest is gone, links or manifests nest too deep, a static link's
    /// target changed): Swift answers 409.
    #[error("{0}")]
    Broken(String),
    /// A large object's segments lie outside what the request may reach
    /// (a temporary URL's container).
    #[error("{0}")]
    OutOfScope(String),
    #[error("There was a conflict when trying to complete your request.")]
    ContainerNotEmpty,
    /// Another conditional write of the name is in progress.
    #[error("A conflicting conditional operation is currently in progress against this resource. Please try again.")]
    ConditionalConflict,
    /// A write with a newer timestamp is already stored (Swift answers
    /// 202; S3 answers 200, as for the last writer): the superseded body's
    /// ETag, when it was read to its end.
    #[error("a newer write exists")]
    Superseded { etag: Option<String> },
    /// The storage nodes could not answer (no quorum, timeouts, full disks).
    #[error("the storage nodes answered {0}")]
    Unavailable(StatusCode),
    /// A sealed body cannot be opened with the keys given
    /// ([`super::encryption`]).
    #[error("{0}")]
    Sealed(#[from] OpenError),
    /// A body to be sealed must say its length first.
    #[error("You must provide the Content-Length HTTP header.")]
    LengthRequired,
}

pub type ObjectResult<T> = Result<T, ObjectError>;

/// An object's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectPath {
    pub account: String,
    pub container: String,
    pub object: String,
}

impl ObjectPath {
    pub fn new(
        account: impl Into<String>,
        container: impl Into<String>,
        object: impl Into<String>,
    ) -> ObjectPath {
        ObjectPath {
            account: account.into(),
            container: container.into(),
            object: object.into(),
        }
    }

    pub(crate) fn node(&self) -> Path {
        Path::Object(
            self.account.clone(),
            self.container.clone(),
            self.object.clone(),
        )
    }
}

/// HTTP headers stored with an object and returned as they were given.
pub const STORED_HEADERS: [&str; 5] = [
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
];

/// What is stored with an object besides its bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectMeta {
    /// `None`: guessed from the name's extension (as Swift does).
    pub content_type: Option<String>,
    /// User metadata (`X-Object-Meta-*`, `x-amz-meta-*`), names in lower
    /// case without the prefix. An empty value removes the item on a POST.
    pub user: Vec<(String, String)>,
    /// System metadata only the proxy's front ends write (multipart ETags,
    /// S3 checksums), names without `x-object-sysmeta-`.
    pub system: Vec<(String, String)>,
    /// [`STORED_HEADERS`] the client set.
    pub headers: Vec<(String, String)>,
    /// Unix seconds after which the object is gone.
    pub delete_at: Option<u64>,
    /// A dynamic large object: `<container>/<prefix>` of its segments.
    pub dlo_manifest: Option<String>,
}

impl ObjectMeta {
    /// The metadata of a stored object, from its node headers.
    pub fn from_stored(h: &HeaderMap) -> ObjectMeta {
        let mut meta = ObjectMeta {
            content_type: header_str(h, "content-type").map(|c| c.into_owned()),
            delete_at: header_str(h, "x-delete-at").and_then(|v| v.parse().ok()),
            dlo_manifest: header_str(h, "x-object-manifest").map(|c| c.into_owned()),
            ..Default::default()
        };
        for (k, v) in h {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let n = k.as_str();
            if let Some(m) = n.strip_prefix("x-object-meta-") {
                meta.user.push((m.to_string(), value));
            } else if let Some(m) = n.strip_prefix("x-object-sysmeta-") {
                meta.system.push((m.to_string(), value));
            } else if STORED_HEADERS.contains(&n) {
                meta.headers.push((n.to_string(), value));
            }
        }
        meta
    }

    /// Adds system metadata items this metadata does not have yet.
    pub fn add_missing_system(&mut self, items: Vec<(String, String)>) {
        for (k, v) in items {
            if self.system(&k).is_none() {
                self.system.push((k, v));
            }
        }
    }

    /// A system metadata value.
    pub fn system(&self, name: &str) -> Option<&str> {
        self.system
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A stored header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn check(&self) -> ObjectResult<()> {
        check_metadata(
            "object",
            self.user.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        )
        .map_err(ObjectError::MetadataInvalid)?;
        if self.delete_at.is_some_and(|at| at <= unix_now()) {
            return Err(ObjectError::InvalidArgument("X-Delete-At in past".into()));
        }
        Ok(())
    }

    /// The headers the storage nodes store.
    pub(super) fn node_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = &self.content_type {
            set_header(&mut h, "content-type", t);
        }
        for (k, v) in &self.user {
            set_header(&mut h, &format!("x-object-meta-{k}"), v);
        }
        for (k, v) in &self.system {
            set_header(&mut h, &format!("x-object-sysmeta-{k}"), v);
        }
        for (k, v) in &self.headers {
            if STORED_HEADERS.contains(&k.as_str()) {
                set_header(&mut h, k, v);
            }
        }
        if let Some(at) = self.delete_at {
            set_header(&mut h, "x-delete-at", &at.to_string());
        }
        if let Some(m) = &self.dlo_manifest {
            set_header(&mut h, "x-object-manifest", m);
        }
        h
    }

    /// This metadata with what `source` has and this does not.
    fn merged_over(mut self, source: &ObjectMeta, keep: KeepFromSource) -> ObjectMeta {
        if keep == KeepFromSource::Nothing {
            return self;
        }
        if self.content_type.is_none() {
            self.content_type = source.content_type.clone();
        }
        if keep == KeepFromSource::ContentType {
            return self;
        }
        for (k, v) in &source.headers {
            if self.header(k).is_none() {
                self.headers.push((k.clone(), v.clone()));
            }
        }
        if keep == KeepFromSource::Everything {
            for (k, v) in &source.user {
                if !self.user.iter().any(|(n, _)| n == k) {
                    self.user.push((k.clone(), v.clone()));
                }
            }
        }
        self
    }
}

/// Store a body as an object.
pub struct PutObject {
    pub path: ObjectPath,
    /// `None`: the length is not known before the body ends (chunked).
    pub length: Option<u64>,
    pub meta: ObjectMeta,
    /// The S3 checksum computed as the body passes, checked against the
    /// client's value (a mismatch stores nothing) and kept.
    pub checksum: Option<ChecksumCheck>,
    /// Hex MD5 the body must have; the nodes refuse a body that differs.
    pub expected_md5: Option<String>,
    /// A condition checked atomically with the write (S3's conditional
    /// writes).
    pub condition: Option<WriteCondition>,
    /// Server-side encryption of the body.
    pub sealing: Option<Sealing>,
    /// The write's own time where it must be another record's (a version's
    /// link is dated at its version, [`super::object_versions`]); `None`:
    /// now. Never from a client.
    pub at: Option<Timestamp>,
    pub body: Body,
}

impl PutObject {
    /// An empty object with this metadata (a symlink, an upload's marker).
    pub fn empty(path: ObjectPath, meta: ObjectMeta) -> PutObject {
        PutObject {
            path,
            length: Some(0),
            meta,
            checksum: None,
            expected_md5: None,
            condition: None,
            sealing: None,
            at: None,
            body: empty(),
        }
    }
}

/// A condition a write needs, checked against a quorum of replicas while
/// the writer holds the name's lease ([`crate::write_locks`]), so that of
/// racing conditional writers exactly one succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteCondition {
    /// `If-None-Match: *`: no object has the name.
    IfNoneMatch,
    /// `If-Match: <etag>` (`*`: any object).
    IfMatch(String),
}

/// How long a conditional writer's lease lasts without renewal.
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How long a writer that waits for a name's lease waits at most.
const LEASE_WAIT: Duration = Duration::from_secs(10);

/// What a writer does when another holds the name's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WhenBusy {
    /// Gives up at once (S3's conditional writes:
    /// `ConditionalRequestConflict`).
    Refuse,
    /// Waits for it (changes that must not interleave, as deletes of
    /// versions and the relinks that follow them).
    Wait,
}

/// Aborts a task when dropped (a lease's renewal, when its write ends or
/// is abandoned).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stored object's ETag and time.
#[derive(Clone, Debug)]
pub struct Written {
    pub etag: String,
    pub last_modified: Timestamp,
    /// Its S3 checksum, checked and kept.
    pub checksum: Option<(Algorithm, String)>,
    /// Its version, in a container that keeps versions
    /// ([`super::object_versions`]).
    pub version_id: Option<String>,
}

/// Read (or HEAD) an object.
#[derive(Clone, Debug)]
pub struct ReadObject {
    pub path: ObjectPath,
    pub head: bool,
    /// An RFC 9110 byte-range set (`bytes=0-99,200-`).
    pub range: Option<String>,
    pub conditions: Conditions,
    /// A large object's manifest rather than its content.
    pub manifest: bool,
    /// The container a large object's segments, and a symlink's target,
    /// must be in (a temporary URL's reach); `None`: anywhere in the
    /// account.
    pub segments_within: Option<String>,
    /// A symlink itself rather than its target (Swift's `symlink=get`).
    pub symlink: bool,
    /// One version of the object (`null` included), not the current one.
    pub version: Option<String>,
    /// The customer key an SSE-C object is opened with.
    pub customer_key: Option<CustomerKey>,
    /// Exactly the record stored at this time, from whichever replica
    /// holds it ([`crate::records::STORED_AT_HEADER`]).
    pub stored_at: Option<Timestamp>,
    /// One part (1-based) of a large object: the bytes of its segment, as
    /// S3's `partNumber` reads an object uploaded in parts. Any other
    /// object is its own only part. Not with `range`.
    pub part: Option<u32>,
}

/// How many parts the object read has, on a read of one of them
/// ([`ReadObject::part`]).
pub const PARTS_COUNT_HEADER: &str = "x-nubo-parts-count";

/// An object as read: the status is 200, or 206 when `partial`.
pub struct ObjectRead {
    pub partial: bool,
    /// Headers for the client (node-internal ones removed, system metadata
    /// kept for the front end to use or drop).
    pub headers: HeaderMap,
    pub body: Body,
}

/// What a read says about the object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub etag: String,
    /// Bytes in this response (the range's when partial).
    pub length: u64,
    pub last_modified: Option<SystemTime>,
    pub content_range: Option<String>,
    /// The object's parts, on a read of one ([`PARTS_COUNT_HEADER`]).
    pub parts_count: Option<u32>,
    pub meta: ObjectMeta,
}

impl ObjectRead {
    /// A whole object read as its only part: 206, with the range it spans.
    fn into_only_part(mut self) -> ObjectRead {
        let size = header_str(&self.headers, "content-length").and_then(|v| v.parse::<u64>().ok());
        if let Some(size) = size.filter(|n| *n > 0 && !self.partial) {
            set_header(
                &mut self.headers,
                "content-range",
                &format!("bytes 0-{}/{size}", size - 1),
            );
            self.partial = true;
        }
        self
    }

    pub fn info(&self) -> ObjectInfo {
        let h = &self.headers;
        ObjectInfo {
            etag: header_str(h, "etag")
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
            length: header_str(h, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            last_modified: header_str(h, "last-modified")
                .and_then(|d| httpdate::parse_http_date(&d).ok()),
            content_range: header_str(h, "content-range").map(|c| c.into_owned()),
            parts_count: header_str(h, PARTS_COUNT_HEADER).and_then(|v| v.parse().ok()),
            meta: ObjectMeta::from_stored(h),
        }
    }
}

/// What a copy keeps of the source's metadata where the request sets none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeepFromSource {
    /// Content type, stored headers and user metadata (Swift's copy, S3's
    /// `COPY` directive).
    Everything,
    /// The content type only (Swift's `X-Fresh-Metadata`).
    ContentType,
    /// Nothing (S3's `REPLACE` directive).
    Nothing,
}

/// Copy an object (a large object is copied whole, as its content).
pub struct CopyObject {
    pub from: ObjectPath,
    pub to: ObjectPath,
    /// Preconditions on the source.
    pub conditions: Conditions,
    /// Part of the source only (S3's UploadPartCopy).
    pub range: Option<String>,
    pub meta: ObjectMeta,
    pub keep: KeepFromSource,
    /// The S3 checksum to compute for the copy, if any.
    pub checksum: Option<Algorithm>,
    /// System metadata items copied from the source (the rest is not).
    pub carry_system: Vec<&'static str>,
    /// A large source is copied as its manifest (Swift's
    /// `multipart-manifest=get`): the copy is a large object over the same
    /// segments.
    pub manifest: bool,
    /// The container a large source's segments must be in (as
    /// [`ReadObject::segments_within`]).
    pub segments_within: Option<String>,
    /// A symlink source is copied as a link, not as its target's content.
    pub symlink: bool,
    /// One version of the source (`null` included), not the current one.
    pub source_version: Option<String>,
    /// The customer key an SSE-C source is opened with.
    pub source_key: Option<CustomerKey>,
    /// Exactly the source record stored at this time (as
    /// [`ReadObject::stored_at`]).
    pub source_stored_at: Option<Timestamp>,
    /// Server-side encryption of the copy.
    pub sealing: Option<Sealing>,
}

impl CopyObject {
    /// A copy of exactly what is stored at `from`: a large object as its
    /// manifest, a symlink as a link, all its metadata (versions kept by
    /// either versioning mode).
    pub fn as_stored(from: ObjectPath, to: ObjectPath) -> CopyObject {
        CopyObject {
            from,
            to,
            conditions: Conditions::default(),
            range: None,
            meta: ObjectMeta::default(),
            keep: KeepFromSource::Everything,
            checksum: None,
            carry_system: Vec::new(),
            manifest: true,
            segments_within: None,
            symlink: true,
            source_version: None,
            source_key: None,
            source_stored_at: None,
            sealing: None,
        }
    }
}

impl ReadObject {
    /// A GET of the whole current object at `path`, as any reader of the
    /// account sees it (large objects assembled, links followed); the
    /// other fields are set where a read asks for more.
    pub fn of(path: ObjectPath) -> ReadObject {
        ReadObject {
            path,
            head: false,
            range: None,
            conditions: Conditions::default(),
            manifest: false,
            segments_within: None,
            symlink: false,
            version: None,
            customer_key: None,
            stored_at: None,
            part: None,
        }
    }

    /// A HEAD of what is stored at `path` (a link as itself).
    pub fn head_of_stored(path: ObjectPath) -> ReadObject {
        ReadObject {
            head: true,
            symlink: true,
            ..ReadObject::of(path)
        }
    }
}

/// The object layer of one proxy.
pub struct Objects {
    pub(super) backend: Arc<Backend>,
    /// Containers and accounts seen lately (existence, metadata).
    pub(super) known_containers: Recent<(String, String)>,
    pub(super) known_accounts: Recent<String>,
    /// Listing rows on their way to container replicas.
    rows: Arc<RowBatches>,
    /// The cluster's key for SSE-S3 ([`super::encryption`]).
    master_key: Option<Key>,
}

pub(crate) fn unix_now() -> u64 {
    Timestamp::now().secs()
}

/// A store's headers with the write's timestamp: the one its writer set
/// ([`PutObject::at`]), else now.
fn stamped(h: HeaderMap) -> HeaderMap {
    if h.contains_key("x-timestamp") {
        h
    } else {
        with_timestamp(h)
    }
}

pub(super) fn with_timestamp(mut h: HeaderMap) -> HeaderMap {
    set_header(&mut h, "x-timestamp", &Timestamp::now().to_string());
    h
}

/// The sealed bytes of `window`, from the version whose headers are
/// `stored` (another version's would not open with its key).
pub(super) async fn read_sealed_range(
    backend: &Arc<Backend>,
    path: &Path,
    stored: &HeaderMap,
    window: Window,
) -> ObjectResult<Body> {
    let mut h = HeaderMap::new();
    let (a, b) = window.sealed;
    set_header(&mut h, "range", &format!("bytes={a}-{b}"));
    let r = backend.read(Method::GET, path, h, None).await;
    if !r.status().is_success() {
        return Err(read_error(r.status(), r.headers()));
    }
    if header_str(r.headers(), "x-timestamp") != header_str(stored, "x-timestamp") {
        // Overwritten between the two reads.
        return Err(ObjectError::Unavailable(StatusCode::SERVICE_UNAVAILABLE));
    }
    Ok(r.into_body())
}

/// Drops what only nodes speak; system metadata stays for the front ends.
pub(crate) fn client_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        let n = k.as_str();
        if n.starts_with("x-backend-")
            || n.starts_with("x-nubo-")
            || n == "x-put-timestamp"
            || n == "connection"
            || n == "transfer-encoding"
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    // A sealed body as clients see it: the plaintext's size, and an
    // SSE-S3 body's plaintext MD5 as its ETag.
    if let Some(sealed) = Sealed::of(h) {
        set_header(&mut out, "content-length", &sealed.size.to_string());
        if let Some(etag) = header_str(h, ETAG_HEADER) {
            set_header(&mut out, "etag", &etag);
        }
    }
    out
}

/// The headers a read of one stored object answers with, once the
/// request's conditions hold against the ETag and time clients see (a
/// sealed body's plaintext ETag, say).
fn answer_headers(req: &ReadObject, stored: &HeaderMap) -> ObjectResult<HeaderMap> {
    let mut headers = client_headers(stored);
    let etag = header_str(&headers, "etag")
        .map(|e| e.trim_matches('"').to_string())
        .unwrap_or_default();
    req.conditions
        .check(true, &etag, modified_secs(stored))
        .map_err(|f| failed(f, &etag))?;
    headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    Ok(headers)
}

fn modified_secs(h: &HeaderMap) -> u64 {
    header_str(h, "x-timestamp")
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| t.secs())
        .unwrap_or(0)
}

fn failed(f: Failed, etag: &str) -> ObjectError {
    match f {
        Failed::NotModified => ObjectError::NotModified {
            etag: etag.to_string(),
        },
        Failed::PreconditionFailed => ObjectError::PreconditionFailed {
            etag: Some(etag.to_string()),
        },
    }
}

/// The error a failed node read stands for.
fn read_error(status: StatusCode, headers: &HeaderMap) -> ObjectError {
    match status {
        StatusCode::NOT_FOUND => ObjectError::NoSuchObject,
        StatusCode::RANGE_NOT_SATISFIABLE => ObjectError::RangeNotSatisfiable {
            size: header_str(headers, "content-range")
                .and_then(|r| r.rsplit('/').next().and_then(|n| n.parse().ok())),
        },
        StatusCode::PRECONDITION_FAILED => ObjectError::PreconditionFailed { etag: None },
        s => ObjectError::Unavailable(s),
    }
}

/// The error a failed quorum write stands for.
pub(super) fn write_error(out: &WriteOutcome, missing: ObjectError) -> ObjectError {
    match out.status {
        StatusCode::NOT_FOUND => missing,
        StatusCode::UNPROCESSABLE_ENTITY => ObjectError::BadDigest,
        StatusCode::CONFLICT => ObjectError::Superseded {
            etag: out.etag.clone(),
        },
        StatusCode::PRECONDITION_FAILED => ObjectError::PreconditionFailed { etag: None },
        s => ObjectError::Unavailable(s),
    }
}

impl Objects {
    pub fn new(backend: Arc<Backend>) -> Objects {
        Objects {
            rows: Arc::new(RowBatches::new(backend.client.timeouts)),
            backend,
            known_containers: Recent::new(),
            known_accounts: Recent::new(),
            master_key: None,
        }
    }

    /// With the cluster's key for SSE-S3.
    pub fn with_master_key(mut self, key: Option<Key>) -> Objects {
        self.master_key = key;
        self
    }

    /// The keys a read opens sealed bodies with.
    pub(super) fn keys(&self, customer: Option<&CustomerKey>) -> Keys {
        Keys {
            master: self.master_key.clone(),
            customer: customer.cloned(),
        }
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    // ---- objects ------------------------------------------------------

    /// Which container replicas each object replica owes its listing row.
    /// Object replica i updates container replicas i and i+1: a write that
    /// succeeds on a quorum while one replica fails still reaches every
    /// container replica. (Swift gives each object replica one container
    /// replica and leaves the gap a failed replica makes to the container
    /// replicator; rows are batched per target, so the second target is
    /// cheap.)
    fn container_update_targets(&self, account: &str, container: &str) -> Vec<Vec<UpdateTarget>> {
        let targets = self.container_replicas(account, container);
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

    /// The container's primaries, as listing-row targets.
    fn container_replicas(&self, account: &str, container: &str) -> Vec<UpdateTarget> {
        let ring = self.backend.ring();
        let placed = crate::version_names::container_placement(container);
        let (_, part) = ring.locate(&[account, placed]);
        ring.primaries(part)
            .map(|d| UpdateTarget {
                addr: d.node_addr(),
                device: d.device.clone(),
                partition: part,
            })
            .collect()
    }

    /// Makes a write's listing row visible on every replica of its
    /// container before the write is acknowledged, so that a listing right
    /// after it shows it (the nodes keep the row queued and deliver it
    /// again durably). Waits at most `SYNC_DELIVERY` per replica.
    async fn list_at_once(&self, path: &ObjectPath, out: &WriteOutcome) {
        if let Some(row) = &out.row {
            self.list_rows_at_once(&[(path, row)]).await;
        }
    }

    /// [`Self::list_at_once`] for rows of several objects, delivered
    /// together (a version's and its link's reach the same container
    /// servers, [`crate::version_names::container_placement`], in one
    /// batch).
    async fn list_rows_at_once(&self, rows: &[(&ObjectPath, &ObjectRow)]) {
        let batched: Vec<(UpdateTarget, BatchedRow)> = rows
            .iter()
            .flat_map(|(path, row)| {
                self.container_replicas(&path.account, &path.container)
                    .into_iter()
                    .map(|t| {
                        let batched = BatchedRow {
                            partition: t.partition,
                            account: path.account.clone(),
                            container: path.container.clone(),
                            object: path.object.clone(),
                            row: (*row).clone(),
                        };
                        (t, batched)
                    })
            })
            .collect();
        let listed = self.rows.deliver(batched).await;
        crate::metrics::NodeMetrics::add(&self.backend.metrics.rows_listed_at_once, listed as u64);
    }

    /// Stores an object (as a new version where the container keeps
    /// them).
    pub async fn put(&self, req: PutObject) -> ObjectResult<Written> {
        self.put_as(req, true).await
    }

    /// Stores an object where it is named, whatever the container's
    /// versioning (a version's link, a delete marker).
    /// (Boxed: a versioned write ends with one of these.)
    pub(super) fn write_plain(
        &self,
        req: PutObject,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ObjectResult<Written>> + Send + '_>>
    {
        Box::pin(self.put_as(req, false))
    }

    async fn put_as(&self, req: PutObject, versioned: bool) -> ObjectResult<Written> {
        if req.length.is_some_and(|n| n > MAX_OBJECT_SIZE) {
            return Err(ObjectError::TooLarge);
        }
        req.meta.check()?;
        let path = req.path;
        let container = self
            .container_meta(&path.account, &path.container)
            .await
            .map_err(|_| ObjectError::NoSuchContainer)?;
        self.check_quota(&path.account, &path.container, &container, req.length)
            .await?;
        self.check_account_quota(&path.account, req.length).await?;
        if req.meta.delete_at.is_some() && LockConfig::of(&container).is_some() {
            return Err(ObjectError::InvalidArgument(
                "X-Delete-At is not allowed where Object Lock is enabled".into(),
            ));
        }
        self.archive_current(&path, &container).await?;
        let mut meta = req.meta;
        if meta.content_type.is_none() {
            meta.content_type = Some(guess_content_type(&path.object).to_string());
        }
        let content_type = meta.content_type.clone().unwrap_or_default();
        let (condition, length, body, at) = (req.condition, req.length, req.body, req.at);
        let (mut expected_md5, checksum) = (req.expected_md5, req.checksum);
        let mut digests = BodyDigests::new(checksum);
        let mut stored_length = length;
        // A client's write without a sealing of its own takes the
        // container's default (links and markers are the layer's own).
        let sealing = match req.sealing {
            None if versioned => container_default(&container),
            asked => asked,
        };
        if let Some(sealing) = &sealing {
            let size = length.ok_or(ObjectError::LengthRequired)?;
            let (data_key, sealed) = Sealed::new(sealing, self.master_key.as_ref(), size)?;
            meta.system.push(sealed.item());
            // Listed with the plaintext's size; the MD5 a client sent is
            // of the plaintext, checked here rather than by the nodes.
            meta.system
                .push(("container-update-override-size".into(), size.to_string()));
            let plain_etag = *sealing == Sealing::Cluster;
            digests = digests.sealed(&data_key, plain_etag, expected_md5.take());
            stored_length = Some(sealed_len(size));
        }
        let write = async {
            let prepared = if versioned {
                self.prepare_write(&path, &container).await?
            } else {
                Prepared::Plain {
                    null_version: false,
                }
            };
            meta.add_missing_system(prepared.system());
            let mut h = meta.node_headers();
            // A version is dated at its id, as its link is.
            if let Some(at) = at.or(prepared.version_time()) {
                set_header(&mut h, "x-timestamp", &at.to_string());
            }
            if let Some(md5) = &expected_md5 {
                set_header(&mut h, "etag", md5);
            }
            match stored_length {
                Some(n) => set_header(&mut h, "content-length", &n.to_string()),
                None => set_header(&mut h, "transfer-encoding", "chunked"),
            }
            let target = prepared.target(&path);
            let link = prepared.link_plan(&path, &content_type, length);
            let (written, linked) = self
                .store_linked(&target, h, body, digests, link.as_ref())
                .await?;
            self.finish_write(
                &path,
                prepared,
                written,
                linked,
                &content_type,
                length,
                None,
            )
            .await
        };
        match &condition {
            None => write.await,
            Some(c) => self.write_if(&path, c, write).await,
        }
    }

    /// Runs `write` if `condition` holds, atomically with respect to other
    /// conditional writers of the name: they wait for nothing but hear
    /// [`ObjectError::ConditionalConflict`] while the lease is held.
    pub async fn write_if<T>(
        &self,
        path: &ObjectPath,
        condition: &WriteCondition,
        write: impl std::future::Future<Output = ObjectResult<T>>,
    ) -> ObjectResult<T> {
        let work = async {
            self.check_condition(&path.node(), condition).await?;
            write.await
        };
        // Boxed: nested unboxed, the writes' futures overflowed a worker
        // thread's stack.
        self.leased(path, WhenBusy::Refuse, Box::pin(work)).await
    }

    /// Runs `work` holding the lease on `path`'s name
    /// ([`crate::write_locks`]), renewed while it runs (a long upload
    /// keeps it). A name whose lease another holds is refused
    /// ([`ObjectError::ConditionalConflict`]) or waited for, at most
    /// [`LEASE_WAIT`] ([`ObjectError::Unavailable`] after that).
    pub(super) async fn leased<T>(
        &self,
        path: &ObjectPath,
        when_busy: WhenBusy,
        work: impl std::future::Future<Output = ObjectResult<T>>,
    ) -> ObjectResult<T> {
        let node_path = path.node();
        let token = hex::encode(service_kit::ids::rand_bytes::<16>());
        let give_up = std::time::Instant::now() + LEASE_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            match self.backend.lease(&node_path, &token, LEASE_TTL).await {
                Lease::Held => break,
                Lease::Busy if when_busy == WhenBusy::Refuse => {
                    return Err(ObjectError::ConditionalConflict)
                }
                Lease::Busy if std::time::Instant::now() < give_up => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Lease::Busy | Lease::Unavailable => {
                    return Err(ObjectError::Unavailable(StatusCode::SERVICE_UNAVAILABLE))
                }
            }
        }
        let (backend, p, t) = (self.backend.clone(), node_path.clone(), token.clone());
        let renewal = AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL / 3).await;
                backend.lease(&p, &t, LEASE_TTL).await;
            }
        }));
        let result = work.await;
        drop(renewal);
        self.backend.release(&node_path, &token).await;
        result
    }

    /// Whether `condition` holds for what a quorum of replicas has.
    async fn check_condition(&self, path: &Path, condition: &WriteCondition) -> ObjectResult<()> {
        let Some(found) = self.backend.head_quorum(path).await else {
            return Err(ObjectError::Unavailable(StatusCode::SERVICE_UNAVAILABLE));
        };
        let exists = found.status().is_success();
        match condition {
            WriteCondition::IfNoneMatch if exists => {
                Err(ObjectError::PreconditionFailed { etag: None })
            }
            WriteCondition::IfNoneMatch => Ok(()),
            WriteCondition::IfMatch(_) if !exists => Err(ObjectError::NoSuchObject),
            WriteCondition::IfMatch(want) => {
                let want = want.trim().trim_matches('"');
                // The ETag each API shows: S3's multipart one, or the body's.
                let h = found.headers();
                let matches = want == "*"
                    || ["x-object-sysmeta-s3-etag", ETAG_HEADER, "etag"]
                        .iter()
                        .filter_map(|n| header_str(h, n))
                        .any(|e| e.trim_matches('"') == want);
                if matches {
                    Ok(())
                } else {
                    Err(ObjectError::PreconditionFailed { etag: None })
                }
            }
        }
    }

    /// Writes an object with node headers as given (timestamp added) and
    /// its listing rows owed to the container's servers.
    pub(crate) async fn store(
        &self,
        path: &ObjectPath,
        h: HeaderMap,
        body: Body,
        digests: BodyDigests,
    ) -> ObjectResult<Written> {
        Ok(self.store_linked(path, h, body, digests, None).await?.0)
    }

    /// [`Self::store`] of a version, whose nodes are asked to make it its
    /// object's current version in the same write (`link`) where the body
    /// is small enough to be read before it is sent: what became of that
    /// link, `None` where it was not asked.
    pub(super) async fn store_linked(
        &self,
        path: &ObjectPath,
        h: HeaderMap,
        body: Body,
        mut digests: BodyDigests,
        link: Option<&LinkPlan>,
    ) -> ObjectResult<(Written, Option<LinkOutcome>)> {
        let targets = self.container_update_targets(&path.account, &path.container);
        let small = header_str(&h, "content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n <= INLINE_MAX);
        let out = match small {
            // Read whole, then sent to each node with its length, digests
            // and body at once: no `Expect: 100-continue` round trip, and a
            // node that refuses (a full device) is replaced by a handoff
            // with the same bytes.
            Some(len) => {
                let Some(bytes) = service_kit::http_util::collect_limited(body, len as usize).await
                else {
                    return Err(ObjectError::InvalidArgument(
                        "the body broke off or is longer than its Content-Length".into(),
                    ));
                };
                let mut bytes = BytesMut::from(&digests.pass(bytes)[..]);
                let (tail, found) = digests.finish().map_err(|_| ObjectError::BadDigest)?;
                bytes.extend_from_slice(&tail);
                let bytes = bytes.freeze();
                let mut h = stamped(h);
                h.extend(found.headers);
                let links: Vec<String> = match link {
                    Some(plan) => {
                        let replicas = self
                            .container_update_targets(&plan.object.account, &plan.object.container);
                        plan.requests(&found.etag, replicas)
                            .iter()
                            .filter_map(|l| serde_json::to_string(l).ok())
                            .collect()
                    }
                    None => Vec::new(),
                };
                let mut out = self
                    .backend
                    .write(Method::PUT, &path.node(), h, bytes, |i, h| {
                        owe_rows(&targets, i, h);
                        if let Some(l) = links.get(i) {
                            set_header(h, LINK_HEADER, l);
                        }
                    })
                    .await;
                if out.status == StatusCode::CONFLICT || out.status.is_success() {
                    // The ETag clients see (a sealed body's may not be
                    // the nodes').
                    out.etag = Some(found.etag);
                }
                out.checksum = found.checksum;
                out
            }
            None => {
                self.backend
                    .put_object(&path.node(), stamped(h), body, digests, targets)
                    .await
            }
        };
        let mut rows: Vec<(&ObjectPath, &ObjectRow)> = Vec::new();
        if let Some(row) = &out.row {
            rows.push((path, row));
        }
        if let (Some(plan), Some(row)) = (link, &out.link_row) {
            rows.push((&plan.object, row));
        }
        self.list_rows_at_once(&rows).await;
        if !out.status.is_success() {
            return Err(write_error(&out, ObjectError::NoSuchContainer));
        }
        let written = Written {
            etag: out.etag.unwrap_or_default().trim_matches('"').to_string(),
            last_modified: Timestamp::now(),
            checksum: out.checksum,
            version_id: None,
        };
        Ok((written, out.link))
    }

    /// Copies an object; a large source is copied as its content, or as
    /// its manifest when asked.
    pub async fn copy(&self, req: CopyObject) -> ObjectResult<Written> {
        let source = self
            .get(ReadObject {
                path: req.from,
                head: false,
                range: req.range,
                conditions: req.conditions,
                manifest: req.manifest,
                segments_within: req.segments_within,
                symlink: req.symlink,
                version: req.source_version,
                customer_key: req.source_key,
                stored_at: req.source_stored_at,
                part: None,
            })
            .await?;
        if req.symlink {
            if let Some(link) = Link::of(&source.headers) {
                let meta = req.meta.merged_over(&source.info().meta, req.keep);
                return self.put_symlink(req.to, meta, link).await;
            }
        }
        let info = source.info();
        if info.length > MAX_OBJECT_SIZE {
            return Err(ObjectError::TooLarge);
        }
        let mut meta = req.meta.merged_over(&info.meta, req.keep);
        // The source's system metadata (multipart ETags, checksums) does not
        // describe the copy, but for what the caller carries over (S3's
        // tags); the caller's own is kept.
        for key in &req.carry_system {
            if let Some(v) = info.meta.system(key) {
                if meta.system(key).is_none() {
                    meta.system.push((key.to_string(), v.to_string()));
                }
            }
        }
        if req.manifest && segments::is_static(&source.headers) {
            let raw = collect_limited(source.body, MAX_MANIFEST_BYTES)
                .await
                .ok_or(ObjectError::Unavailable(StatusCode::SERVICE_UNAVAILABLE))?;
            let stored: Vec<StoredSegment> = serde_json::from_slice(&raw)
                .map_err(|e| ObjectError::Broken(format!("stored manifest: {e}")))?;
            return self.store_manifest(&req.to, meta, stored).await;
        }
        meta.dlo_manifest = match (req.manifest, meta.dlo_manifest) {
            // A dynamic manifest copied as itself keeps its prefix.
            (true, None) => info.meta.dlo_manifest.clone(),
            (true, own) => own,
            (false, _) => None,
        };
        self.put(PutObject {
            path: req.to,
            length: Some(info.length),
            meta,
            checksum: req.checksum.map(|algorithm| ChecksumCheck {
                algorithm,
                expected: Expected::Nothing,
            }),
            expected_md5: None,
            condition: None,
            sealing: req.sealing,
            at: None,
            body: source.body,
        })
        .await
    }

    /// Replaces an object's metadata (user metadata, stored headers,
    /// expiry); the content type and system metadata stay.
    pub async fn update_meta(&self, path: &ObjectPath, meta: ObjectMeta) -> ObjectResult<()> {
        meta.check()?;
        let target = self.meta_target(path, meta.delete_at.is_some()).await?;
        self.post(&target, meta.node_headers()).await
    }

    /// Where a Swift POST to `path` applies: in a container that keeps
    /// versions, the current version rather than the link that stands for
    /// it. An expiry is refused where Object Lock is on.
    async fn meta_target(&self, path: &ObjectPath, expiry: bool) -> ObjectResult<ObjectPath> {
        if is_hidden(&path.container) {
            return Ok(path.clone());
        }
        let Ok(container) = self.container_meta(&path.account, &path.container).await else {
            return Ok(path.clone());
        };
        if expiry && LockConfig::of(&container).is_some() {
            return Err(ObjectError::InvalidArgument(
                "X-Delete-At is not allowed where Object Lock is enabled".into(),
            ));
        }
        if State::of(&container) == State::Off {
            return Ok(path.clone());
        }
        self.stored_version(path, None).await
    }

    /// A metadata POST with these node headers, at a quorum.
    async fn post(&self, path: &ObjectPath, h: HeaderMap) -> ObjectResult<()> {
        let out = self
            .backend
            .write(
                Method::POST,
                &path.node(),
                with_timestamp(h),
                Bytes::new(),
                |_, _| {},
            )
            .await;
        if !out.status.is_success() {
            return Err(write_error(&out, ObjectError::NoSuchObject));
        }
        Ok(())
    }

    /// Sets system metadata items of the object stored at `path` (names
    /// without `x-object-sysmeta-`; an empty value removes one), keeping the
    /// rest of its metadata (S3's object tagging, retention, legal hold).
    /// Callers name the version they change
    /// ([`Objects::stored_version`]).
    pub async fn update_system_meta(
        &self,
        path: &ObjectPath,
        items: &[(String, String)],
    ) -> ObjectResult<()> {
        let mut h = HeaderMap::new();
        set_header(&mut h, "x-nubo-post", "system");
        for (k, v) in items {
            set_header(&mut h, &format!("x-object-sysmeta-{k}"), v);
        }
        self.post(path, h).await
    }

    /// Deletes one object as a client asks: in a container that keeps
    /// versions, as it keeps them ([`super::object_versions`], or the older
    /// modes of [`super::versions`]).
    pub async fn delete(&self, path: &ObjectPath) -> ObjectResult<()> {
        self.delete_object(path).await.map(drop)
    }

    /// [`Objects::delete`], saying what it did to the object's versions.
    pub async fn delete_object(&self, path: &ObjectPath) -> ObjectResult<Deleted> {
        if let Ok(container) = self.container_meta(&path.account, &path.container).await {
            if let Some(done) = self.delete_current(path, &container).await {
                return done;
            }
            if let Some(done) = self.delete_versioned(path, &container).await {
                return done.map(|()| Deleted::default());
            }
        }
        self.remove(path).await.map(|()| Deleted::default())
    }

    /// Deletes one object (tombstones at quorum, listing rows queued).
    pub async fn remove(&self, path: &ObjectPath) -> ObjectResult<()> {
        self.remove_at(path, Timestamp::now()).await
    }

    /// [`Objects::remove`] with the tombstone dated `at`: a version written
    /// after `at` survives it ([`ObjectError::Superseded`]).
    pub async fn remove_at(&self, path: &ObjectPath, at: Timestamp) -> ObjectResult<()> {
        let targets = self.container_update_targets(&path.account, &path.container);
        let mut h = HeaderMap::new();
        set_header(&mut h, "x-timestamp", &at.to_string());
        let out = self
            .backend
            .write(Method::DELETE, &path.node(), h, Bytes::new(), |i, h| {
                owe_rows(&targets, i, h)
            })
            .await;
        self.list_at_once(path, &out).await;
        if !out.status.is_success() {
            return Err(write_error(&out, ObjectError::NoSuchObject));
        }
        Ok(())
    }

    /// The newest record every replica has of `path`: its headers
    /// (`None`: no object, or a tombstone) and its time (a tombstone's
    /// too; `None`: no replica knows the name).
    pub(super) async fn newest_record(
        &self,
        path: &ObjectPath,
    ) -> ObjectResult<(Option<HeaderMap>, Option<Timestamp>)> {
        let r = self
            .backend
            .head_newest(&path.node(), HeaderMap::new())
            .await;
        let at = Some(super::backend::backend_timestamp(r.headers())).filter(|t| t.0 > 0);
        match r.status() {
            s if s.is_success() => Ok((Some(client_headers(r.headers())), at)),
            StatusCode::NOT_FOUND => Ok((None, at)),
            s => Err(read_error(s, r.headers())),
        }
    }

    /// An object's headers, asked of every replica (the newest wins).
    pub async fn head_newest(&self, path: &ObjectPath) -> ObjectResult<HeaderMap> {
        let r = self
            .backend
            .head_newest(&path.node(), HeaderMap::new())
            .await;
        if !r.status().is_success() {
            return Err(read_error(r.status(), r.headers()));
        }
        Ok(client_headers(r.headers()))
    }

    /// GET or HEAD of an object as a client asked for it (range,
    /// conditions), large objects assembled unless `manifest`, symlinks
    /// followed unless `symlink` ([`super::symlinks`]).
    pub async fn get(&self, mut req: ReadObject) -> ObjectResult<ObjectRead> {
        if let Some(id) = req.version.take() {
            let (path, marker) = self.find_version(&req.path, &id).await?;
            if marker {
                return Err(ObjectError::DeleteMarker { version_id: id });
            }
            req.path = path;
            req.symlink = true;
            return self.read_one(req).await;
        }
        if req.symlink {
            self.read_one(req).await
        } else {
            self.read_through_links(req).await
        }
    }

    /// GET or HEAD of one object; a symlink is answered as itself, with no
    /// body, its range and conditions left for its target.
    pub(super) async fn read_one(&self, req: ReadObject) -> ObjectResult<ObjectRead> {
        let (req, parts, body) = self.fetch_one(req, false).await?;
        self.answer_one(&req, parts, body).await
    }

    /// Reads one object from the nodes: a HEAD of every replica (the
    /// newest wins), or a GET of one. With `follow_version_link`, a read of
    /// an object whose current record links one of its versions may be
    /// answered by the nodes with that version (stored beside the link; the
    /// caller checks the ETag the answer says the link gives it); the
    /// request returned then names the version.
    pub(super) async fn fetch_one(
        &self,
        mut req: ReadObject,
        follow_version_link: bool,
    ) -> ObjectResult<(ReadObject, http::response::Parts, Body)> {
        let path = req.path.node();
        let multi = req.range.as_deref().is_some_and(|r| r.contains(','));
        let mut h = HeaderMap::new();
        if let Some(at) = req.stored_at {
            set_header(&mut h, STORED_AT_HEADER, &at.to_string());
        }
        // Each replica that holds the version beside the link answers with
        // it, dated as the link: of several, the newest still wins.
        if follow_version_link && !req.symlink && req.stored_at.is_none() {
            set_header(&mut h, FOLLOW_VERSION_HEADER, "1");
        }
        let resp = if req.head || multi {
            self.backend.head_newest(&path, h).await
        } else {
            if let Some(r) = &req.range {
                set_header(&mut h, "range", r);
            }
            self.backend.read(Method::GET, &path, h, None).await
        };
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            return Err(read_error(parts.status, &parts.headers));
        }
        if follow_version_link {
            let followed = header_str(&parts.headers, FOLLOWED_VERSION_HEADER)
                .and_then(|target| Link::parse(&target));
            if let Some((container, object)) = followed {
                req.path = ObjectPath::new(&req.path.account, container, object);
            }
        }
        Ok((req, parts, body))
    }

    /// What the client gets of one object as a node answered
    /// ([`Self::fetch_one`]).
    pub(super) async fn answer_one(
        &self,
        req: &ReadObject,
        parts: http::response::Parts,
        body: Body,
    ) -> ObjectResult<ObjectRead> {
        // A link to follow is answered as itself, with no body: its
        // range, conditions and part are its target's, on the next hop.
        if !req.symlink && Link::of(&parts.headers).is_some() {
            return Ok(ObjectRead {
                partial: false,
                headers: client_headers(&parts.headers),
                body: empty(),
            });
        }
        // An object not made of parts is its own only part; a large
        // object's parts are its segments ([`Self::get_large`]).
        let only_part = req.manifest || !segments::is_large(&parts.headers);
        match req.part {
            Some(n) if only_part && n != 1 => Err(ObjectError::NoSuchPart { parts: 1 }),
            Some(_) if only_part => {
                Ok(self.answer_stored(req, parts, body).await?.into_only_part())
            }
            _ => self.answer_stored(req, parts, body).await,
        }
    }

    /// [`Self::answer_one`] of what is stored (not a link to follow), but
    /// for the part asked for.
    async fn answer_stored(
        &self,
        req: &ReadObject,
        parts: http::response::Parts,
        body: Body,
    ) -> ObjectResult<ObjectRead> {
        let path = req.path.node();
        let multi = req.range.as_deref().is_some_and(|r| r.contains(','));
        if !req.manifest && segments::is_large(&parts.headers) {
            return self.get_large(req, parts.headers).await;
        }
        if let Some(sealed) = Sealed::of(&parts.headers) {
            return self.read_sealed(req, &sealed, parts.headers, body).await;
        }
        if req.customer_key.is_some() {
            return Err(OpenError::NotApplicable.into());
        }
        let headers = answer_headers(req, &parts.headers)?;
        if req.head {
            return Ok(ObjectRead {
                partial: false,
                headers,
                body: empty(),
            });
        }
        if multi {
            let size: u64 = header_str(&parts.headers, "x-nubo-size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return match range::resolve(req.range.as_deref(), size) {
                Ranges::Unsatisfiable => Err(ObjectError::RangeNotSatisfiable { size: Some(size) }),
                Ranges::Whole => {
                    let r = self
                        .backend
                        .read(Method::GET, &path, HeaderMap::new(), None)
                        .await;
                    let (p, b) = r.into_parts();
                    if !p.status.is_success() {
                        return Err(read_error(p.status, &p.headers));
                    }
                    Ok(ObjectRead {
                        partial: false,
                        headers: client_headers(&p.headers),
                        body: b,
                    })
                }
                Ranges::Parts(ranges) => Ok(self.multi_range(path, headers, ranges, size)),
            };
        }
        Ok(ObjectRead {
            partial: parts.status == StatusCode::PARTIAL_CONTENT,
            headers,
            body,
        })
    }

    /// GET or HEAD of a sealed object ([`super::encryption`]), opened with
    /// the keys the request gives; a range is read as the sealed chunks
    /// that hold it. Several ranges are served whole, which RFC 9110
    /// allows.
    async fn read_sealed(
        &self,
        req: &ReadObject,
        sealed: &Sealed,
        stored: HeaderMap,
        body: Body,
    ) -> ObjectResult<ObjectRead> {
        let opened = sealed.open(&self.keys(req.customer_key.as_ref()))?;
        let mut headers = answer_headers(req, &stored)?;
        if req.head {
            return Ok(ObjectRead {
                partial: false,
                headers,
                body: empty(),
            });
        }
        let size = opened.size;
        let (window, range) = match range::resolve(req.range.as_deref(), size) {
            Ranges::Parts(p) if p.len() == 1 => (Window::of(size, p[0].0, p[0].1), Some(p[0])),
            Ranges::Whole | Ranges::Parts(_) => (Window::whole(size), None),
            Ranges::Unsatisfiable => {
                return Err(ObjectError::RangeNotSatisfiable { size: Some(size) })
            }
        };
        // The body read with the request is whole, unless it asked for a
        // range (in the plaintext's terms).
        let sealed_body = if req.range.is_none() {
            body
        } else {
            drop(body);
            read_sealed_range(&self.backend, &req.path.node(), &stored, window).await?
        };
        set_header(&mut headers, "content-length", &window.take.to_string());
        if let Some((a, b)) = range {
            set_header(
                &mut headers,
                "content-range",
                &format!("bytes {a}-{b}/{size}"),
            );
        }
        Ok(ObjectRead {
            partial: range.is_some(),
            headers,
            body: open_body(sealed_body, &opened, window),
        })
    }

    /// `multipart/byteranges`, each part read from the replicas on its own.
    fn multi_range(
        &self,
        path: Path,
        mut headers: HeaderMap,
        ranges: Vec<(u64, u64)>,
        size: u64,
    ) -> ObjectRead {
        let boundary = hex::encode(service_kit::ids::rand_bytes::<16>());
        let content_type = header_str(&headers, "content-type")
            .map(|c| c.into_owned())
            .unwrap_or_default();
        let part_head = |a: u64, b: u64| {
            format!("--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {a}-{b}/{size}\r\n\r\n")
        };
        let closing = format!("--{boundary}--");
        let total: u64 = ranges
            .iter()
            .map(|(a, b)| part_head(*a, *b).len() as u64 + (b - a + 1) + 2)
            .sum::<u64>()
            + closing.len() as u64;
        let (tx, body) = channel_body();
        let backend = self.backend.clone();
        let heads: Vec<String> = ranges.iter().map(|(a, b)| part_head(*a, *b)).collect();
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
        // The object's ETag stays, as Swift's swob keeps it on a
        // multipart answer.
        set_header(
            &mut headers,
            "content-type",
            &format!("multipart/byteranges;boundary={boundary}"),
        );
        set_header(&mut headers, "content-length", &total.to_string());
        ObjectRead {
            partial: true,
            headers,
            body,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> ObjectMeta {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            set_header(&mut h, k, v);
        }
        ObjectMeta::from_stored(&h)
    }

    #[test]
    fn stored_metadata_round_trips_through_node_headers() {
        let m = meta(&[
            ("content-type", "text/plain"),
            ("x-object-meta-color", "blue"),
            ("x-object-sysmeta-s3-etag", "abc-2"),
            ("content-encoding", "gzip"),
            ("x-delete-at", "99999999999"),
            ("x-nubo-size", "3"),
        ]);
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
        assert_eq!(m.user, [("color".to_string(), "blue".to_string())]);
        assert_eq!(m.system("s3-etag"), Some("abc-2"));
        assert_eq!(m.header("content-encoding"), Some("gzip"));
        assert_eq!(m.delete_at, Some(99_999_999_999));
        assert_eq!(ObjectMeta::from_stored(&m.node_headers()), m);
    }

    #[test]
    fn copies_merge_what_the_request_leaves_unset() {
        let source = meta(&[
            ("content-type", "text/plain"),
            ("x-object-meta-a", "1"),
            ("x-object-meta-b", "2"),
            ("content-disposition", "inline"),
        ]);
        let request = meta(&[("x-object-meta-b", "new")]);
        let all = request
            .clone()
            .merged_over(&source, KeepFromSource::Everything);
        assert_eq!(all.content_type.as_deref(), Some("text/plain"));
        assert_eq!(all.user.len(), 2);
        assert!(all.user.contains(&("b".into(), "new".into())));
        assert_eq!(all.header("content-disposition"), Some("inline"));
        let fresh = request
            .clone()
            .merged_over(&source, KeepFromSource::ContentType);
        assert_eq!(fresh.user, [("b".to_string(), "new".to_string())]);
        assert_eq!(fresh.content_type.as_deref(), Some("text/plain"));
        assert_eq!(fresh.header("content-disposition"), None);
        let replaced = request
            .clone()
            .merged_over(&source, KeepFromSource::Nothing);
        assert_eq!(replaced, request);
    }

    #[test]
    fn metadata_is_checked_before_anything_is_written() {
        let mut m = ObjectMeta {
            delete_at: Some(1),
            ..Default::default()
        };
        assert!(matches!(m.check(), Err(ObjectError::InvalidArgument(_))));
        m.delete_at = None;
        m.user.push(("k".into(), "v".repeat(300)));
        assert!(matches!(m.check(), Err(ObjectError::MetadataInvalid(_))));
    }
}
