//! Objects through S3: the same objects the Swift API serves.

use super::bucket;
use crate::proxy::backend::Path;
use crate::proxy::ProxyState;
use crate::swift;
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use service_kit::http_util::{header_str, set_header, Body};
use std::collections::HashMap;

/// S3's default content type when the client sends none.
const DEFAULT_TYPE: &str = "binary/octet-stream";

/// The headers an object write stores: type, user metadata, checksums.
pub fn write_headers(
    content_type: Option<&str>,
    metadata: Option<&Metadata>,
    request: &HeaderMap,
) -> S3Result<HeaderMap> {
    let mut h = HeaderMap::new();
    set_header(&mut h, "content-type", content_type.unwrap_or(DEFAULT_TYPE));
    for (k, v) in metadata.into_iter().flatten() {
        set_header(
            &mut h,
            &format!("x-object-meta-{}", k.to_ascii_lowercase()),
            v,
        );
    }
    for name in [
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
    ] {
        if let Some(v) = request.get(name) {
            h.insert(http::HeaderName::from_static(name), v.clone());
        }
    }
    // Checksums the client computed are kept and returned (s3s verifies the
    // signed payload; a mismatching Content-MD5 is refused by the nodes).
    for alg in ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"] {
        if let Some(v) = header_str(request, &format!("x-amz-checksum-{alg}")) {
            set_header(&mut h, &format!("x-object-sysmeta-s3-checksum-{alg}"), &v);
        }
    }
    if let Some(md5) = header_str(request, "content-md5") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(md5.trim().as_bytes())
            .map_err(|_| s3_error!(InvalidDigest))?;
        if raw.len() != 16 {
            return Err(s3_error!(InvalidDigest));
        }
        set_header(&mut h, "etag", &hex::encode(raw));
    }
    Ok(h)
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

