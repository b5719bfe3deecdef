//! Multipart uploads, stored as Swift's s3api stores them: the parts are
//! ordinary objects in the bucket's `<bucket>+segments` container (so they
//! are replicated like any object), an upload is a marker object there
//! holding the future object's headers, and completing an upload writes a
//! Static Large Object manifest over the parts, copying no data.

use super::{bucket, object};
use crate::proxy::backend::Path;
use crate::proxy::ProxyState;
use crate::swift::{self, large_objects};
use http::{HeaderMap, Method, StatusCode};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use service_kit::http_util::{header_str, set_header};
use service_kit::timestamp::Timestamp;

/// Every part but the last must be at least this big.
const MIN_PART_SIZE: i64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;

pub fn segments_container(bucket: &str) -> String {
    format!("{bucket}+segments")
}

fn marker_name(key: &str, upload_id: &str) -> String {
    format!("{key}/{upload_id}")
}

fn part_name(key: &str, upload_id: &str, part: i32) -> String {
    format!("{key}/{upload_id}/{part:05}")
}

/// The upload's marker: its headers are the final object's (type, metadata).
async fn upload_headers(
    state: &ProxyState,
    account: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<HeaderMap> {
    if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(s3_error!(NoSuchUpload));
    }
    let r = state
        .backend
        .head_newest(
            &Path::Object(
                account.into(),
                segments_container(bucket),
                marker_name(key, upload_id),
            ),
            HeaderMap::new(),
        )
        .await;
    match r.status() {
        s if s.is_success() => Ok(r.headers().clone()),
        StatusCode::NOT_FOUND => {
            bucket::require(state, account, bucket).await?;
            Err(s3_error!(NoSuchUpload))
        }
        _ => Err(s3_error!(ServiceUnavailable)),
    }
}

pub async fn create(
    state: &ProxyState,
    account: &str,
    input: CreateMultipartUploadInput,
    request: &HeaderMap,
) -> S3Result<CreateMultipartUploadOutput> {
    bucket::require(state, account, &input.bucket).await?;
    bucket::ensure_container(state, account, &segments_container(&input.bucket)).await?;
    let upload_id = hex::encode(service_kit::ids::rand_bytes::<16>());
    let mut h = object::write_headers(
        input.content_type.as_deref(),
        input.metadata.as_ref(),
        request,
    )?;
    h.remove("etag");
    object::store(
        state,
        account,
        &segments_container(&input.bucket),
        &marker_name(&input.key, &upload_id),
        h,
        Some(0),
        service_kit::http_util::empty(),
        None,
    )
    .await?;
    Ok(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        ..Default::default()
    })
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

pub async fn upload_part(
    state: &ProxyState,
    account: &str,
    input: UploadPartInput,
    request: &HeaderMap,
) -> S3Result<UploadPartOutput> {
    check_part_number(input.part_number)?;
    upload_headers(state, account, &input.bucket, &input.key, &input.upload_id).await?;
    let h = object::write_headers(Some("application/octet-stream"), None, request)?;
    let name = part_name(&input.key, &input.upload_id, input.part_number);
    let (body, broke) = object::blob_body(input.body);
    let etag = object::store(
        state,
        account,
        &segments_container(&input.bucket),
        &name,
        h,
        input.content_length,
        body,
        Some(&broke),
    )
    .await?;
    Ok(UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        ..Default::default()
    })
}

