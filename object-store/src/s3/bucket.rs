//! Buckets: containers of the key owner's account.

use crate::proxy::containers::{ListQuery, ListTarget};
use crate::proxy::objects::{
    ObjectError, ObjectMeta, ObjectPath, Objects, PutObject, ReadObject, WriteCondition,
};
use crate::records::ListingEntry;
use http::HeaderMap;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use service_kit::http_util::{collect_limited, full};
use service_kit::timestamp::Timestamp;

/// S3's bucket naming rules (the strict, current ones).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return false;
    }
    let allowed = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-';
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.iter().all(|&c| allowed(c)) || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return false;
    }
    // Not an IPv4 address.
    name.parse::<std::net::Ipv4Addr>().is_err()
}

pub async fn exists(objects: &Objects, account: &str, bucket: &str) -> S3Result<bool> {
    match objects.head_container(account, bucket).await {
        Ok(_) => Ok(true),
        Err(ObjectError::NoSuchContainer) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sets one item of a bucket's configuration (its tags, CORS rules,
/// lifecycle rules, default encryption or Object Lock: container system
/// metadata `header`); an empty value removes it.
pub async fn set_config(
    objects: &Objects,
    account: &str,
    bucket: &str,
    header: &str,
    value: &str,
) -> S3Result<()> {
    let mut h = HeaderMap::new();
    service_kit::http_util::set_header(&mut h, header, value);
    objects.post_container(account, bucket, h).await?;
    Ok(())
}

pub async fn require(objects: &Objects, account: &str, bucket: &str) -> S3Result<()> {
    if exists(objects, account, bucket).await? {
        Ok(())
    } else {
        Err(s3_error!(NoSuchBucket))
    }
}

/// Bucket names are global, as in S3: each name has a registry object
/// (`<REGISTRY_ACCOUNT>/<REGISTRY>/<name>`, its body the owning account),
/// created with a conditional write, so of accounts racing for a name one
/// wins and the others hear `BucketAlreadyExists`.
const REGISTRY_ACCOUNT: &str = "AUTH_.s3";
const REGISTRY: &str = "buckets";

fn registry_entry(bucket: &str) -> ObjectPath {
    ObjectPath::new(REGISTRY_ACCOUNT, REGISTRY, bucket)
}

/// The account a bucket name is registered to, if any.
pub(super) async fn registered_owner(objects: &Objects, bucket: &str) -> S3Result<Option<String>> {
    let read = objects.get(ReadObject::of(registry_entry(bucket))).await;
    match read {
        Ok(r) => {
            let body = collect_limited(r.body, 1024)
                .await
                .ok_or_else(|| s3_error!(InternalError))?;
            Ok(Some(String::from_utf8_lossy(&body).into_owned()))
        }
        Err(ObjectError::NoSuchObject) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(objects: &Objects, account: &str, bucket: &str) -> S3Result<()> {
    if !valid_bucket_name(bucket) {
        return Err(s3_error!(InvalidBucketName));
    }
    if exists(objects, account, bucket).await? {
        return Err(s3_error!(BucketAlreadyOwnedByYou));
    }
    ensure_container(objects, REGISTRY_ACCOUNT, REGISTRY).await?;
    let claimed = objects
        .put(PutObject {
            path: registry_entry(bucket),
            length: Some(account.len() as u64),
            meta: ObjectMeta::default(),
            checksum: None,
            expected_md5: None,
            condition: Some(WriteCondition::IfNoneMatch),
            sealing: None,
            at: None,
            body: full(account.to_string()),
        })
        .await;
    match claimed {
        Ok(_) => {}
        Err(ObjectError::PreconditionFailed { .. } | ObjectError::ConditionalConflict) => {
            // Registered already: to this account (a create that stopped
            // before its container) goes on; to another is theirs.
            if registered_owner(objects, bucket).await?.as_deref() != Some(account) {
                return Err(s3_error!(BucketAlreadyExists));
            }
        }
        Err(e) => return Err(e.into()),
    }
    objects
        .put_container(account, bucket, HeaderMap::new())
        .await?;
    Ok(())
}

/// Creates a container if it does not exist (the multipart segments one).
pub async fn ensure_container(objects: &Objects, account: &str, name: &str) -> S3Result<()> {
    if !objects.container_exists(account, name).await {
        objects
            .put_container(account, name, HeaderMap::new())
            .await?;
    }
    Ok(())
}

pub async fn delete(objects: &Objects, account: &str, bucket: &str) -> S3Result<()> {
    objects.delete_container(account, bucket).await?;
    // The name is free again (if it was this account's).
    if registered_owner(objects, bucket).await?.as_deref() == Some(account) {
        match objects.delete(&registry_entry(bucket)).await {
            Ok(()) | Err(ObjectError::NoSuchObject) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn modified(iso: &str) -> Option<s3s::dto::Timestamp> {
    Some(Timestamp::from_iso8601(iso)?.to_system_time().into())
}

/// ListBuckets: the account's buckets by name, those under `prefix`, a
/// page of `max-buckets` at a time (all of them when none is asked for).
pub async fn list_buckets(
    objects: &Objects,
    account: &str,
    input: ListBucketsInput,
) -> S3Result<ListBucketsOutput> {
    let max = match input.max_buckets {
        None => usize::MAX,
        Some(n @ 1..=10_000) => n as usize,
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "max-buckets must be an integer between 1 and 10000"
            ))
        }
    };
    let after = match &input.continuation_token {
        Some(t) => super::continued_after(t)?,
        None => String::new(),
    };
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        marker: after,
        ..Default::default()
    };
    let entries = objects
        .list_all(&ListTarget::Account(account.into()), query, usize::MAX)
        .await?;
    let mut buckets: Vec<Bucket> = entries
        .into_iter()
        .filter_map(|e| match e {
            // `<bucket>+segments`: multipart parts, not a bucket.
            ListingEntry::Container {
                name,
                last_modified,
                ..
            } if !name.contains('+') => Some(Bucket {
                name: Some(name),
                creation_date: modified(&last_modified),
                bucket_region: None,
            }),
            _ => None,
        })
        .collect();
    let truncated = buckets.len() > max;
    buckets.truncate(max);
    let next = buckets
        .last()
        .and_then(|b| b.name.as_deref())
        .filter(|_| truncated)
        .map(super::continuation_token);
    Ok(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner(account)),
        continuation_token: next,
        prefix: input.prefix,
    })
}

pub fn owner(account: &str) -> Owner {
    Owner {
        id: Some(account.to_string()),
        display_name: Some(account.to_string()),
    }
}

/// What a listing of keys returns, whatever the API version.
pub struct Keys {
    pub objects: Vec<Object>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or prefix returned: where the next page starts.
    pub last: Option<String>,
}

/// What to list: keys under `prefix` after `marker`, grouped by `delimiter`.
pub struct KeyQuery<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub marker: &'a str,
    pub max_keys: usize,
    pub fetch_owner: bool,
}

