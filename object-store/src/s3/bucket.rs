//! Buckets: containers of the key owner's account.

use crate::proxy::backend::Path;
use crate::proxy::ProxyState;
use crate::swift::{self, with_timestamp};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
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

pub async fn exists(state: &ProxyState, account: &str, bucket: &str) -> S3Result<bool> {
    let r = state
        .backend
        .head_newest(
            &Path::Container(account.into(), bucket.into()),
            HeaderMap::new(),
        )
        .await;
    match r.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(s3_error!(ServiceUnavailable)),
    }
}

pub async fn require(state: &ProxyState, account: &str, bucket: &str) -> S3Result<()> {
    if exists(state, account, bucket).await? {
        Ok(())
    } else {
        Err(s3_error!(NoSuchBucket))
    }
}

pub async fn create(state: &ProxyState, account: &str, bucket: &str) -> S3Result<()> {
    if !valid_bucket_name(bucket) {
        return Err(s3_error!(InvalidBucketName));
    }
    if exists(state, account, bucket).await? {
        return Err(s3_error!(BucketAlreadyOwnedByYou));
    }
    put_container(state, account, bucket).await
}

async fn put_container(state: &ProxyState, account: &str, name: &str) -> S3Result<()> {
    let out = state
        .backend
        .write(
            Method::PUT,
            &Path::Container(account.into(), name.into()),
            with_timestamp(HeaderMap::new()),
            Bytes::new(),
            |_, _| {},
        )
        .await;
    if !out.status.is_success() {
        return Err(s3_error!(ServiceUnavailable));
    }
    state.remember_container(account, name, true);
    Ok(())
}

/// Creates a container if it does not exist (the multipart segments one).
pub async fn ensure_container(state: &ProxyState, account: &str, name: &str) -> S3Result<()> {
    if swift::container_exists(state, account, name).await {
        return Ok(());
    }
    put_container(state, account, name).await
}

pub async fn delete(state: &ProxyState, account: &str, bucket: &str) -> S3Result<()> {
    match swift::delete_container(state, account, bucket).await {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Err(s3_error!(NoSuchBucket)),
        StatusCode::CONFLICT => Err(s3_error!(BucketNotEmpty)),
        _ => Err(s3_error!(ServiceUnavailable)),
    }
}

/// One page of a container or account listing from the nodes (JSON).
pub async fn listing_page(
    state: &ProxyState,
    path: Path,
    query: &str,
) -> S3Result<Option<Vec<serde_json::Value>>> {
    let r = state
        .backend
        .read(Method::GET, &path, HeaderMap::new(), Some(query))
        .await;
    match r.status() {
        s if s.is_success() => {
            let bytes = r
                .into_body()
                .collect()
                .await
                .map_err(|_| s3_error!(ServiceUnavailable))?
                .to_bytes();
            Ok(Some(
                serde_json::from_slice(&bytes).map_err(|_| s3_error!(InternalError))?,
            ))
        }
        StatusCode::NOT_FOUND => Ok(None),
        _ => Err(s3_error!(ServiceUnavailable)),
    }
}

pub fn enc(s: &str) -> String {
    service_kit::http_util::encode(s)
}

pub async fn list_buckets(state: &ProxyState, account: &str) -> S3Result<ListBucketsOutput> {
    let mut buckets = Vec::new();
    let mut marker = String::new();
    loop {
        let page = listing_page(
            state,
            Path::Account(account.into()),
            &format!("marker={}", enc(&marker)),
        )
        .await?
        .unwrap_or_default();
        if page.is_empty() {
            break;
        }
        for e in &page {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            marker = name.clone();
            if name.contains('+') {
                // `<bucket>+segments`: multipart parts, not a bucket.
                continue;
            }
            let created = e["last_modified"]
                .as_str()
                .and_then(Timestamp::from_iso8601)
                .unwrap_or_default();
            buckets.push(Bucket {
                name: Some(name),
                creation_date: Some(created.to_system_time().into()),
                bucket_region: None,
            });
        }
    }
    Ok(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner(account)),
        ..Default::default()
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
    state: &ProxyState,
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
        require(state, account, bucket).await?;
        return Ok(keys);
    }
    if delimiter.is_some_and(|d| d.chars().count() != 1) {
        return Err(s3_error!(
            NotImplemented,
            "Only single-character delimiters are supported"
        ));
    }
    let mut q = format!(
        "prefix={}&marker={}&limit={}",
        enc(prefix),
        enc(marker),
        (max_keys + 1).min(10_000)
    );
    if let Some(d) = delimiter {
        q.push_str(&format!("&delimiter={}", enc(d)));
    }
    let page = listing_page(state, Path::Container(account.into(), bucket.into()), &q)
        .await?
        .ok_or_else(|| s3_error!(NoSuchBucket))?;
    for (i, e) in page.iter().enumerate() {
        if i == max_keys {
            keys.truncated = true;
            break;
        }
        if let Some(p) = e["subdir"].as_str() {
            keys.prefixes.push(p.to_string());
            keys.last = Some(p.to_string());
            continue;
        }
        let name = e["name"].as_str().unwrap_or_default().to_string();
        keys.last = Some(name.clone());
        let modified = e["last_modified"]
            .as_str()
            .and_then(Timestamp::from_iso8601)
            .unwrap_or_default();
        keys.objects.push(Object {
            key: Some(name),
            size: Some(e["bytes"].as_i64().unwrap_or(0)),
            e_tag: Some(ETag::Strong(
                e["hash"].as_str().unwrap_or_default().to_string(),
            )),
            last_modified: Some(modified.to_system_time().into()),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            owner: fetch_owner.then(|| owner(account)),
            ..Default::default()
        });
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
