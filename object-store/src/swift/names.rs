//! What the Swift API accepts as names and metadata (Swift's constraints).

use http::HeaderMap;

use crate::proxy::limits::{MAX_ACCOUNT_NAME, MAX_CONTAINER_NAME, MAX_OBJECT_NAME};

/// A request path under `/v1/`, decoded and checked.
#[derive(Debug, PartialEq)]
pub struct SwiftPath {
    pub account: String,
    pub container: Option<String>,
    pub object: Option<String>,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum NameError {
    #[error("Invalid UTF8 or contains NULL")]
    InvalidUtf8,
    #[error("{0} name length of {1} longer than {2}")]
    TooLong(&'static str, usize, usize),
    #[error("Invalid path")]
    BadPath,
}

/// Parses the raw (still percent-encoded) path after `/v1/`.
pub fn parse_path(raw: &str) -> Result<SwiftPath, NameError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| NameError::InvalidUtf8)?;
    if decoded.contains('\0') {
        return Err(NameError::InvalidUtf8);
    }
    let mut it = decoded.splitn(3, '/');
    let account = it.next().unwrap_or_default().to_string();
    let container = it.next().map(str::to_string);
    let object = it.next().map(str::to_string);
    if account.is_empty() || account.len() > MAX_ACCOUNT_NAME {
        return Err(NameError::BadPath);
    }
    // `/v1/a/` is the account and `/v1/a/c/` the container, as in Swift.
    let container =
        container.filter(|c| !c.is_empty() || object.as_ref().is_some_and(|o| !o.is_empty()));
    if let Some(c) = &container {
        if c.is_empty() {
            return Err(NameError::BadPath);
        }
        if c.len() > MAX_CONTAINER_NAME {
            return Err(NameError::TooLong("Container", c.len(), MAX_CONTAINER_NAME));
        }
        if c == "." || c == ".." {
            return Err(NameError::BadPath);
        }
    }
    let object = object.filter(|o| !o.is_empty());
    if let Some(o) = &object {
        if o.len() > MAX_OBJECT_NAME {
            return Err(NameError::TooLong("Object", o.len(), MAX_OBJECT_NAME));
        }
        // A name that a file system or a naive client would resolve outside
        // its container is refused.
        if o.split('/').any(|part| part == ".." || part == ".") {
            return Err(NameError::BadPath);
        }
    }
    Ok(SwiftPath {
        account,
        container,
        object,
    })
}

/// Checks `X-<kind>-Meta-*` headers against Swift's limits. `kind` is
/// `object`, `container` or `account`.
pub fn check_metadata(headers: &HeaderMap, kind: &str) -> Result<(), String> {
    let prefix = format!("x-{kind}-meta-");
    crate::proxy::limits::check_metadata(
        kind,
        headers.iter().filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix(&prefix)?;
            Some((key, value.as_bytes()))
        }),
    )
}

/// Checks the metadata an account or container would hold after a POST:
/// what it has (`stored`) with the request's `changes` (an empty value
/// removes an item). Swift checks the whole, so that many small POSTs
/// cannot pass the limits that one large one may not.
pub fn check_merged_metadata(
    stored: &HeaderMap,
    changes: &HeaderMap,
    kind: &str,
) -> Result<(), String> {
    let prefix = format!("x-{kind}-meta-");
    let mut merged: std::collections::BTreeMap<&str, &[u8]> = stored
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().strip_prefix(&prefix)?, v.as_bytes())))
        .collect();
    for (n, v) in changes {
        let Some(key) = n.as_str().strip_prefix(&prefix) else {
            continue;
        };
        if v.is_empty() {
            merged.remove(key);
        } else {
            merged.insert(key, v.as_bytes());
        }
    }
    crate::proxy::limits::check_metadata(kind, merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::http_util::set_header;

    #[test]
    fn metadata_limits_hold_for_the_merged_whole() {
        let mut stored = HeaderMap::new();
        for i in 0..60 {
            set_header(&mut stored, &format!("x-container-meta-k{i}"), "v");
        }
        let mut more = HeaderMap::new();
        for i in 60..95 {
            set_header(&mut more, &format!("x-container-meta-k{i}"), "v");
        }
        assert!(check_merged_metadata(&stored, &more, "container").is_err());
        // Removing as many as are added keeps it within the count.
        for i in 0..35 {
            set_header(&mut more, &format!("x-container-meta-k{i}"), "");
        }
        assert!(check_merged_metadata(&stored, &more, "container").is_ok());
    }

    #[test]
    fn paths() {
        let p = parse_path("AUTH_t/c/a/b%20c").unwrap();
        assert_eq!(p.account, "AUTH_t");
        assert_eq!(p.container.as_deref(), Some("c"));
        assert_eq!(p.object.as_deref(), Some("a/b c"));
        assert_eq!(parse_path("AUTH_t/").unwrap().container, None);
        assert_eq!(parse_path("AUTH_t/c/").unwrap().object, None);
        assert_eq!(parse_path("AUTH_t/%FF"), Err(NameError::InvalidUtf8));
        assert_eq!(parse_path("AUTH_t/c/a%00b"), Err(NameError::InvalidUtf8));
        assert_eq!(parse_path("AUTH_t/c/../x"), Err(NameError::BadPath));
        assert_eq!(parse_path("AUTH_t/.."), Err(NameError::BadPath));
        assert!(matches!(
            parse_path(&format!("AUTH_t/c/{}", "o".repeat(1025))),
            Err(NameError::TooLong(..))
        ));
        assert!(parse_path(&format!("AUTH_t/c/{}", "o".repeat(1024))).is_ok());
        assert!(matches!(
            parse_path(&format!("AUTH_t/{}", "c".repeat(257))),
            Err(NameError::TooLong(..))
        ));
    }

    #[test]
    fn metadata_limits() {
        let mut h = HeaderMap::new();
        h.insert("x-object-meta-color", "blue".parse().unwrap());
        assert!(check_metadata(&h, "object").is_ok());
        h.insert("x-object-meta-big", "v".repeat(257).parse().unwrap());
        assert!(check_metadata(&h, "object").is_err());
        let mut h = HeaderMap::new();
        for i in 0..91 {
            h.insert(
                http::HeaderName::from_bytes(format!("x-object-meta-k{i}").as_bytes()).unwrap(),
                "v".parse().unwrap(),
            );
        }
        assert!(check_metadata(&h, "object").is_err());
        let mut h = HeaderMap::new();
        for i in 0..20 {
            h.insert(
                http::HeaderName::from_bytes(format!("x-container-meta-k{i}").as_bytes()).unwrap(),
                "v".repeat(250).parse().unwrap(),
            );
        }
        assert!(check_metadata(&h, "container").is_err());
    }
}
