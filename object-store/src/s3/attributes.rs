//! GetObjectAttributes: what S3 tells of an object without its body (ETag,
//! checksum, size, storage class, and the parts of a multipart upload),
//! each only when asked for.
//!
//! A multipart object's parts are the segments its CompleteMultipartUpload
//! wrote ([`super::multipart`]), numbered as they were uploaded. As S3
//! does, the parts themselves are listed only where the upload kept
//! checksums; otherwise only their count.

use super::checksum;
use super::encryption as sse;
use super::object::{read, s3_etag, version_of};
use crate::proxy::manifest::StoredSegment;
use crate::proxy::objects::{ObjectMeta, ObjectPath, Objects, ReadObject};
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use service_kit::http_util::header_str;

/// S3's default and greatest page of parts.
const MAX_PARTS: i32 = 1000;
/// Parts whose records are read at the same time.
const PARTS_AT_ONCE: usize = 16;

pub async fn get(
    objects: &Objects,
    account: &str,
    input: GetObjectAttributesInput,
) -> S3Result<GetObjectAttributesOutput> {
    // One header, `x-amz-object-attributes`, its names separated by commas.
    let names: Vec<&str> = input
        .object_attributes
        .iter()
        .flat_map(|a| a.as_str().split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let asked = |name: &str| names.contains(&name);
    let known = [
        ObjectAttributes::CHECKSUM,
        ObjectAttributes::ETAG,
        ObjectAttributes::OBJECT_PARTS,
        ObjectAttributes::OBJECT_SIZE,
        ObjectAttributes::STORAGE_CLASS,
    ];
    if names.is_empty() || names.iter().any(|n| !known.contains(n)) {
        return Err(s3_error!(
            InvalidArgument,
            "Invalid attribute name specified."
        ));
    }
    let max_parts = input.max_parts.unwrap_or(MAX_PARTS);
    if !(0..=MAX_PARTS).contains(&max_parts) {
        return Err(s3_error!(
            InvalidArgument,
            "Argument max-parts must be an integer between 0 and 1000"
        ));
    }
    if input.part_number_marker.is_some_and(|m| m < 0) {
        return Err(s3_error!(
            InvalidArgument,
            "Argument part-number-marker must be a positive integer"
        ));
    }
    let customer_key = sse::customer_key_of!(input)?;
    let path = ObjectPath::new(account, &input.bucket, &input.key);
    let head = ReadObject {
        head: true,
        version: input.version_id.clone(),
        customer_key: customer_key.clone(),
        ..ReadObject::of(path.clone())
    };
    let info = read(objects, account, &input.bucket, head).await?.info();
    let etag = s3_etag(&info);
    // A multipart upload's ETag ends in its count of parts.
    let parts_count = etag
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<i32>().ok());
    let sums = checksum::stored(&info.meta);
    let mut out = GetObjectAttributesOutput {
        last_modified: info.last_modified.map(Into::into),
        version_id: version_of(&info),
        ..Default::default()
    };
    if asked(ObjectAttributes::ETAG) {
        out.e_tag = Some(ETag::Strong(etag.clone()));
    }
    if asked(ObjectAttributes::OBJECT_SIZE) {
        out.object_size = Some(info.length as i64);
    }
    if asked(ObjectAttributes::STORAGE_CLASS) {
        out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
    }
    if asked(ObjectAttributes::CHECKSUM) {
        if let Some(sum) = sums.clone() {
            let mut c = Checksum::default();
            checksum::fill_checksums!(typed c, checksum::Fields::of(Some(sum)));
            out.checksum = Some(c);
        }
    }
    if let Some(total) = parts_count.filter(|_| asked(ObjectAttributes::OBJECT_PARTS)) {
        let mut shown = GetObjectAttributesParts {
            total_parts_count: Some(total),
            ..Default::default()
        };
        if sums.is_some() {
            // The manifest of the version just read (not a link's: the
            // raw manifest is not what a version link's ETag names), so
            // that a write in between cannot mix two objects' parts.
            let version = input
                .version_id
                .clone()
                .or_else(|| out.version_id.clone().filter(|v| v != "null"));
            let manifest = ReadObject {
                manifest: true,
                version,
                customer_key,
                ..ReadObject::of(path)
            };
            let after = input.part_number_marker.unwrap_or(0);
            let numbered = part_paths(objects, account, &input.bucket, manifest).await?;
            let rest: Vec<&(i32, ObjectPath)> =
                numbered.iter().filter(|(n, _)| *n > after).collect();
            let page = &rest[..rest.len().min(max_parts as usize)];
            // A page may name a thousand parts: their HEADs go a few at
            // a time, in order.
            let owned: Vec<(i32, ObjectPath)> = page.iter().map(|p| (**p).clone()).collect();
            let parts: Vec<ObjectPart> = futures_util::stream::iter(owned)
                .map(|(n, part)| async move { part_shown(objects, n, &part).await })
                .buffered(PARTS_AT_ONCE)
                .try_collect()
                .await?;
            let truncated = rest.len() > page.len();
            shown.is_truncated = Some(truncated);
            shown.max_parts = Some(max_parts);
            shown.part_number_marker = Some(after);
            shown.next_part_number_marker = page.last().map(|(n, _)| *n);
            shown.parts = Some(parts);
        }
        out.object_parts = Some(shown);
    }
    Ok(out)
}

/// The parts a multipart object's manifest names, by number, in order.
async fn part_paths(
    objects: &Objects,
    account: &str,
    bucket: &str,
    manifest: ReadObject,
) -> S3Result<Vec<(i32, ObjectPath)>> {
    let read = read(objects, account, bucket, manifest).await?;
    let bytes = read
        .body
        .collect()
        .await
        .map_err(|_| s3_error!(ServiceUnavailable))?
        .to_bytes();
    let segments: Vec<StoredSegment> = serde_json::from_slice(&bytes)
        .map_err(|_| s3_error!(InternalError, "an unreadable manifest"))?;
    Ok(segments
        .into_iter()
        .filter_map(|s| match s {
            StoredSegment::Object(seg) => {
                // `/<bucket>+segments/<key>/<upload>/<number>`
                let (container, object) = seg.name.trim_start_matches('/').split_once('/')?;
                let n = object.rsplit_once('/')?.1.parse().ok()?;
                Some((n, ObjectPath::new(account, container, object)))
            }
            StoredSegment::Data { .. } => None,
        })
        .collect())
}

/// One part as GetObjectAttributes lists it: its number, plaintext size
/// and checksum.
async fn part_shown(objects: &Objects, number: i32, part: &ObjectPath) -> S3Result<ObjectPart> {
    let h = objects.head_newest(part).await?;
    let meta = ObjectMeta::from_stored(&h);
    // A sealed part's own size is its plaintext's, kept for its listing.
    let size = meta
        .system("container-update-override-size")
        .map(str::to_string)
        .or_else(|| header_str(&h, "content-length").map(|v| v.into_owned()))
        .and_then(|v| v.parse::<i64>().ok());
    let mut shown = ObjectPart {
        part_number: Some(number),
        size,
        ..Default::default()
    };
    checksum::fill_checksums!(shown, checksum::Fields::of(checksum::stored(&meta)));
    Ok(shown)
}
