//! Preconditions on an object (If-Match, If-None-Match, If-Modified-Since,
//! If-Unmodified-Since, RFC 9110 §13) against its ETag and modification
//! time. Swift parses them from headers, S3 from its typed input; both
//! are judged here.

use http::HeaderMap;

/// What a request makes its answer depend on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conditions {
    /// A list of ETags (quoted or not, `W/` ignored) or `*`.
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    /// Unix seconds.
    pub if_modified_since: Option<u64>,
    pub if_unmodified_since: Option<u64>,
}

/// Why a precondition stops a request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Failed {
    /// 304: the client's copy is current (reads only).
    NotModified,
    /// 412.
    PreconditionFailed,
}

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

impl Conditions {
    /// From HTTP request headers; a date that does not parse is ignored,
    /// as RFC 9110 says.
    pub fn from_headers(h: &HeaderMap) -> Conditions {
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Conditions {
            if_match: text("if-match"),
            if_none_match: text("if-none-match"),
            if_modified_since: date(h, "if-modified-since"),
            if_unmodified_since: date(h, "if-unmodified-since"),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    /// Judges the conditions for a read (GET/HEAD) or a write.
    pub fn check(&self, read: bool, etag: &str, modified_secs: u64) -> Result<(), Failed> {
        if let Some(v) = &self.if_match {
            if !etag_listed(v, etag) {
                return Err(Failed::PreconditionFailed);
            }
        } else if let Some(since) = self.if_unmodified_since {
            if modified_secs > since {
                return Err(Failed::PreconditionFailed);
            }
        }
        if let Some(v) = &self.if_none_match {
            if etag_listed(v, etag) {
                return Err(if read {
                    Failed::NotModified
                } else {
                    Failed::PreconditionFailed
                });
            }
        } else if let Some(since) = self.if_modified_since {
            if read && modified_secs <= since {
                return Err(Failed::NotModified);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> Conditions {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        Conditions::from_headers(&m)
    }

    #[test]
    fn preconditions() {
        let pf = Err(Failed::PreconditionFailed);
        let nm = Err(Failed::NotModified);
        assert_eq!(h(&[]).check(true, "abc", 100), Ok(()));
        assert_eq!(
            h(&[("if-match", "\"abc\"")]).check(true, "abc", 100),
            Ok(())
        );
        assert_eq!(
            h(&[("if-match", "\"x\", \"abc\"")]).check(true, "abc", 100),
            Ok(())
        );
        assert_eq!(h(&[("if-match", "\"x\"")]).check(true, "abc", 100), pf);
        assert_eq!(h(&[("if-none-match", "*")]).check(true, "abc", 100), nm);
        assert_eq!(h(&[("if-none-match", "*")]).check(false, "abc", 100), pf);
        let later =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(200));
        let earlier =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(50));
        assert_eq!(
            h(&[("if-modified-since", &later)]).check(true, "abc", 100),
            nm
        );
        assert_eq!(
            h(&[("if-modified-since", &earlier)]).check(true, "abc", 100),
            Ok(())
        );
        assert_eq!(
            h(&[("if-unmodified-since", &earlier)]).check(true, "abc", 100),
            pf
        );
        assert_eq!(
            h(&[("if-unmodified-since", &later)]).check(true, "abc", 100),
            Ok(())
        );
        assert_eq!(
            h(&[("if-modified-since", "not a date")]),
            Conditions::default()
        );
    }
}
