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

/// ListObjectVersions: versions and delete markers, key by key and
/// newest first; with a delimiter, keys past it are grouped into common
/// prefixes.
pub async fn list(
    objects: &Objects,
    account: &str,
    input: ListObjectVersionsInput,
    max: usize,
) -> S3Result<ListObjectVersionsOutput> {
    bucket::require(objects, account, &input.bucket).await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let version_marker = input
        .version_id_marker
        .clone()
        .filter(|v| !v.is_empty() && !key_marker.is_empty());
    let page = objects
        .list_versions(
            account,
            &input.bucket,
            &prefix,
            &key_marker,
            version_marker.as_deref(),
            max,
        )
        .await?;
    let url: UrlEncoding = url_encoding(input.encoding_type.as_ref());
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let owner = bucket::owner(account);
    let mut last: Option<&VersionEntry> = None;
    for v in &page.entries {
        if let Some(d) = &delimiter {
            if let Some(i) = v.key[prefix.len()..].find(d.as_str()) {
                let p = v.key[..prefix.len() + i + d.len()].to_string();
                if prefixes.last() != Some(&p) {
                    prefixes.push(p);
                }
                last = Some(v);
                continue;
            }
        }
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
        last = Some(v);
    }
    let (next_key, next_version) = match (page.truncated, last) {
        (true, Some(l)) => (Some(url.apply(&l.key)), Some(l.version_id.clone())),
        _ => (None, None),
    };
    Ok(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(url.apply(&prefix)),
        key_marker: Some(url.apply(&key_marker)),
        version_id_marker: version_marker,
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
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
