//! Objects through S3: each typed input becomes one object-layer request.

use super::encryption::{self as sse, Shown};
use super::{acl, bucket, checksum, object_lock, tagging};
use crate::proxy::checksums::{Algorithm, MultipartKind};
use crate::proxy::conditions::Conditions;
use crate::proxy::object_versions::Deleted;
use crate::proxy::objects::{
    CopyObject, KeepFromSource, ObjectError, ObjectInfo, ObjectMeta, ObjectPath, ObjectRead,
    Objects, PutObject, ReadObject, WriteCondition, Written, STORED_HEADERS,
};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use s3s::dto::*;
use s3s::{s3_error, S3Result, TrailingHeaders};
use service_kit::http_util::{header_str, Body};
use service_kit::range::Ranges;
use std::collections::HashMap;

/// S3's default content type when the client sends none.
const DEFAULT_TYPE: &str = "binary/octet-stream";

/// What an object write stores: type, user metadata, stored headers.
pub fn write_meta(
    content_type: Option<&str>,
    metadata: Option<&Metadata>,
    request: &HeaderMap,
) -> ObjectMeta {
    let mut meta = ObjectMeta {
        content_type: Some(content_type.unwrap_or(DEFAULT_TYPE).to_string()),
        ..Default::default()
    };
    for (k, v) in metadata.into_iter().flatten() {
        meta.user.push((k.to_ascii_lowercase(), v.clone()));
    }
    for name in STORED_HEADERS {
        if let Some(v) = header_str(request, name) {
            meta.headers.push((name.to_string(), v.into_owned()));
        }
    }
    meta
}

/// Content-MD5 as the hex MD5 the nodes check the body against.
pub fn content_md5(request: &HeaderMap) -> S3Result<Option<String>> {
    let Some(md5) = header_str(request, "content-md5") else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(md5.trim().as_bytes())
        .map_err(|_| s3_error!(InvalidDigest))?;
    if raw.len() != 16 {
        return Err(s3_error!(InvalidDigest));
    }
    Ok(Some(hex::encode(raw)))
}

/// Why a request body broke off, as s3s reported it (a payload hash or a
/// chunk signature that does not match), so the client gets that error
/// rather than a generic one.
pub type BodyError = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// A request body from s3s (signatures and aws-chunked framing checked as
/// it streams) as the proxy's body type.
pub fn blob_body(blob: Option<StreamingBlob>) -> (Body, BodyError) {
    let slot: BodyError = Default::default();
    let body = match blob {
        None => service_kit::http_util::empty(),
        Some(b) => {
            let seen = slot.clone();
            let frames = b.map(move |r| {
                r.map(Frame::data)
                    .map_err(|e| -> service_kit::http_util::BoxError {
                        let text = e.to_string();
                        *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
                        text.into()
                    })
            });
            BodyExt::boxed_unsync(StreamBody::new(frames))
        }
    };
    (body, slot)
}

fn body_error(slot: &BodyError) -> Option<s3s::S3Error> {
    let text = slot.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
    Some(
        if text.contains("Sha256Mismatch") || text.contains("InvalidChecksum") {
            s3_error!(
                BadDigest,
                "The payload does not match its x-amz-content-sha256"
            )
        } else if text.contains("Signature") {
            s3_error!(SignatureDoesNotMatch)
        } else {
            s3_error!(IncompleteBody)
        },
    )
}

/// A proxy body as an s3s blob. `StreamingBlob` wants a `Sync` stream, so
/// the body is pumped through a channel by a task.
pub fn body_blob(body: Body) -> StreamingBlob {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let item = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue,
                },
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    StreamingBlob::wrap(ReceiverStream(rx))
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_util::Stream for ReceiverStream {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "empty key"));
    }
    if key.len() > 1024 {
        return Err(s3_error!(KeyTooLongError));
    }
    Ok(())
}

