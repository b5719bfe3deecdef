//! Multipart uploads, stored as Swift's s3api stores them: the parts are
//! ordinary objects in the bucket's `<bucket>+segments` container (so they
//! are replicated like any object), an upload is a marker object there
//! holding the future object's metadata, and completing an upload writes a
//! static large object over the parts ([`Objects::put_segments`]), copying
//! no data.

use super::{bucket, object};
use crate::proxy::containers::{ListQuery, ListTarget};
use crate::proxy::objects::{
    CopyObject, KeepFromSource, ObjectError, ObjectMeta, ObjectPath, Objects, PutObject,
};
use crate::proxy::segments::Segment;
use crate::records::ListingEntry;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use service_kit::http_util::{empty, header_str};
use service_kit::timestamp::Timestamp;

/// Every part but the last must be at least this big.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
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

/// One multipart upload: where its marker and parts are.
struct Upload<'a> {
    account: &'a str,
    bucket: &'a str,
    key: &'a str,
    id: &'a str,
}

impl Upload<'_> {
    fn marker(&self) -> ObjectPath {
        ObjectPath::new(
            self.account,
            segments_container(self.bucket),
            marker_name(self.key, self.id),
        )
    }

    fn part(&self, n: i32) -> ObjectPath {
        ObjectPath::new(
            self.account,
            segments_container(self.bucket),
            part_name(self.key, self.id, n),
        )
    }

    /// The marker's metadata (the final object's), or NoSuchUpload.
    async fn meta(&self, objects: &Objects) -> S3Result<ObjectMeta> {
        if self.id.len() != 32 || !self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(s3_error!(NoSuchUpload));
        }
        match objects.head_newest(&self.marker()).await {
            Ok(h) => Ok(ObjectMeta::from_stored(&h)),
            Err(ObjectError::NoSuchObject) => {
                bucket::require(objects, self.account, self.bucket).await?;
                Err(s3_error!(NoSuchUpload))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `parts`, then the marker. A part left behind by a failed
    /// delete is only garbage: nothing refers to it.
    async fn end(&self, objects: &Objects, parts: impl IntoIterator<Item = StoredPart>) {
        for part in parts {
            let _ = objects.delete(&self.part(part.number)).await;
        }
        let _ = objects.delete(&self.marker()).await;
    }
}

/// The upload an input names.
macro_rules! upload {
    ($account:expr, $input:expr) => {
        Upload {
            account: $account,
            bucket: &$input.bucket,
            key: &$input.key,
            id: &$input.upload_id,
        }
    };
}

pub async fn create(
    objects: &Objects,
    account: &str,
    input: CreateMultipartUploadInput,
    request: &http::HeaderMap,
) -> S3Result<CreateMultipartUploadOutput> {
    bucket::require(objects, account, &input.bucket).await?;
    bucket::ensure_container(objects, account, &segments_container(&input.bucket)).await?;
    let upload_id = hex::encode(service_kit::ids::rand_bytes::<16>());
    let meta = object::write_meta(
        input.content_type.as_deref(),
        input.metadata.as_ref(),
        request,
    );
    object::store(
        objects,
        PutObject {
            path: Upload {
                account,
                bucket: &input.bucket,
                key: &input.key,
                id: &upload_id,
            }
            .marker(),
            length: Some(0),
            meta,
            checksums: object::header_checksums(request),
            expected_md5: None,
            if_none_match: false,
            body: empty(),
        },
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

/// A part's metadata: the final object's comes from the marker.
fn part_meta() -> ObjectMeta {
    ObjectMeta {
        content_type: Some("application/octet-stream".into()),
        ..Default::default()
    }
}

pub async fn upload_part(
    objects: &Objects,
    account: &str,
    input: UploadPartInput,
    request: &http::HeaderMap,
) -> S3Result<UploadPartOutput> {
    check_part_number(input.part_number)?;
    upload!(account, input).meta(objects).await?;
    let (body, broke) = object::blob_body(input.body);
    let written = object::store(
        objects,
        PutObject {
            path: upload!(account, input).part(input.part_number),
            length: input.content_length.map(|n| n.max(0) as u64),
            meta: part_meta(),
            checksums: object::header_checksums(request),
            expected_md5: object::content_md5(request)?,
            if_none_match: false,
            body,
        },
        Some(&broke),
    )
    .await?;
    Ok(UploadPartOutput {
        e_tag: Some(ETag::Strong(written.etag)),
        ..Default::default()
    })
}

pub async fn upload_part_copy(
    objects: &Objects,
    account: &str,
    input: UploadPartCopyInput,
) -> S3Result<UploadPartCopyOutput> {
    check_part_number(input.part_number)?;
    upload!(account, input).meta(objects).await?;
    let written = object::copy_object(
        objects,
        CopyObject {
            from: object::copy_source(account, &input.copy_source)?,
            to: upload!(account, input).part(input.part_number),
            conditions: object::conditions(
                input.copy_source_if_match.as_ref(),
                input.copy_source_if_none_match.as_ref(),
                None,
                None,
            ),
            range: input.copy_source_range.clone(),
            meta: part_meta(),
            keep: KeepFromSource::Nothing,
        },
    )
    .await?;
    Ok(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(written.etag)),
            last_modified: Some(written.last_modified.to_system_time().into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// One part's (etag, size), asked of its replicas.
async fn head_part(objects: &Objects, path: &ObjectPath) -> S3Result<Option<(String, u64)>> {
    match objects.head_newest(path).await {
        Ok(h) => {
            let etag = header_str(&h, "etag")
                .unwrap_or_default()
                .trim_matches('"')
                .to_string();
            let size = header_str(&h, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Ok(Some((etag, size)))
        }
        Err(ObjectError::NoSuchObject) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A part as the listing shows it.
struct StoredPart {
    number: i32,
    etag: String,
    size: u64,
    modified: Timestamp,
}

/// The parts stored so far, in order.
async fn stored_parts(objects: &Objects, upload: &Upload<'_>) -> S3Result<Vec<StoredPart>> {
    let prefix = format!("{}/", marker_name(upload.key, upload.id));
    let query = ListQuery {
        prefix: prefix.clone(),
        ..Default::default()
    };
    let target = ListTarget::Container(upload.account.into(), segments_container(upload.bucket));
    let entries = match objects.list_all(&target, query, usize::MAX).await {
        Ok(e) => e,
        Err(ObjectError::NoSuchContainer) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(entries
        .into_iter()
        .filter_map(|e| match e {
            ListingEntry::Object {
                name,
                hash,
                bytes,
                last_modified,
                ..
            } => Some(StoredPart {
                number: name.strip_prefix(&prefix)?.parse().ok()?,
                etag: hash,
                size: bytes,
                modified: Timestamp::from_iso8601(&last_modified).unwrap_or_default(),
            }),
            _ => None,
        })
        .collect())
}

pub async fn list_parts(
    objects: &Objects,
    account: &str,
    input: ListPartsInput,
) -> S3Result<ListPartsOutput> {
    upload!(account, input).meta(objects).await?;
    let after = input.part_number_marker.unwrap_or(0);
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let all: Vec<StoredPart> = stored_parts(objects, &upload!(account, input))
        .await?
        .into_iter()
        .filter(|p| p.number > after)
        .collect();
    let truncated = all.len() > max;
    let parts: Vec<Part> = all
        .into_iter()
        .take(max)
        .map(|p| Part {
            part_number: Some(p.number),
            e_tag: Some(ETag::Strong(p.etag)),
            size: Some(p.size as i64),
            last_modified: Some(p.modified.to_system_time().into()),
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
    objects: &Objects,
    account: &str,
    input: CompleteMultipartUploadInput,
) -> S3Result<CompleteMultipartUploadOutput> {
    let marker = upload!(account, input).meta(objects).await?;
    let requested = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if requested.is_empty() {
        return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
    }
    let stored = stored_parts(objects, &upload!(account, input)).await?;
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
        let path = upload!(account, input).part(n);
        let (etag, size) = head_part(objects, &path)
            .await?
            .ok_or_else(|| s3_error!(InvalidPart))?;
        if p.e_tag
            .as_ref()
            .is_some_and(|e| e.value().trim_matches('"') != etag)
        {
            return Err(s3_error!(InvalidPart));
        }
        if size < MIN_PART_SIZE && i + 1 < requested.len() {
            return Err(s3_error!(EntityTooSmall));
        }
        md5_of_md5s.update(hex::decode(&etag).map_err(|_| s3_error!(InternalError))?);
        segments.push(Segment {
            name: format!("/{}/{}", path.container, path.object),
            hash: etag,
            bytes: size,
            content_type: "application/octet-stream".into(),
            last_modified: String::new(),
        });
    }
    let s3_etag = format!(
        "{}-{}",
        hex::encode(md5_of_md5s.finalize()),
        requested.len()
    );
    let mut meta = marker;
    meta.system.retain(|(k, _)| k.starts_with("s3-checksum"));
    meta.system.push(("s3-etag".into(), s3_etag.clone()));
    objects
        .put_segments(
            &ObjectPath::new(account, &input.bucket, &input.key),
            meta,
            &segments,
        )
        .await?;
    // The upload is over; parts not named in the manifest are garbage.
    let used: std::collections::HashSet<i32> =
        requested.iter().filter_map(|p| p.part_number).collect();
    let unused = stored.into_iter().filter(|p| !used.contains(&p.number));
    upload!(account, input).end(objects, unused).await;
    Ok(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(s3_etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        ..Default::default()
    })
}

pub async fn abort(
    objects: &Objects,
    account: &str,
    input: AbortMultipartUploadInput,
) -> S3Result<AbortMultipartUploadOutput> {
    let upload = upload!(account, input);
    upload.meta(objects).await?;
    let parts = stored_parts(objects, &upload).await?;
    upload.end(objects, parts).await;
    Ok(AbortMultipartUploadOutput::default())
}

/// A marker's name is `<key>/<32 hex upload id>`.
fn parse_marker(name: &str) -> Option<(&str, &str)> {
    let (key, id) = name.rsplit_once('/')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some((key, id))
}

pub async fn list_uploads(
    objects: &Objects,
    account: &str,
    input: ListMultipartUploadsInput,
) -> S3Result<ListMultipartUploadsOutput> {
    bucket::require(objects, account, &input.bucket).await?;
    let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let mut uploads = Vec::new();
    let mut query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        marker: input.key_marker.clone().unwrap_or_default(),
        ..Default::default()
    };
    let target = ListTarget::Container(account.into(), segments_container(&input.bucket));
    let mut truncated = false;
    'pages: loop {
        let page = match objects.list(&target, &query).await {
            Ok(p) => p.entries,
            Err(ObjectError::NoSuchContainer) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let Some(last) = page.last() else {
            break;
        };
        query.marker = last.name().to_string();
        for e in &page {
            let ListingEntry::Object {
                name,
                last_modified,
                ..
            } = e
            else {
                continue;
            };
            if let Some((key, id)) = parse_marker(name) {
                if uploads.len() == max {
                    truncated = true;
                    break 'pages;
                }
                let initiated = Timestamp::from_iso8601(last_modified).unwrap_or_default();
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
