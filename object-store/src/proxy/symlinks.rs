//! Symlinks (Swift's `symlink` middleware): an empty object whose system
//! metadata names another object. Reads follow it (at most [`MAX_HOPS`]
//! links in a row), unless the link itself is asked for; a static link
//! also names its target's ETag, checked when it is made and on every read.
//! How a link is stored is [`crate::symlink_format`].
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
use crate::symlink_format::Link;
use percent_encoding::utf8_percent_encode;
use service_kit::http_util::PATH;
use service_kit::http_util::{header_str, set_header};

/// How many links a read follows in a row (Swift's `symloop_max`).
pub const MAX_HOPS: usize = 2;

/// The content type a link gets when its request names none.
pub const LINK_CONTENT_TYPE: &str = "application/symlink";

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
            let read = self.answer_one(&req, parts, body).await?;
            if let Some(want) = want_etag.take() {
                // A version link names a large object by its ETag; its raw
                // manifest (asked for with the manifest) is checked by the
                // ETag it keeps for the object, not the manifest's MD5.
                let info = read.info();
                let got = match info.meta.system("slo-etag").filter(|_| req.manifest) {
                    Some(large) => large.to_string(),
                    None => info.etag,
                };
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
