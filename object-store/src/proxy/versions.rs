//! Swift's older object versioning (`versioned_writes`), for the writes of
//! both APIs, as Swift's s3api writes pass the same middleware: a
//! container with `X-Versions-Location: <archive>` (stack mode) or
//! `X-History-Location: <archive>` (history mode) keeps each overwritten
//! object in the archive container as `<len:03x><name>/<timestamp>`.
//!
//! - PUT (and copy) over an object copies the current one to the archive
//!   first (a large object as its manifest).
//! - DELETE in stack mode restores the newest archived version (and
//!   removes it from the archive); with none archived, it deletes.
//! - DELETE in history mode archives the current object, then a delete
//!   marker, then deletes.
//!
//! A missing or unwritable archive container refuses the write (412), as
//! Swift does; nothing is changed then.

use super::containers::{ListQuery, ListTarget};
use super::objects::{
    CopyObject, ObjectError, ObjectMeta, ObjectPath, ObjectResult, Objects, PutObject,
};
use crate::records::ListingEntry;
use http::HeaderMap;
use service_kit::http_util::header_str;
use std::future::Future;
use std::pin::Pin;

pub const VERSIONS_LOCATION: &str = "x-versions-location";
pub const HISTORY_LOCATION: &str = "x-history-location";

/// The content type of a history-mode delete marker (Swift's).
pub const DELETE_MARKER_TYPE: &str = "application/x-deleted;swift_versions_deleted=1";

/// How a container keeps old versions.
#[derive(Clone, Debug, PartialEq)]
pub enum Versioning {
    /// Stack mode: a DELETE brings the previous version back.
    Stack(String),
    /// History mode: a DELETE archives the current version too.
    History(String),
}

impl Versioning {
    /// A container's mode, from its headers.
    pub fn of(container: &HeaderMap) -> Option<Versioning> {
        let location = |name| {
            header_str(container, name)
                .map(|v| {
                    percent_encoding::percent_decode_str(v.trim())
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .filter(|v| !v.is_empty())
        };
        match (location(VERSIONS_LOCATION), location(HISTORY_LOCATION)) {
            (Some(c), _) => Some(Versioning::Stack(c)),
            (None, Some(c)) => Some(Versioning::History(c)),
            (None, None) => None,
        }
    }

    fn archive(&self) -> &str {
        match self {
            Versioning::Stack(c) | Versioning::History(c) => c,
        }
    }
}

/// Checks the versioning headers of a container write: one mode at a
/// time, naming a container.
pub fn check_headers(headers: &HeaderMap) -> Result<(), String> {
    let set = |name| header_str(headers, name).is_some_and(|v| !v.trim().is_empty());
    if set(VERSIONS_LOCATION) && set(HISTORY_LOCATION) {
        return Err(
            "Only one of X-Versions-Location or X-History-Location may be specified".into(),
        );
    }
    for name in [VERSIONS_LOCATION, HISTORY_LOCATION] {
        if let Some(v) = header_str(headers, name) {
            let decoded = percent_encoding::percent_decode_str(v.trim()).decode_utf8_lossy();
            if decoded.contains('/') {
                return Err(format!("{name} must name a container"));
            }
        }
    }
    Ok(())
}

/// The archive prefix of an object's versions.
fn archive_prefix(object: &str) -> String {
    format!("{:03x}{object}/", object.len())
}

impl Objects {
    /// Before `path` is overwritten: copies its current object into the
    /// container's archive, if the container keeps versions.
    pub(super) async fn archive_current(
        &self,
        path: &ObjectPath,
        container: &HeaderMap,
    ) -> ObjectResult<()> {
        let Some(mode) = Versioning::of(container) else {
            return Ok(());
        };
        self.archive_copy(path, mode.archive()).await.map(drop)
    }

    /// Copies the current object at `path` into `archive`; whether there
    /// was one. (Boxed: the copy is itself a write, which may archive.)
    fn archive_copy<'a>(
        &'a self,
        path: &'a ObjectPath,
        archive: &'a str,
    ) -> Pin<Box<dyn Future<Output = ObjectResult<bool>> + Send + 'a>> {
        Box::pin(self.archive_copy_now(path, archive))
    }