/// Stores a body; a body that broke off reports why (a signature or a
/// payload hash that does not match) rather than the store's error. A
/// write that lost a race to a newer one succeeds, as in S3, where the
/// last writer wins and every writer hears 200.
pub async fn store(
    objects: &Objects,
    req: PutObject,
    broke: Option<&BodyError>,
) -> S3Result<Written> {
    check_key(&req.path.object)?;
    match objects.put(req).await {
        Ok(w) => Ok(w),
        Err(ObjectError::Superseded { etag: Some(etag) }) => Ok(Written {
            etag,
            last_modified: service_kit::timestamp::Timestamp::now(),
            checksum: None,
            version_id: None,
        }),
        Err(e) => Err(broke
            .and_then(body_error)
            .unwrap_or_else(|| s3s::S3Error::from(e))),
    }
}

/// The storage class a write names: this store has only STANDARD, and
/// refuses another as Swift's s3api does (S3 refuses a class it does not
/// know; storing an object in a class other than the one asked for would
/// report a durability or price it does not have).
pub fn check_storage_class(class: Option<&StorageClass>) -> S3Result<()> {
    match class {
        Some(c) if c.as_str() != StorageClass::STANDARD => Err(s3_error!(
            InvalidStorageClass,
            "The storage class you specified is not valid: this store has only STANDARD"
        )),
        _ => Ok(()),
    }
}

pub async fn put(
    objects: &Objects,
    account: &str,
    input: PutObjectInput,
    request: &HeaderMap,
    trailers: Option<&TrailingHeaders>,
) -> S3Result<PutObjectOutput> {
    check_storage_class(input.storage_class.as_ref())?;
    let mut meta = write_meta(
        input.content_type.as_deref(),
        input.metadata.as_ref(),
        request,
    );
    if let Some(t) = &input.tagging {
        let kept = tagging::encode_tags(&tagging::parse(t))?;
        meta.system.push((tagging::KEY.into(), kept));
    }
    let canned = input.acl.as_ref().map(|a| a.as_str());
    if let Some(c) = acl::Canned::of_request(canned, acl::Granting::has_grants(&input))? {
        meta.system.push(acl::object_entry(c));
    }
    object_lock::on_write(
        objects,
        account,
        &input.bucket,
        object_lock::requested!(input),
        &mut meta,
    )
    .await?;
    let check = checksum::requested(request, trailers, Algorithm::Crc64Nvme)?;
    let sealing = sse::sealing_of!(input)?;
    let sealing = sse::or_bucket_default(objects, account, &input.bucket, sealing).await?;
    let shown = Shown::of_sealing(sealing.as_ref());
    let (body, broke) = blob_body(input.body);
    let path = ObjectPath::new(account, &input.bucket, &input.key);
    let length = input.content_length.map(|n| n.max(0) as u64).unwrap_or(0);
    let tags = tagging::of(&meta);
    let written = store(
        objects,
        PutObject {
            path: path.clone(),
            length: input.content_length.map(|n| n.max(0) as u64),
            meta,
            checksum: Some(check),
            expected_md5: content_md5(request)?,
            condition: write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?,
            sealing,
            at: None,
            body,
        },
        Some(&broke),
    )
    .await?;
    let sums = written_checksum(&written);
    let mut out = PutObjectOutput {
        e_tag: Some(ETag::Strong(written.etag)),
        version_id: written.version_id,
        ..Default::default()
    };
    sse::fill_shown!(out, shown);
    checksum::fill_checksums!(typed out, sums);
    out.expiration = expiration(objects, &path, length, &tags, written.last_modified.secs()).await;
    Ok(out)
}

/// The `x-amz-expiration` a bucket's lifecycle rules give an object.
async fn expiration(
    objects: &Objects,
    path: &ObjectPath,
    size: u64,
    tags: &[(String, String)],
    created: u64,
) -> Option<String> {
    let facts = crate::lifecycle::Facts {
        key: &path.object,
        size,
        tags: Some(tags),
    };
    super::lifecycle::expiration(objects, &path.account, &path.container, &facts, created).await
}

/// What GET and HEAD know of an object for its `x-amz-expiration`.
async fn read_expiration(
    objects: &Objects,
    path: &ObjectPath,
    info: &ObjectInfo,
) -> Option<String> {
    // A range's answer says the whole object's size after the `/`.
    let size = info
        .content_range
        .as_deref()
        .and_then(|r| r.rsplit('/').next()?.parse().ok())
        .unwrap_or(info.length);
    let created = info
        .last_modified
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())?
        .as_secs();
    expiration(objects, path, size, &tagging::of(&info.meta), created).await
}

