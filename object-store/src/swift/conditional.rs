//! Conditional requests (If-Match, If-None-Match, If-Modified-Since,
//! If-Unmodified-Since) against an object's ETag and modification time.

use http::{HeaderMap, Method, StatusCode};

fn etag_listed(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == etag)
}

fn date(headers: &HeaderMap, name: &str) -> Option<u64> {
    let v = headers.get(name)?.to_str().ok()?;
    let t = httpdate::parse_http_date(v).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The status that replaces the object, if a precondition says so.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    etag: &str,
    modified_secs: u64,
) -> Option<StatusCode> {
    let read = *method == Method::GET || *method == Method::HEAD;
    if let Some(v) = headers.get("if-match").and_then(|v| v.to_str().ok()) {
        if !etag_listed(v, etag) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let Some(since) = date(headers, "if-unmodified-since") {
        if modified_secs > since {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    }
    if let Some(v) = headers.get("if-none-match").and_then(|v| v.to_str().ok()) {
        if etag_listed(v, etag) {
            return Some(if read {
                StatusCode::NOT_MODIFIED
            } else {
                StatusCode::PRECONDITION_FAILED
            });
        }
    } else if let Some(since) = date(headers, "if-modified-since") {
        if read && modified_secs <= since {
            return Some(StatusCode::NOT_MODIFIED);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn preconditions() {
        let g = Method::GET;
        assert_eq!(check(&g, &h(&[]), "abc", 100), None);
        assert_eq!(check(&g, &h(&[("if-match", "\"abc\"")]), "abc", 100), None);
        assert_eq!(
            check(&g, &h(&[("if-match", "\"x\", \"abc\"")]), "abc", 100),
            None
        );
        assert_eq!(
            check(&g, &h(&[("if-match", "\"x\"")]), "abc", 100),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(
            check(&g, &h(&[("if-none-match", "*")]), "abc", 100),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            check(&Method::PUT, &h(&[("if-none-match", "*")]), "abc", 100),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        let later =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(200));
        let earlier =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(50));
        assert_eq!(
            check(&g, &h(&[("if-modified-since", &later)]), "abc", 100),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            check(&g, &h(&[("if-modified-since", &earlier)]), "abc", 100),
            None
        );
        assert_eq!(
            check(&g, &h(&[("if-unmodified-since", &earlier)]), "abc", 100),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(
            check(&g, &h(&[("if-unmodified-since", &later)]), "abc", 100),
            None
        );
    }
}