    async fn archive_copy_now(&self, path: &ObjectPath, archive: &str) -> ObjectResult<bool> {
        let current = match self.head_newest(path).await {
            Ok(h) => h,
            Err(ObjectError::NoSuchObject) => return Ok(false),
            Err(e) => return Err(e),
        };
        let stamp = header_str(&current, "x-timestamp").unwrap_or_default();
        let name = format!("{}{stamp}", archive_prefix(&path.object));
        let copied = self
            .copy(CopyObject::as_stored(
                path.clone(),
                ObjectPath::new(&path.account, archive, name),
            ))
            .await;
        match copied {
            Ok(_) => Ok(true),
            // The object went away meanwhile: nothing to keep.
            Err(ObjectError::NoSuchObject) => Ok(false),
            Err(ObjectError::NoSuchContainer) => {
                Err(ObjectError::PreconditionFailed { etag: None })
            }
            Err(e) => Err(e),
        }
    }

    /// A DELETE of `path` in a container that keeps versions; `None` when
    /// it does not (the caller deletes as usual).
    pub(super) async fn delete_versioned(
        &self,
        path: &ObjectPath,
        container: &HeaderMap,
    ) -> Option<ObjectResult<()>> {
        let mode = Versioning::of(container)?;
        Some(match mode {
            Versioning::Stack(archive) => self.restore_previous(path, &archive).await,
            Versioning::History(archive) => {
                async {
                    let existed = self.archive_copy(path, &archive).await?;
                    let marker = ObjectPath::new(
                        &path.account,
                        &archive,
                        format!(
                            "{}{}",
                            archive_prefix(&path.object),
                            service_kit::timestamp::Timestamp::now()
                        ),
                    );
                    let meta = ObjectMeta {
                        content_type: Some(DELETE_MARKER_TYPE.into()),
                        ..Default::default()
                    };
                    self.put(PutObject::empty(marker, meta)).await?;
                    if !existed {
                        return Err(ObjectError::NoSuchObject);
                    }
                    self.remove(path).await
                }
                .await
            }
        })
    }

    /// Stack mode: the newest archived version (not a delete marker)
    /// replaces the object, and leaves the archive; with none, the object
    /// is deleted.
    async fn restore_previous(&self, path: &ObjectPath, archive: &str) -> ObjectResult<()> {
        let target = ListTarget::Container(path.account.clone(), archive.to_string());
        let query = ListQuery {
            prefix: archive_prefix(&path.object),
            reverse: true,
            limit: Some(100),
            ..Default::default()
        };
        let newest = match self.list(&target, &query).await {
            Ok(page) => page.entries,
            Err(ObjectError::NoSuchContainer) => Vec::new(),
            Err(e) => return Err(e),
        };
        for entry in newest {
            let ListingEntry::Object {
                name, content_type, ..
            } = entry
            else {
                continue;
            };
            if content_type == DELETE_MARKER_TYPE {
                continue;
            }
            let version = ObjectPath::new(&path.account, archive, name);
            // The current object goes first, so that the restoring write
            // does not archive it again.
            match self.remove(path).await {
                Ok(()) | Err(ObjectError::NoSuchObject) => {}
                Err(e) => return Err(e),
            }
            let restored = self
                .copy(CopyObject::as_stored(version.clone(), path.clone()))
                .await;
            match restored {
                Ok(_) => return self.remove(&version).await,
                // Gone meanwhile (another DELETE restored it): the next.
                Err(ObjectError::NoSuchObject) => continue,
                Err(e) => return Err(e),
            }
        }
        self.remove(path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::http_util::set_header;

    #[test]
    fn modes_and_names() {
        let mut h = HeaderMap::new();
        assert_eq!(Versioning::of(&h), None);
        set_header(&mut h, HISTORY_LOCATION, "arch%20ive");
        assert_eq!(
            Versioning::of(&h),
            Some(Versioning::History("arch ive".into()))
        );
        set_header(&mut h, VERSIONS_LOCATION, "stack");
        assert!(check_headers(&h).is_err(), "both modes at once");
        let mut one = HeaderMap::new();
        set_header(&mut one, VERSIONS_LOCATION, "a/b");
        assert!(check_headers(&one).is_err());
        assert_eq!(archive_prefix("obj"), "003obj/");
        assert_eq!(
            archive_prefix(&"x".repeat(300)),
            format!("12c{}/", "x".repeat(300))
        );
    }
}