/// A single write's checksum as output fields (a whole-body checksum).
pub fn written_checksum(w: &Written) -> checksum::Fields {
    checksum::Fields::of(
        w.checksum
            .clone()
            .map(|(a, v)| (a, v, MultipartKind::FullObject)),
    )
}

/// S3's conditional-write headers (PutObject, CompleteMultipartUpload):
/// `If-None-Match` takes only `*`.
pub fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported on writes"
        )),
        (Some(m), None) => Ok(Some(WriteCondition::IfMatch(etag_condition(m)))),
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::IfNoneMatch)),
        (None, Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write takes only *"
        )),
        (None, None) => Ok(None),
    }
}

fn etag_condition(c: &ETagCondition) -> String {
    match c {
        ETagCondition::Any => "*".into(),
        ETagCondition::ETag(e) => e.value().to_string(),
    }
}

pub(super) fn unix_secs(t: &s3s::dto::Timestamp) -> Option<u64> {
    u64::try_from(time::OffsetDateTime::from(t.clone()).unix_timestamp()).ok()
}

/// S3's preconditions as the object layer's.
pub fn conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified: Option<&s3s::dto::Timestamp>,
    if_unmodified: Option<&s3s::dto::Timestamp>,
) -> Conditions {
    Conditions {
        if_match: if_match.map(etag_condition),
        if_none_match: if_none_match.map(etag_condition),
        if_modified_since: if_modified.and_then(unix_secs),
        if_unmodified_since: if_unmodified.and_then(unix_secs),
    }
}

/// S3's range as an RFC 9110 byte-range set.
pub fn range_spec(range: Option<&s3s::dto::Range>) -> Option<String> {
    Some(match range? {
        s3s::dto::Range::Int {
            first,
            last: Some(l),
        } => format!("bytes={first}-{l}"),
        s3s::dto::Range::Int { first, last: None } => format!("bytes={first}-"),
        s3s::dto::Range::Suffix { length } => format!("bytes=-{length}"),
    })
}

/// A HEAD's range, applied to what the HEAD of the whole found (the nodes
/// answer a HEAD whole, as Swift's do; S3 answers with the range's length
/// and `Content-Range`, as Swift's s3api makes it).
fn head_range(info: &mut ObjectInfo, range: Option<&s3s::dto::Range>) -> S3Result<()> {
    let size = info.length;
    match service_kit::range::resolve(range_spec(range).as_deref(), size) {
        Ranges::Parts(p) if p.len() == 1 => {
            let (first, last) = p[0];
            info.length = last - first + 1;
            info.content_range = Some(format!("bytes {first}-{last}/{size}"));
            Ok(())
        }
        Ranges::Unsatisfiable => Err(s3_error!(InvalidRange)),
        Ranges::Whole | Ranges::Parts(_) => Ok(()),
    }
}

/// What GET and HEAD report: the object's S3 ETag (a multipart upload's
/// `md5-of-md5s-N`) and its metadata.
pub(super) fn s3_etag(info: &ObjectInfo) -> String {
    info.meta
        .system("s3-etag")
        .map(str::to_string)
        .unwrap_or_else(|| info.etag.clone())
}

fn user_metadata(info: &ObjectInfo) -> Metadata {
    info.meta.user.iter().cloned().collect::<HashMap<_, _>>()
}

pub(super) async fn read(
    objects: &Objects,
    account: &str,
    bucket: &str,
    req: ReadObject,
) -> S3Result<ObjectRead> {
    check_key(&req.path.object)?;
    match objects.get(req).await {
        Ok(r) => Ok(r),
        Err(ObjectError::NoSuchObject) => {
            bucket::require(objects, account, bucket).await?;
            Err(s3_error!(NoSuchKey))
        }
        Err(ObjectError::Sealed(e)) => Err(sse::open_error(e)),
        Err(e) => Err(e.into()),
    }
}