/// Maps a failed Swift-level write to its S3 error.
fn write_error(status: StatusCode) -> s3s::S3Error {
    match status {
        StatusCode::NOT_FOUND => s3_error!(NoSuchBucket),
        StatusCode::UNPROCESSABLE_ENTITY => s3_error!(BadDigest),
        StatusCode::LENGTH_REQUIRED => s3_error!(MissingContentLength),
        StatusCode::PAYLOAD_TOO_LARGE => s3_error!(EntityTooLarge),
        StatusCode::BAD_REQUEST => s3_error!(MetadataTooLarge),
        StatusCode::PRECONDITION_FAILED => s3_error!(PreconditionFailed),
        _ => s3_error!(ServiceUnavailable),
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

/// Stores a body; returns the ETag.
#[allow(clippy::too_many_arguments)]
pub async fn store(
    state: &ProxyState,
    account: &str,
    bucket: &str,
    key: &str,
    mut headers: HeaderMap,
    length: Option<i64>,
    body: Body,
    broke: Option<&BodyError>,
) -> S3Result<String> {
    check_key(key)?;
    match length {
        Some(n) => set_header(&mut headers, "content-length", &n.to_string()),
        None => set_header(&mut headers, "transfer-encoding", "chunked"),
    }
    let r = swift::put_object_with_sysmeta(
        state,
        &headers,
        headers.clone(),
        body,
        account,
        bucket,
        key,
        None,
    )
    .await;
    if r.status() != StatusCode::CREATED {
        if let Some(e) = broke.and_then(body_error) {
            return Err(e);
        }
        return Err(write_error(r.status()));
    }
    Ok(header_str(r.headers(), "etag")
        .unwrap_or_default()
        .trim_matches('"')
        .to_string())
}

pub async fn put(
    state: &ProxyState,
    account: &str,
    input: PutObjectInput,
    request: &HeaderMap,
) -> S3Result<PutObjectOutput> {
    let mut headers = write_headers(
        input.content_type.as_deref(),
        input.metadata.as_ref(),
        request,
    )?;
    // s3s gathers checksums from headers or from the aws-chunked trailer.
    for (alg, value) in [
        ("crc32", &input.checksum_crc32),
        ("crc32c", &input.checksum_crc32c),
        ("sha1", &input.checksum_sha1),
        ("sha256", &input.checksum_sha256),
    ] {
        if let Some(v) = value {
            set_header(
                &mut headers,
                &format!("x-object-sysmeta-s3-checksum-{alg}"),
                v,
            );
        }
    }
    if let Some(cond) = &input.if_none_match {
        if matches!(cond, ETagCondition::Any)
            && head(state, account, &input.bucket, &input.key)
                .await
                .is_ok()
        {
            return Err(s3_error!(PreconditionFailed));
        }
    }
    let (body, broke) = blob_body(input.body);
    let etag = store(
        state,
        account,
        &input.bucket,
        &input.key,
        headers,
        input.content_length,
        body,
        Some(&broke),
    )
    .await?;
    Ok(PutObjectOutput {
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: input.checksum_crc32,
        checksum_crc32c: input.checksum_crc32c,
        checksum_sha1: input.checksum_sha1,
        checksum_sha256: input.checksum_sha256,
        ..Default::default()
    })
}

fn etag_header(c: &ETagCondition) -> String {
    match c {
        ETagCondition::Any => "*".into(),
        ETagCondition::ETag(e) => format!("\"{}\"", e.value()),
    }
}

fn http_date(t: &s3s::dto::Timestamp) -> String {
    let mut buf = Vec::new();
    let _ = t.format(s3s::dto::TimestampFormat::HttpDate, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Request headers for a read: range and preconditions, as HTTP headers.
#[allow(clippy::too_many_arguments)]
fn read_headers(
    range: Option<&s3s::dto::Range>,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified: Option<&s3s::dto::Timestamp>,
    if_unmodified: Option<&s3s::dto::Timestamp>,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(r) = range {
        let v = match r {
            s3s::dto::Range::Int {
                first,
                last: Some(l),
            } => format!("bytes={first}-{l}"),
            s3s::dto::Range::Int { first, last: None } => format!("bytes={first}-"),
            s3s::dto::Range::Suffix { length } => format!("bytes=-{length}"),
        };
        set_header(&mut h, "range", &v);
    }
    if let Some(c) = if_match {
        set_header(&mut h, "if-match", &etag_header(c));
    }
    if let Some(c) = if_none_match {
        set_header(&mut h, "if-none-match", &etag_header(c));
    }
    if let Some(t) = if_modified {
        set_header(&mut h, "if-modified-since", &http_date(t));
    }
    if let Some(t) = if_unmodified {
        set_header(&mut h, "if-unmodified-since", &http_date(t));
    }
    h
}

/// What GET and HEAD report about an object, from the Swift-level response.
pub struct Described {
    pub etag: String,
    pub length: i64,
    pub content_type: Option<String>,
    pub last_modified: Option<s3s::dto::Timestamp>,
    pub metadata: Metadata,
    pub content_range: Option<String>,
    pub headers: HeaderMap,
}

fn describe(h: &HeaderMap) -> Described {
    let mut metadata: Metadata = HashMap::new();
    for (k, v) in h {
        if let Some(m) = k.as_str().strip_prefix("x-object-meta-") {
            metadata.insert(
                m.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            );
        }
    }
    let etag = header_str(h, "x-object-sysmeta-s3-etag")
        .or_else(|| header_str(h, "etag"))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    Described {
        etag,
        length: header_str(h, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        content_type: header_str(h, "content-type").map(|c| c.into_owned()),
        last_modified: header_str(h, "last-modified")
            .and_then(|d| httpdate::parse_http_date(&d).ok())
            .map(Into::into),
        metadata,
        content_range: header_str(h, "content-range").map(|c| c.into_owned()),
        headers: h.clone(),
    }
}

async fn read(
    state: &ProxyState,
    method: &Method,
    account: &str,
    bucket: &str,
    key: &str,
    headers: HeaderMap,
) -> S3Result<Response<Body>> {
    check_key(key)?;
    let r = swift::read_object(
        state,
        method,
        &headers,
        &Path::Object(account.into(), bucket.into(), key.into()),
        false,
    )
    .await;
    match r.status() {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(r),
        StatusCode::NOT_FOUND => {
            bucket::require(state, account, bucket).await?;
            Err(s3_error!(NoSuchKey))
        }
        StatusCode::NOT_MODIFIED => Err(s3_error!(NotModified)),
        StatusCode::PRECONDITION_FAILED => Err(s3_error!(PreconditionFailed)),
        StatusCode::RANGE_NOT_SATISFIABLE => Err(s3_error!(InvalidRange)),
        _ => Err(s3_error!(ServiceUnavailable)),
    }
}

pub async fn head(
    state: &ProxyState,
    account: &str,
    bucket: &str,
    key: &str,
) -> S3Result<Described> {
    let r = read(state, &Method::HEAD, account, bucket, key, HeaderMap::new()).await?;
    Ok(describe(r.headers()))
}

fn checksums(h: &HeaderMap) -> [Option<String>; 4] {
    ["crc32", "crc32c", "sha1", "sha256"].map(|a| {
        header_str(h, &format!("x-object-sysmeta-s3-checksum-{a}")).map(|v| v.into_owned())
    })
}

pub async fn get(
    state: &ProxyState,
    account: &str,
    input: GetObjectInput,
) -> S3Result<GetObjectOutput> {
    let h = read_headers(
        input.range.as_ref(),
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
    );
    let r = read(state, &Method::GET, account, &input.bucket, &input.key, h).await?;
    let (parts, body) = r.into_parts();
    let d = describe(&parts.headers);
    let [crc32, crc32c, sha1, sha256] = checksums(&parts.headers);
    let ranged = d.content_range.is_some();
    Ok(GetObjectOutput {
        body: Some(body_blob(body)),
        content_length: Some(d.length),
        content_type: input.response_content_type.or(d.content_type),
        content_range: d.content_range,
        e_tag: Some(ETag::Strong(d.etag)),
        last_modified: d.last_modified,
        metadata: Some(d.metadata),
        accept_ranges: Some("bytes".into()),
        cache_control: input
            .response_cache_control
            .or_else(|| header_str(&d.headers, "cache-control").map(|v| v.into_owned())),
        content_disposition: input
            .response_content_disposition
            .or_else(|| header_str(&d.headers, "content-disposition").map(|v| v.into_owned())),
        content_encoding: input
            .response_content_encoding
            .or_else(|| header_str(&d.headers, "content-encoding").map(|v| v.into_owned())),
        content_language: input
            .response_content_language
            .or_else(|| header_str(&d.headers, "content-language").map(|v| v.into_owned())),
        expires: input.response_expires,
        checksum_crc32: crc32.filter(|_| !ranged),
        checksum_crc32c: crc32c.filter(|_| !ranged),
        checksum_sha1: sha1.filter(|_| !ranged),
        checksum_sha256: sha256.filter(|_| !ranged),
        ..Default::default()
    })
}

pub async fn head_object(
    state: &ProxyState,
    account: &str,
    input: HeadObjectInput,
) -> S3Result<HeadObjectOutput> {
    let h = read_headers(
        input.range.as_ref(),
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
    );
    let r = read(state, &Method::HEAD, account, &input.bucket, &input.key, h).await?;
    let d = describe(r.headers());
    let [crc32, crc32c, sha1, sha256] = checksums(r.headers());
    Ok(HeadObjectOutput {
        content_length: Some(d.length),
        content_type: d.content_type,
        e_tag: Some(ETag::Strong(d.etag)),
        last_modified: d.last_modified,
        metadata: Some(d.metadata),
        accept_ranges: Some("bytes".into()),
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        ..Default::default()
    })
}

pub async fn delete(state: &ProxyState, account: &str, bucket: &str, key: &str) -> S3Result<()> {
    bucket::require(state, account, bucket).await?;
    match swift::delete_object(state, account, bucket, key).await {
        // Deleting a key that does not exist succeeds in S3.
        s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
        _ => Err(s3_error!(ServiceUnavailable)),
    }
}

pub async fn delete_many(
    state: &ProxyState,
    account: &str,
    input: DeleteObjectsInput,
) -> S3Result<DeleteObjectsOutput> {
    bucket::require(state, account, &input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for o in input.delete.objects {
        match delete(state, account, &input.bucket, &o.key).await {
            Ok(()) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(o.key),
                        ..Default::default()
                    });
                }
            }
            Err(e) => errors.push(s3s::dto::Error {
                code: Some(e.code().as_str().to_string()),
                key: Some(o.key),
                message: e.message().map(str::to_string),
                version_id: None,
            }),
        }
    }
    Ok(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    })
}

pub async fn copy(
    state: &ProxyState,
    account: &str,
    input: CopyObjectInput,
    request: &HeaderMap,
) -> S3Result<CopyObjectOutput> {
    let CopySource::Bucket {
        bucket: sb,
        key: sk,
        ..
    } = &input.copy_source
    else {
        return Err(s3_error!(NotImplemented, "access point copy sources"));
    };
    let (sb, sk) = (sb.to_string(), sk.to_string());
    let cond = read_headers(
        None,
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    );
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if sb == input.bucket && sk == input.key && !replace {
        return Err(s3_error!(InvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."));
    }
    bucket::require(state, account, &input.bucket).await?;
    let src = read(state, &Method::GET, account, &sb, &sk, cond)
        .await
        .map_err(|e| {
            if *e.code() == s3s::S3ErrorCode::NotModified {
                s3_error!(PreconditionFailed)
            } else {
                e
            }
        })?;
    let (parts, body) = src.into_parts();
    let d = describe(&parts.headers);
    let headers = if replace {
        write_headers(
            input.content_type.as_deref(),
            input.metadata.as_ref(),
            request,
        )?
    } else {
        write_headers(d.content_type.as_deref(), Some(&d.metadata), &parts.headers)?
    };
    let etag = store(
        state,
        account,
        &input.bucket,
        &input.key,
        headers,
        Some(d.length),
        body,
        None,
    )
    .await?;
    Ok(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}