pub async fn upload_part_copy(
    state: &ProxyState,
    account: &str,
    input: UploadPartCopyInput,
) -> S3Result<UploadPartCopyOutput> {
    check_part_number(input.part_number)?;
    upload_headers(state, account, &input.bucket, &input.key, &input.upload_id).await?;
    let CopySource::Bucket {
        bucket: sb,
        key: sk,
        ..
    } = &input.copy_source
    else {
        return Err(s3_error!(NotImplemented, "access point copy sources"));
    };
    let mut h = HeaderMap::new();
    if let Some(r) = &input.copy_source_range {
        set_header(&mut h, "range", r);
    }
    for (name, value) in [
        ("if-match", input.copy_source_if_match.as_ref()),
        ("if-none-match", input.copy_source_if_none_match.as_ref()),
    ] {
        if let Some(v) = value {
            let text = match v {
                ETagCondition::Any => "*".to_string(),
                ETagCondition::ETag(e) => format!("\"{}\"", e.value()),
            };
            set_header(&mut h, name, &text);
        }
    }
    let src = swift::read_object(
        state,
        &Method::GET,
        &h,
        &Path::Object(account.into(), sb.to_string(), sk.to_string()),
        false,
    )
    .await;
    match src.status() {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
        StatusCode::NOT_FOUND => return Err(s3_error!(NoSuchKey)),
        StatusCode::RANGE_NOT_SATISFIABLE => return Err(s3_error!(InvalidRange)),
        StatusCode::PRECONDITION_FAILED | StatusCode::NOT_MODIFIED => {
            return Err(s3_error!(PreconditionFailed))
        }
        _ => return Err(s3_error!(ServiceUnavailable)),
    }
    let length: Option<i64> =
        header_str(src.headers(), "content-length").and_then(|v| v.parse().ok());
    let mut ph = HeaderMap::new();
    set_header(&mut ph, "content-type", "application/octet-stream");
    let name = part_name(&input.key, &input.upload_id, input.part_number);
    let etag = object::store(
        state,
        account,
        &segments_container(&input.bucket),
        &name,
        ph,
        length,
        src.into_body(),
        None,
    )
    .await?;
    Ok(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// One part's (etag, size), asked of its replicas.
async fn head_part(
    state: &ProxyState,
    account: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    n: i32,
) -> S3Result<Option<(String, i64)>> {
    let path = Path::Object(
        account.into(),
        segments_container(bucket),
        part_name(key, upload_id, n),
    );
    let r = state.backend.head_newest(&path, HeaderMap::new()).await;
    match r.status() {
        s if s.is_success() => {
            let etag = header_str(r.headers(), "etag")
                .unwrap_or_default()
                .trim_matches('"')
                .to_string();
            let size = header_str(r.headers(), "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Ok(Some((etag, size)))
        }
        StatusCode::NOT_FOUND => Ok(None),
        _ => Err(s3_error!(ServiceUnavailable)),
    }
}

/// The parts stored so far: (number, etag, size, modified).
async fn stored_parts(
    state: &ProxyState,
    account: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<Vec<(i32, String, i64, Timestamp)>> {
    let prefix = format!("{}/", marker_name(key, upload_id));
    let mut out = Vec::new();
    let mut marker = String::new();
    loop {
        let q = format!(
            "prefix={}&marker={}",
            bucket::enc(&prefix),
            bucket::enc(&marker)
        );
        let page = bucket::listing_page(
            state,
            Path::Container(account.into(), segments_container(bucket)),
            &q,
        )
        .await?
        .unwrap_or_default();
        if page.is_empty() {
            return Ok(out);
        }
        for e in &page {
            let name = e["name"].as_str().unwrap_or_default();
            marker = name.to_string();
            if let Some(n) = name
                .strip_prefix(&prefix)
                .and_then(|n| n.parse::<i32>().ok())
            {
                let modified = e["last_modified"]
                    .as_str()
                    .and_then(Timestamp::from_iso8601)
                    .unwrap_or_default();
                out.push((
                    n,
                    e["hash"].as_str().unwrap_or_default().to_string(),
                    e["bytes"].as_i64().unwrap_or(0),
                    modified,
                ));
            }
        }
    }
}

pub async fn list_parts(
    state: &ProxyState,
    account: &str,
    input: ListPartsInput,
) -> S3Result<ListPartsOutput> {
    upload_headers(state, account, &input.bucket, &input.key, &input.upload_id).await?;
    let after = input.part_number_marker.unwrap_or(0);
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let all: Vec<_> = stored_parts(state, account, &input.bucket, &input.key, &input.upload_id)
        .await?
        .into_iter()
        .filter(|p| p.0 > after)
        .collect();
    let truncated = all.len() > max;
    let parts: Vec<Part> = all
        .into_iter()
        .take(max)
        .map(|(n, etag, size, modified)| Part {
            part_number: Some(n),
            e_tag: Some(ETag::Strong(etag)),
            size: Some(size),
            last_modified: Some(modified.to_system_time().into()),
            ..Default::default()
        })
        .collect();
    Ok(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: if truncated {
            parts.last().and_then(|p| p.part_number)
        } else {
            None
        },
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: Some(parts),
        ..Default::default()
    })
}

pub async fn complete(
    state: &ProxyState,
    account: &str,
    input: CompleteMultipartUploadInput,
) -> S3Result<CompleteMultipartUploadOutput> {
    let marker_headers =
        upload_headers(state, account, &input.bucket, &input.key, &input.upload_id).await?;
    let requested = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if requested.is_empty() {
        return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
    }
    let stored = stored_parts(state, account, &input.bucket, &input.key, &input.upload_id).await?;
    let mut segments = Vec::with_capacity(requested.len());
    let mut md5_of_md5s = Md5::new();
    let mut previous = 0;
    for (i, p) in requested.iter().enumerate() {
        let n = p.part_number.ok_or_else(|| s3_error!(InvalidPart))?;
        if n <= previous {
            return Err(s3_error!(InvalidPartOrder));
        }
        previous = n;
        // Each named part is read back from its replicas rather than from
        // the listing, which may lag behind the uploads.
        let (etag, size) = head_part(
            state,
            account,
            &input.bucket,
            &input.key,
            &input.upload_id,
            n,
        )
        .await?
        .ok_or_else(|| s3_error!(InvalidPart))?;
        let (etag, size) = (&etag, &size);
        if p.e_tag
            .as_ref()
            .is_some_and(|e| e.value().trim_matches('"') != etag)
        {
            return Err(s3_error!(InvalidPart));
        }
        if *size < MIN_PART_SIZE && i + 1 < requested.len() {
            return Err(s3_error!(EntityTooSmall));
        }
        md5_of_md5s.update(hex::decode(etag).map_err(|_| s3_error!(InternalError))?);
        segments.push(large_objects::Segment {
            name: format!(
                "/{}/{}",
                segments_container(&input.bucket),
                part_name(&input.key, &input.upload_id, n)
            ),
            hash: etag.clone(),
            bytes: *size as u64,
            content_type: "application/octet-stream".into(),
            last_modified: String::new(),
        });
    }
    let s3_etag = format!(
        "{}-{}",
        hex::encode(md5_of_md5s.finalize()),
        requested.len()
    );
    let mut h = HeaderMap::new();
    for (k, v) in &marker_headers {
        let n = k.as_str();
        if n == "content-type"
            || n.starts_with("x-object-meta-")
            || n.starts_with("x-object-sysmeta-s3-checksum")
            || matches!(
                n,
                "content-encoding"
                    | "content-disposition"
                    | "content-language"
                    | "cache-control"
                    | "expires"
            )
        {
            h.insert(k.clone(), v.clone());
        }
    }
    set_header(&mut h, "x-object-sysmeta-s3-etag", &s3_etag);
    if !swift::container_exists(state, account, &input.bucket).await {
        return Err(s3_error!(NoSuchBucket));
    }
    large_objects::store_manifest(state, h, &segments, account, &input.bucket, &input.key)
        .await
        .map_err(|_| s3_error!(ServiceUnavailable))?;
    // The upload is over; parts not named in the manifest are garbage.
    let used: std::collections::HashSet<i32> =
        requested.iter().filter_map(|p| p.part_number).collect();
    let container = segments_container(&input.bucket);
    for (n, ..) in stored.iter().filter(|p| !used.contains(&p.0)) {
        swift::delete_object(
            state,
            account,
            &container,
            &part_name(&input.key, &input.upload_id, *n),
        )
        .await;
    }
    swift::delete_object(
        state,
        account,
        &container,
        &marker_name(&input.key, &input.upload_id),
    )
    .await;
    Ok(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(s3_etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        ..Default::default()
    })
}

pub async fn abort(
    state: &ProxyState,
    account: &str,
    input: AbortMultipartUploadInput,
) -> S3Result<AbortMultipartUploadOutput> {
    upload_headers(state, account, &input.bucket, &input.key, &input.upload_id).await?;
    let container = segments_container(&input.bucket);
    for (n, ..) in stored_parts(state, account, &input.bucket, &input.key, &input.upload_id).await?
    {
        swift::delete_object(
            state,
            account,
            &container,
            &part_name(&input.key, &input.upload_id, n),
        )
        .await;
    }
    swift::delete_object(
        state,
        account,
        &container,
        &marker_name(&input.key, &input.upload_id),
    )
    .await;
    Ok(AbortMultipartUploadOutput::default())
}

/// A marker's name is `<key>/<32 hex upload id>`.
fn parse_marker(name: &str) -> Option<(&str, &str)> {
    let (key, id) = name.rsplit_once('/')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some((key, id))
}

pub async fn list_uploads(
    state: &ProxyState,
    account: &str,
    input: ListMultipartUploadsInput,
) -> S3Result<ListMultipartUploadsOutput> {
    bucket::require(state, account, &input.bucket).await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let mut uploads = Vec::new();
    let mut marker = input.key_marker.clone().unwrap_or_default();
    let mut truncated = false;
    'pages: loop {
        let q = format!(
            "prefix={}&marker={}",
            bucket::enc(&prefix),
            bucket::enc(&marker)
        );
        let page = bucket::listing_page(
            state,
            Path::Container(account.into(), segments_container(&input.bucket)),
            &q,
        )
        .await?
        .unwrap_or_default();
        if page.is_empty() {
            break;
        }
        for e in &page {
            let name = e["name"].as_str().unwrap_or_default();
            marker = name.to_string();
            if let Some((key, id)) = parse_marker(name) {
                if uploads.len() == max {
                    truncated = true;
                    break 'pages;
                }
                let initiated = e["last_modified"]
                    .as_str()
                    .and_then(Timestamp::from_iso8601)
                    .unwrap_or_default();
                uploads.push(MultipartUpload {
                    key: Some(key.to_string()),
                    upload_id: Some(id.to_string()),
                    initiated: Some(initiated.to_system_time().into()),
                    ..Default::default()
                });
            }
        }
    }
    Ok(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: if truncated {
            uploads.last().and_then(|u| u.key.clone())
        } else {
            None
        },
        next_upload_id_marker: if truncated {
            uploads.last().and_then(|u| u.upload_id.clone())
        } else {
            None
        },
        uploads: Some(uploads),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_marker(&marker_name("a/b", id)), Some(("a/b", id)));
        assert_eq!(parse_marker(&part_name("a/b", id, 7)), None);
        assert_eq!(part_name("k", id, 7), format!("k/{id}/00007"));
    }
}