/// The read a GetObject or HeadObject input asks for (the two inputs share
/// these fields but no type).
macro_rules! read_request {
    ($account:expr, $input:expr, $head:expr) => {
        ReadObject {
            path: ObjectPath::new($account, &$input.bucket, &$input.key),
            head: $head,
            range: range_spec($input.range.as_ref()),
            conditions: conditions(
                $input.if_match.as_ref(),
                $input.if_none_match.as_ref(),
                $input.if_modified_since.as_ref(),
                $input.if_unmodified_since.as_ref(),
            ),
            manifest: false,
            segments_within: None,
            symlink: false,
            version: $input.version_id.clone(),
            customer_key: sse::customer_key_of!($input)?,
            stored_at: None,
            part: part_number($input.part_number, $input.range.as_ref())?,
        }
    };
}

/// GetObject's and HeadObject's `partNumber`, checked as S3 checks it.
fn part_number(n: Option<i32>, range: Option<&s3s::dto::Range>) -> S3Result<Option<u32>> {
    let Some(n) = n else { return Ok(None) };
    if range.is_some() {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    match u32::try_from(n) {
        Ok(n @ 1..=10_000) => Ok(Some(n)),
        _ => Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        )),
    }
}

/// The version a read found (stored versions name theirs).
pub(super) fn version_of(info: &ObjectInfo) -> Option<String> {
    info.meta
        .system(crate::proxy::object_versions::VERSION_ID_KEY)
        .map(str::to_string)
}

/// The `Expires` stored with the object (an HTTP date).
fn stored_expires(info: &ObjectInfo) -> Option<s3s::dto::Timestamp> {
    let v = info.meta.header("expires")?;
    s3s::dto::Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, v.trim()).ok()
}

/// The stored checksum as output fields, when the client asks for it
/// (`x-amz-checksum-mode: ENABLED`) and reads the whole object.
fn checksum_fields(info: &ObjectInfo, mode: Option<&ChecksumMode>) -> checksum::Fields {
    let enabled = mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED));
    if !enabled || info.content_range.is_some() {
        return checksum::Fields::default();
    }
    checksum::Fields::of(checksum::stored(&info.meta))
}

pub async fn get(
    objects: &Objects,
    account: &str,
    input: GetObjectInput,
) -> S3Result<GetObjectOutput> {
    let req = read_request!(account, input, false);
    let r = read(objects, account, &input.bucket, req).await?;
    let info = r.info();
    let sums = checksum_fields(&info, input.checksum_mode.as_ref());
    let stored = |name: &str| info.meta.header(name).map(str::to_string);
    let tags = tagging::of(&info.meta).len();
    let lock = object_lock::shown(&info.meta);
    let mut out = GetObjectOutput {
        tag_count: (tags > 0).then_some(tags as i32),
        body: Some(body_blob(r.body)),
        content_length: Some(info.length as i64),
        content_type: input
            .response_content_type
            .or(info.meta.content_type.clone()),
        content_range: info.content_range.clone(),
        parts_count: info.parts_count.map(|n| n as i32),
        e_tag: Some(ETag::Strong(s3_etag(&info))),
        last_modified: info.last_modified.map(Into::into),
        metadata: Some(user_metadata(&info)),
        accept_ranges: Some("bytes".into()),
        cache_control: input
            .response_cache_control
            .or_else(|| stored("cache-control")),
        content_disposition: input
            .response_content_disposition
            .or_else(|| stored("content-disposition")),
        content_encoding: input
            .response_content_encoding
            .or_else(|| stored("content-encoding")),
        content_language: input
            .response_content_language
            .or_else(|| stored("content-language")),
        expires: input.response_expires.or_else(|| stored_expires(&info)),
        version_id: version_of(&info),
        object_lock_mode: lock.mode,
        object_lock_retain_until_date: lock.until,
        object_lock_legal_hold_status: lock.hold,
        ..Default::default()
    };
    sse::fill_shown!(out, Shown::of_meta(&info.meta));
    checksum::fill_checksums!(typed out, sums);
    if input.version_id.is_none() {
        let path = ObjectPath::new(account, &input.bucket, &input.key);
        out.expiration = read_expiration(objects, &path, &info).await;
    }
    Ok(out)
}

