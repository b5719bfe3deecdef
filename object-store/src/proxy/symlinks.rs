//! Symlinks (Swift's `symlink` middleware): an empty object whose system
//! metadata names another object. Reads follow it (at most [`MAX_HOPS`]
//! links in a row), unless the link itself is asked for; a static link
//! also names its target's ETag, checked when it is made and on every read.
//!
//! A link is followed within what the request may reach: the same account
//! (Nubo grants no cross-account access yet), and a temporary URL's
//! container ([`ReadObject::segments_within`]).

use super::object_versions::{is_hidden, versions_container};
use super::objects::{
    ObjectError, ObjectMeta, ObjectPath, ObjectRead, ObjectResult, Objects, PutObject, ReadObject,
    Written,
};
use crate::records::FOLLOWED_ETAG_HEADER;
use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use service_kit::http_util::PATH;
use service_kit::http_util::{header_str, set_header};

/// The stored system metadata that makes an object a symlink.
pub const TARGET_HEADER: &str = "x-object-sysmeta-symlink-target";
const ACCOUNT_KEY: &str = "symlink-target-account";
const ETAG_KEY: &str = "symlink-target-etag";
const BYTES_KEY: &str = "symlink-target-bytes";

/// How many links a read follows in a row (Swift's `symloop_max`).
pub const MAX_HOPS: usize = 2;

/// The content type a link gets when its request names none.
pub const LINK_CONTENT_TYPE: &str = "application/symlink";

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
    pub fn of_stored(headers: &std::collections::BTreeMap<String, String>) -> Option<Link> {
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

impl Objects {
    /// Stores a symlink at `path` (an empty object). A static link's target
    /// must exist with that ETag now (409 otherwise).
    pub async fn put_symlink(
        &self,
        path: ObjectPath,
        mut meta: ObjectMeta,
        link: Link,
    ) -> ObjectResult<Written> {
        let mut bytes = None;
        if let Some(want) = &link.etag {
            let target = ObjectPath::new(
                link.account.as_deref().unwrap_or(&path.account),
                &link.container,
                &link.object,
            );
            let head = self.get(ReadObject::head_of_stored(target)).await;
            let read = match head {
                Ok(r) => r,
                Err(ObjectError::NoSuchObject) => {
                    return Err(ObjectError::Broken(
                        "X-Symlink-Target does not exist".into(),
                    ))
                }
                Err(e) => return Err(e),
            };
            let info = read.info();
            if info.etag != want.trim_matches('"') {
                return Err(ObjectError::Broken(format!(
                    "Object Etag {:?} does not match X-Symlink-Target-Etag header {want:?}",
                    info.etag
                )));
            }
            bytes = Some(info.length);
        }
        meta.system.extend(link.system_meta(bytes));
        if meta.content_type.is_none() {
            meta.content_type = Some(LINK_CONTENT_TYPE.into());
        }
        meta.dlo_manifest = None;
        self.put(PutObject::empty(path, meta)).await
    }

    /// A read that follows symlinks to what they name.
    pub(super) async fn read_through_links(&self, req: ReadObject) -> ObjectResult<ObjectRead> {
        let mut req = req;
        let mut want_etag: Option<String> = None;
        let mut hop = 0;
        while hop <= MAX_HOPS {
            // A versioned object's first read may come back as the version
            // its link names, from the node that holds both: that hop is
            // made (within a temporary URL's reach: a container's own
            // versions are).
            let follow = hop == 0
                && req
                    .segments_within
                    .as_ref()
                    .is_none_or(|c| *c == req.path.container);
            let (fetched, parts, body) = self.fetch_one(req.clone(), follow).await?;
            if fetched.path != req.path {
                want_etag =
                    header_str(&parts.headers, FOLLOWED_ETAG_HEADER).map(|e| e.into_owned());
                req = fetched;
                hop += 1;
            }
            // A multi-range answer carries no ETag of its own: the object's
            // is the node's.
            let stored_etag =
                header_str(&parts.headers, "etag").map(|e| e.trim_matches('"').to_string());
            let read = self.answer_one(&req, parts, body).await?;
            if let Some(want) = want_etag.take() {
                let got = Some(read.info().etag)
                    .filter(|e| !e.is_empty())
                    .or(stored_etag)
                    .unwrap_or_default();
                if got != want.trim_matches('"') {
                    return Err(ObjectError::Broken(format!(
                        "Object Etag {got:?} does not match X-Symlink-Target-Etag header {want:?}"
                    )));
                }
            }
            let Some(link) = Link::of(&read.headers) else {
                let mut read = read;
                if hop > 0 && !is_hidden(&req.path.container) {
                    let p = &req.path;
                    let location = format!(
                        "/v1/{}/{}",
                        utf8_percent_encode(&p.account, PATH),
                        utf8_percent_encode(&format!("{}/{}", p.container, p.object), PATH)
                    );
                    set_header(&mut read.headers, "content-location", &location);
                }
                return Ok(read);
            };
            if hop == MAX_HOPS {
                break;
            }
            if link
                .account
                .as_ref()
                .is_some_and(|a| *a != req.path.account)
            {
                return Err(ObjectError::OutOfScope(
                    "a symlink to another account is not followed".into(),
                ));
            }
            if let Some(c) = &req.segments_within {
                // A versioned object's link to its version stays within.
                if *c != link.container && link.container != versions_container(c) {
                    return Err(ObjectError::OutOfScope(format!(
                        "a symlink to container {} is outside the reach of this request",
                        link.container
                    )));
                }
            }
            want_etag = link.etag.clone();
            req.path = ObjectPath::new(&req.path.account, link.container, link.object);
            hop += 1;
        }
        Err(ObjectError::Broken(format!(
            "Too many levels of symbolic links, maximum allowed is {MAX_HOPS}"
        )))
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
