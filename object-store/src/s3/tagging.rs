//! Object and bucket tags. An object's are kept as system metadata (`s3-tagging`, the tags in
//! `x-amz-tagging`'s URL-encoded form), set with the object (`x-amz-tagging`
//! on PUT, kept or replaced on copy) or on their own (PutObjectTagging),
//! which changes no data and no other metadata. A bucket's are container
//! system metadata ([`BUCKET_HEADER`]).

use crate::proxy::objects::{ObjectError, ObjectMeta, ObjectPath, Objects};
use s3s::dto::{Tag, TagSet};
use s3s::{s3_error, S3Result};
use service_kit::http_util::{encode, query_pairs};

/// The system metadata key the tags live under.
pub const KEY: &str = "s3-tagging";

/// S3's limits on tags: per object, per bucket, and per key and value.
pub const MAX_OBJECT_TAGS: usize = 10;
pub const MAX_BUCKET_TAGS: usize = 50;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// The container system metadata header a bucket's tags live under.
pub const BUCKET_HEADER: &str = "x-container-sysmeta-s3-tagging";

/// Checks an object's tag set against S3's limits and writes it in the
/// form kept.
pub fn encode_tags(tags: &[(String, String)]) -> S3Result<String> {
    encode_limited(tags, MAX_OBJECT_TAGS)
}

/// [`encode_tags`] with at most `max` tags.
pub fn encode_limited(tags: &[(String, String)], max: usize) -> S3Result<String> {
    if tags.len() > max {
        return Err(s3_error!(
            InvalidTag,
            "Object tags cannot be greater than {max}"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_KEY {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey you have provided is invalid"
            ));
        }
        if v.chars().count() > MAX_VALUE {
            return Err(s3_error!(
                InvalidTag,
                "The TagValue you have provided is invalid"
            ));
        }
        if !seen.insert(k) {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(tags
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

/// The tags of an `x-amz-tagging` header (or of the kept form).
pub fn parse(header: &str) -> Vec<(String, String)> {
    query_pairs(Some(header))
}

/// The tags an object keeps.
pub fn of(meta: &ObjectMeta) -> Vec<(String, String)> {
    meta.system(KEY).map(parse).unwrap_or_default()
}

pub fn tag_set(tags: Vec<(String, String)>) -> TagSet {
    tags.into_iter()
        .map(|(k, v)| Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

pub fn from_tag_set(set: &TagSet) -> Vec<(String, String)> {
    set.iter()
        .map(|t| {
            (
                t.key.clone().unwrap_or_default(),
                t.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Replaces an object's tags (none: removes them).
pub async fn set(objects: &Objects, path: &ObjectPath, tags: &[(String, String)]) -> S3Result<()> {
    let kept = encode_tags(tags)?;
    match objects
        .update_system_meta(path, &[(KEY.to_string(), kept)])
        .await
    {
        Ok(()) => Ok(()),
        Err(ObjectError::NoSuchObject) => Err(s3_error!(NoSuchKey)),
        Err(e) => Err(e.into()),
    }
}