pub async fn head_object(
    objects: &Objects,
    account: &str,
    input: HeadObjectInput,
) -> S3Result<HeadObjectOutput> {
    let req = read_request!(account, input, true);
    let mut info = read(objects, account, &input.bucket, req).await?.info();
    if info.content_range.is_none() {
        head_range(&mut info, input.range.as_ref())?;
    }
    let sums = checksum_fields(&info, input.checksum_mode.as_ref());
    let stored = |name: &str| info.meta.header(name).map(str::to_string);
    let lock = object_lock::shown(&info.meta);
    let mut out = HeadObjectOutput {
        cache_control: stored("cache-control"),
        content_disposition: stored("content-disposition"),
        content_encoding: stored("content-encoding"),
        content_language: stored("content-language"),
        expires: stored_expires(&info),
        content_length: Some(info.length as i64),
        content_type: info.meta.content_type.clone(),
        content_range: info.content_range.clone(),
        parts_count: info.parts_count.map(|n| n as i32),
        e_tag: Some(ETag::Strong(s3_etag(&info))),
        last_modified: info.last_modified.map(Into::into),
        metadata: Some(user_metadata(&info)),
        accept_ranges: Some("bytes".into()),
        version_id: version_of(&info),
        object_lock_mode: lock.mode,
        object_lock_retain_until_date: lock.until,
        object_lock_legal_hold_status: lock.hold,
        ..Default::default()
    };
    sse::fill_shown!(out, Shown::of_meta(&info.meta));
    checksum::fill_checksums!(typed out, sums);
    if input.version_id.is_none() {
        let path = ObjectPath::new(account, &input.bucket, &input.key);
        out.expiration = read_expiration(objects, &path, &info).await;
    }
    Ok(out)
}

/// Deletes a key (a delete marker where versions are kept) or one
/// version of it.
pub async fn delete(
    objects: &Objects,
    account: &str,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    bypass_governance: bool,
) -> S3Result<Deleted> {
    bucket::require(objects, account, bucket).await?;
    let path = ObjectPath::new(account, bucket, key);
    let done = match version {
        Some(v) => objects.delete_version(&path, v, bypass_governance).await,
        None => objects.delete_object(&path).await,
    };
    match done {
        Ok(d) => Ok(d),
        // Deleting a key that does not exist succeeds in S3.
        Err(ObjectError::NoSuchObject | ObjectError::NoSuchVersion) => Ok(Deleted::default()),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_many(
    objects: &Objects,
    account: &str,
    input: DeleteObjectsInput,
) -> S3Result<DeleteObjectsOutput> {
    // S3 takes at most 1000 keys per request.
    if input.delete.objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    bucket::require(objects, account, &input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for o in input.delete.objects {
        let version = o.version_id.as_deref();
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        match delete(objects, account, &input.bucket, &o.key, version, bypass).await {
            Ok(d) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(o.key),
                        version_id: o.version_id.clone(),
                        delete_marker: d.delete_marker.then_some(true),
                        // The marker made, or the one removed by its id (S3
                        // names it either way).
                        delete_marker_version_id: if d.delete_marker {
                            d.version_id.or(o.version_id)
                        } else {
                            None
                        },
                    });
                }
            }
            Err(e) => errors.push(s3s::dto::Error {
                code: Some(e.code().as_str().to_string()),
                key: Some(o.key),
                message: e.message().map(str::to_string),
                version_id: o.version_id,
            }),
        }
    }
    Ok(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    })
}

/// The object a copy source names, in the account.
pub fn copy_source(account: &str, source: &CopySource) -> S3Result<ObjectPath> {
    let CopySource::Bucket { bucket, key, .. } = source else {
        return Err(s3_error!(NotImplemented, "access point copy sources"));
    };
    check_key(key)?;
    Ok(ObjectPath::new(
        account,
        bucket.to_string(),
        key.to_string(),
    ))
}

/// The version a copy source names (`?versionId=`), if any.
pub fn copy_source_version(source: &CopySource) -> Option<String> {
    match source {
        CopySource::Bucket { version_id, .. } => version_id.as_deref().map(str::to_string),
        _ => None,
    }
}

