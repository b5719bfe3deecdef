//! S3 versioning on the object layer's versions
//! ([`crate::proxy::object_versions`], shared with Swift's
//! `X-Versions-Enabled`): Put/GetBucketVersioning and ListObjectVersions.
//! Reads, writes and deletes of versions go through the object handlers
//! (`versionId`, `x-amz-version-id`, delete markers).

use super::bucket;
use super::{url_encoding, UrlEncoding};
use crate::proxy::object_versions::{State, VersionEntry};
use crate::proxy::objects::Objects;
use s3s::dto::*;
use s3s::{s3_error, S3Result};

/// PutBucketVersioning: `Enabled` or `Suspended` (MFA delete is not
/// offered: it is refused).
pub async fn put(
    objects: &Objects,
    account: &str,
    input: PutBucketVersioningInput,
) -> S3Result<()> {
    bucket::require(objects, account, &input.bucket).await?;
    let c = &input.versioning_configuration;
    if c.mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
    }
    let enabled = match c.status.as_ref().map(|s| s.as_str()) {
        Some(BucketVersioningStatus::ENABLED) => true,
        Some(BucketVersioningStatus::SUSPENDED) => false,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "The versioning status must be Enabled or Suspended"
            ))
        }
    };
    objects
        .set_versioning(account, &input.bucket, enabled)
        .await
        .map_err(Into::into)
}

/// GetBucketVersioning: no status for a bucket never versioned.
pub async fn get(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
) -> S3Result<GetBucketVersioningOutput> {
    bucket::require(objects, account, bucket_name).await?;
    let headers = objects.head_container(account, bucket_name).await?;
    let status = match State::of(&headers) {
        State::Off => None,
        State::Enabled => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::ENABLED,
        )),
        State::Suspended => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::SUSPENDED,
        )),
    };
    Ok(GetBucketVersioningOutput {
        status,
        mfa_delete: None,
    })
}

/// One version or delete marker as ListObjectVersions shows it.
fn shown(
    v: &VersionEntry,
    url: &UrlEncoding,
    owner: &Owner,
    versions: &mut Vec<ObjectVersion>,
    markers: &mut Vec<DeleteMarkerEntry>,
) {
    let modified = s3s::dto::Timestamp::parse(
        TimestampFormat::DateTime,
        &format!("{}Z", v.last_modified.get(..23).unwrap_or(&v.last_modified)),
    )
    .ok();
    if v.delete_marker {
        markers.push(DeleteMarkerEntry {
            key: Some(url.apply(&v.key)),
            version_id: Some(v.version_id.clone()),
            is_latest: Some(v.is_latest),
            last_modified: modified,
            owner: Some(owner.clone()),
        });
    } else {
        versions.push(ObjectVersion {
            key: Some(url.apply(&v.key)),
            version_id: Some(v.version_id.clone()),
            is_latest: Some(v.is_latest),
            e_tag: Some(ETag::Strong(v.etag.clone())),
            size: Some(v.size as i64),
            last_modified: modified,
            owner: Some(owner.clone()),
            storage_class: Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            )),
            ..Default::default()
        });
    }
}

/// ListObjectVersions: versions and delete markers, key by key and
/// newest first; with a delimiter, keys past it are grouped into common
/// prefixes, each counted once towards `max` and listed once: the next
/// page starts after every key under the last one (its `NextKeyMarker`).
pub async fn list(
    objects: &Objects,
    account: &str,
    input: ListObjectVersionsInput,
    max: usize,
) -> S3Result<ListObjectVersionsOutput> {
    bucket::require(objects, account, &input.bucket).await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let version_marker = input.version_id_marker.clone().filter(|v| !v.is_empty());
    if let Some(v) = &version_marker {
        if key_marker.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        crate::proxy::object_versions::version_time(v)?;
    }
    let url: UrlEncoding = url_encoding(input.encoding_type.as_ref());
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let grouped = |key: &str| super::common_prefix(key, &prefix, delimiter.as_deref());
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let owner = bucket::owner(account);
    // What was listed last: a version's key and id, or a common prefix.
    let mut last: Option<(String, Option<String>)> = None;
    let mut listed = 0;
    let mut truncated = false;
    // Where the next look starts: after a key's version, or after every
    // key of a common prefix (a marker that is one was listed as one).
    let past_prefix = |p: &str| format!("{p}\u{10FFFF}");
    let mut cursor = match (&version_marker, grouped(&key_marker)) {
        (None, Some(p)) if p == key_marker => (past_prefix(&p), None),
        _ => (key_marker.clone(), version_marker.clone()),
    };
    'pages: loop {
        let page = objects
            .list_versions(
                account,
                &input.bucket,
                &prefix,
                &cursor.0,
                cursor.1.as_deref(),
                max.max(1),
            )
            .await?;
        let Some(end) = page.entries.last() else {
            break;
        };
        cursor = (end.key.clone(), Some(end.version_id.clone()));
        for v in &page.entries {
            if let Some(p) = grouped(&v.key) {
                if prefixes.last() == Some(&p) || p == key_marker {
                    continue;
                }
                if listed == max {
                    truncated = true;
                    break 'pages;
                }
                listed += 1;
                cursor = (past_prefix(&p), None);
                last = Some((p.clone(), None));
                prefixes.push(p);
                // The rest of this page may lie under it: look again.
                continue 'pages;
            }
            if listed == max {
                truncated = true;
                break 'pages;
            }
            listed += 1;
            last = Some((v.key.clone(), Some(v.version_id.clone())));
            shown(v, &url, &owner, &mut versions, &mut markers);
        }
        if !page.truncated {
            break;
        }
    }
    let (next_key, next_version) = match (truncated, last) {
        (true, Some((key, id))) => (Some(url.apply(&key)), id),
        _ => (None, None),
    };
    Ok(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(url.apply(&prefix)),
        key_marker: Some(url.apply(&key_marker)),
        version_id_marker: version_marker,
        max_keys: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: next_key,
        next_version_id_marker: next_version,
        delimiter: delimiter.map(|d| url.apply(&d)),
        encoding_type: input.encoding_type,
        versions: Some(versions),
        delete_markers: Some(markers),
        common_prefixes: Some(url.prefixes(prefixes)),
        ..Default::default()
    })
}
