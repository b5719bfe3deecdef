//! A symlink as stored (Swift's `symlink` middleware's format): the system
//! metadata that makes an empty object a link to another, and the headers
//! Swift shows for it. Shared by the proxy, which makes and follows links
//! ([`crate::proxy::symlinks`]), and the storage nodes, which serve a
//! version stored beside the link that names it
//! ([`crate::object_server`]).

use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use service_kit::http_util::PATH;
use service_kit::http_util::{header_str, set_header};
use std::collections::BTreeMap;

/// The stored system metadata that makes an object a symlink.
pub const TARGET_HEADER: &str = "x-object-sysmeta-symlink-target";
const ACCOUNT_KEY: &str = "symlink-target-account";
const ETAG_KEY: &str = "symlink-target-etag";
const BYTES_KEY: &str = "symlink-target-bytes";

/// A link's target, as a request names it or as it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub container: String,
    pub object: String,
    /// Another account's object (`None`: the link's own account).
    pub account: Option<String>,
    /// A static link: the ETag the target must have.
    pub etag: Option<String>,
}

impl Link {
    /// Parses `X-Symlink-Target` (`<container>/<object>`, percent-encoded).
    pub fn parse(target: &str) -> Option<(String, String)> {
        let decoded = percent_decode_str(target).decode_utf8().ok()?;
        let (c, o) = decoded.trim_start_matches('/').split_once('/')?;
        if c.is_empty() || o.is_empty() {
            return None;
        }
        Some((c.to_string(), o.to_string()))
    }

    /// The link a stored object's headers make, if it is one.
    pub fn of(headers: &HeaderMap) -> Option<Link> {
        let (container, object) = Link::parse(&header_str(headers, TARGET_HEADER)?)?;
        let sys = |key: &str| {
            header_str(headers, &format!("x-object-sysmeta-{key}")).map(|v| v.into_owned())
        };
        Some(Link {
            container,
            object,
            account: sys(ACCOUNT_KEY),
            etag: sys(ETAG_KEY),
        })
    }

    /// The link a stored record's headers make, if it is one (as a node
    /// holds it: [`Link::of`] reads a node's answer).
    pub fn of_stored(headers: &BTreeMap<String, String>) -> Option<Link> {
        let (container, object) = Link::parse(headers.get(TARGET_HEADER)?)?;
        let sys = |key: &str| headers.get(&format!("x-object-sysmeta-{key}")).cloned();
        Some(Link {
            container,
            object,
            account: sys(ACCOUNT_KEY),
            etag: sys(ETAG_KEY),
        })
    }

    /// `<container>/<object>`, quoted as Swift shows it.
    pub fn target(&self) -> String {
        utf8_percent_encode(&format!("{}/{}", self.container, self.object), PATH).to_string()
    }

    /// The system metadata that stores this link (`bytes`: a static
    /// link's target size).
    pub fn system_meta(&self, bytes: Option<u64>) -> Vec<(String, String)> {
        let mut items = vec![("symlink-target".to_string(), self.target())];
        if let Some(a) = &self.account {
            items.push((ACCOUNT_KEY.into(), a.clone()));
        }
        if let Some(e) = &self.etag {
            items.push((ETAG_KEY.into(), e.clone()));
        }
        if let Some(b) = bytes {
            items.push((BYTES_KEY.into(), b.to_string()));
        }
        items
    }

    /// The headers Swift shows for a link read as itself.
    pub fn client_headers(headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        if let Some(link) = Link::of(headers) {
            set_header(&mut out, "x-symlink-target", &link.target());
            if let Some(a) = &link.account {
                set_header(&mut out, "x-symlink-target-account", a);
            }
            if let Some(e) = &link.etag {
                set_header(&mut out, "x-symlink-target-etag", e);
            }
            if let Some(b) = header_str(headers, &format!("x-object-sysmeta-{BYTES_KEY}")) {
                set_header(&mut out, "x-symlink-target-bytes", &b);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_quote_as_swift_does() {
        assert_eq!(Link::parse("c/a%20b/c"), Some(("c".into(), "a b/c".into())));
        assert_eq!(Link::parse("/c/o"), Some(("c".into(), "o".into())));
        for bad in ["c", "c/", "/o", "", "%ff/x"] {
            assert_eq!(Link::parse(bad), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        set_header(&mut h, TARGET_HEADER, "c/a%20b");
        set_header(&mut h, "x-object-sysmeta-symlink-target-etag", "abc");
        let link = Link::of(&h).expect("a link");
        assert_eq!(link.object, "a b");
        assert_eq!(link.etag.as_deref(), Some("abc"));
        assert_eq!(link.target(), "c/a%20b");
        let shown = Link::client_headers(&h);
        assert_eq!(shown["x-symlink-target"], "c/a%20b");
        assert_eq!(shown["x-symlink-target-etag"], "abc");
    }
}