/// Copies an object with S3's errors for a copy: a failed source condition
/// is 412 whichever failed, a missing source a NoSuchKey (or NoSuchBucket).
pub async fn copy_object(objects: &Objects, req: CopyObject) -> S3Result<Written> {
    let from = req.from.clone();
    match objects.copy(req).await {
        Ok(w) => Ok(w),
        Err(ObjectError::NotModified { .. }) => Err(s3_error!(PreconditionFailed)),
        Err(ObjectError::NoSuchObject) => {
            bucket::require(objects, &from.account, &from.container).await?;
            Err(s3_error!(NoSuchKey))
        }
        Err(ObjectError::Sealed(e)) => Err(sse::open_error(e)),
        Err(e) => Err(e.into()),
    }
}

pub async fn copy(
    objects: &Objects,
    account: &str,
    input: CopyObjectInput,
    request: &HeaderMap,
) -> S3Result<CopyObjectOutput> {
    check_storage_class(input.storage_class.as_ref())?;
    let from = copy_source(account, &input.copy_source)?;
    let source_version = copy_source_version(&input.copy_source);
    let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
        None | Some(MetadataDirective::COPY) => false,
        Some(MetadataDirective::REPLACE) => true,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "Unknown metadata directive: {other}"
            ))
        }
    };
    let sealing = sse::sealing_of!(input)?;
    let source_key = sse::customer_key(
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    if from.container == input.bucket
        && from.object == input.key
        && !replace
        && source_version.is_none()
        && sealing.is_none()
    {
        return Err(s3_error!(InvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."));
    }
    check_key(&input.key)?;
    bucket::require(objects, account, &input.bucket).await?;
    let sealing = sse::or_bucket_default(objects, account, &input.bucket, sealing).await?;
    let shown = Shown::of_sealing(sealing.as_ref());
    let (mut meta, keep) = if replace {
        let meta = write_meta(
            input.content_type.as_deref(),
            input.metadata.as_ref(),
            request,
        );
        (meta, KeepFromSource::Nothing)
    } else {
        (ObjectMeta::default(), KeepFromSource::Everything)
    };
    // Tags are copied unless `x-amz-tagging-directive: REPLACE`.
    let replace_tags = input
        .tagging_directive
        .as_ref()
        .is_some_and(|d| d.as_str().eq_ignore_ascii_case("REPLACE"));
    if replace_tags {
        let kept = tagging::encode_tags(&tagging::parse(input.tagging.as_deref().unwrap_or("")))?;
        meta.system.push((tagging::KEY.into(), kept));
    }
    object_lock::on_write(
        objects,
        account,
        &input.bucket,
        object_lock::requested!(input),
        &mut meta,
    )
    .await?;
    let written = copy_object(
        objects,
        CopyObject {
            from,
            to: ObjectPath::new(account, &input.bucket, &input.key),
            conditions: conditions(
                input.copy_source_if_match.as_ref(),
                input.copy_source_if_none_match.as_ref(),
                input.copy_source_if_modified_since.as_ref(),
                input.copy_source_if_unmodified_since.as_ref(),
            ),
            range: None,
            meta,
            keep,
            checksum: Some(checksum::named_algorithm(request)?.unwrap_or(Algorithm::Crc64Nvme)),
            carry_system: if replace_tags {
                Vec::new()
            } else {
                vec![tagging::KEY]
            },
            manifest: false,
            segments_within: None,
            symlink: false,
            source_version: source_version.clone(),
            source_key,
            source_stored_at: None,
            sealing,
        },
    )
    .await?;
    let sums = written_checksum(&written);
    let version_id = written.version_id.clone();
    let mut result = CopyObjectResult {
        e_tag: Some(ETag::Strong(written.etag)),
        last_modified: Some(written.last_modified.to_system_time().into()),
        ..Default::default()
    };
    checksum::fill_checksums!(typed result, sums);
    let mut out = CopyObjectOutput {
        copy_object_result: Some(result),
        version_id,
        copy_source_version_id: source_version,
        ..Default::default()
    };
    sse::fill_shown!(out, shown);
    Ok(out)
}