/// Lists one page of keys.
pub async fn list_keys(
    objects: &Objects,
    account: &str,
    bucket: &str,
    q: KeyQuery<'_>,
) -> S3Result<Keys> {
    let KeyQuery {
        prefix,
        delimiter,
        marker,
        max_keys,
        fetch_owner,
    } = q;
    let mut keys = Keys {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    if max_keys == 0 {
        require(objects, account, bucket).await?;
        return Ok(keys);
    }
    let delimiter = delimiter.filter(|d| !d.is_empty()).map(String::from);
    let query = ListQuery {
        prefix: prefix.to_string(),
        marker: marker.to_string(),
        delimiter,
        limit: Some((max_keys + 1).min(crate::proxy::limits::MAX_LISTING)),
        ..Default::default()
    };
    let page = objects
        .list(
            &ListTarget::Container(account.into(), bucket.into()),
            &query,
        )
        .await?;
    for (i, e) in page.entries.into_iter().enumerate() {
        if i == max_keys {
            keys.truncated = true;
            break;
        }
        match e {
            ListingEntry::Subdir { subdir } => {
                keys.last = Some(subdir.clone());
                keys.prefixes.push(subdir);
            }
            ListingEntry::Object {
                name,
                hash,
                s3_etag,
                slo_etag,
                bytes,
                last_modified,
                ..
            } => {
                keys.last = Some(name.clone());
                keys.objects.push(Object {
                    key: Some(name),
                    size: Some(bytes as i64),
                    e_tag: Some(ETag::Strong(
                        // As HEAD shows it: a multipart upload's ETag, a
                        // static large object's, or the object's MD5.
                        s3_etag
                            .or_else(|| slo_etag.map(|e| e.trim_matches('"').to_string()))
                            .unwrap_or(hash),
                    )),
                    last_modified: modified(&last_modified),
                    storage_class: Some(ObjectStorageClass::from_static(
                        ObjectStorageClass::STANDARD,
                    )),
                    owner: fetch_owner.then(|| owner(account)),
                    ..Default::default()
                });
            }
            ListingEntry::Container { .. } => {}
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::valid_bucket_name;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.1", "a".repeat(63).as_str()] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "a_b",
            "a".repeat(64).as_str(),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
