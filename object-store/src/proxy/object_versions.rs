//! Object versions: one implementation for S3 versioning and Swift's
//! `X-Versions-Enabled` (as Swift's s3api builds on Swift's
//! `object_versioning`).
//!
//! A container's state (enabled, suspended) is its system metadata. Its
//! versions live in a hidden container, named and placed as
//! [`crate::version_names`] says; the null version is the one written
//! while versioning was off or suspended, and a delete marker is an empty
//! object of Swift's marker type.
//!
//! The object in the container itself is the current version:
//! - a plain object: the null version, newer than every stored version;
//! - a static link ([`super::symlinks`]) to the newest stored version,
//!   listed with that version's size, ETag and id;
//! - nothing: the newest stored version is a delete marker, or there is
//!   none.
//!
//! Every write keeps this so: a PUT with versioning enabled moves a null
//! current object into the versions first, stores the new version and
//! links it; a DELETE writes a marker and removes the current object;
//! deleting a version relinks the newest one left. A new version's link
//! and a marker's removal are dated at the version's or marker's own time,
//! and a relink just after the record it replaces, so that of racing
//! writers the newest version or marker is current on every node, whatever
//! order their writes arrive in.

use super::containers::{ListQuery, ListTarget};
use super::objects::{
    CopyObject, ObjectError, ObjectMeta, ObjectPath, ObjectResult, Objects, PutObject, ReadObject,
    WhenBusy, Written,
};
use super::retention::{LockConfig, Retention};
use crate::records::{LinkOutcome, ListingEntry, Target as UpdateTarget, VersionLink};
use crate::symlink_format::Link;
pub use crate::version_names::{is_hidden, versions_container, NULL};
use crate::version_names::{is_version_link_answer, LINK_MARK_KEY};
use crate::version_names::{parse_version_name, version_name, Named};
use http::HeaderMap;
use service_kit::http_util::header_str;
use service_kit::timestamp::Timestamp;
use std::future::Future;
use std::pin::Pin;

/// The container system metadata that holds the state (`true`: enabled,
/// `false`: suspended; absent: never enabled).
pub const STATE_HEADER: &str = "x-container-sysmeta-versions-enabled";
/// The object system metadata item that names a version's id.
pub const VERSION_ID_KEY: &str = "version-id";
/// The content type of a delete marker (Swift's).
pub const MARKER_TYPE: &str = "application/x-deleted;swift_versions_deleted=1";

/// A container's versioning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum State {
    Off,
    Enabled,
    Suspended,
}

impl State {
    pub fn of(container: &HeaderMap) -> State {
        match header_str(container, STATE_HEADER).as_deref() {
            Some("true") => State::Enabled,
            Some("false") => State::Suspended,
            _ => State::Off,
        }
    }
}

/// The time a version id names (`None`: the null version); any other id
/// is not one this store makes.
pub fn version_time(id: &str) -> ObjectResult<Option<Timestamp>> {
    if id == NULL {
        return Ok(None);
    }
    id.parse()
        .map(Some)
        .map_err(|_| ObjectError::InvalidArgument("Invalid version id specified".into()))
}

/// What a DELETE did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deleted {
    /// The version made or removed (`None`: the container is unversioned).
    pub version_id: Option<String>,
    /// A delete marker was made (or removed).
    pub delete_marker: bool,
}

/// One version in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionEntry {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub etag: String,
    pub size: u64,
    pub last_modified: String,
    pub content_type: String,
}

impl VersionEntry {
    /// A listing row as a version: of the container itself (`named`:
    /// `None`; the null version, or a link with an empty id), or of the
    /// versions container.
    fn listed(entry: ListingEntry, named: Option<&Named>) -> Option<VersionEntry> {
        let ListingEntry::Object {
            name,
            hash,
            bytes,
            content_type,
            last_modified,
            slo_etag,
            s3_etag,
            version_id,
        } = entry
        else {
            return None;
        };
        let etag = s3_etag
            .or(slo_etag.map(|e| e.trim_matches('"').to_string()))
            .unwrap_or(hash);
        let (key, id) = match named {
            Some(n) => (n.object.clone(), n.id()),
            None if version_id.is_some() => (name, String::new()),
            None => (name, NULL.to_string()),
        };
        Some(VersionEntry {
            key,
            version_id: id,
            is_latest: named.is_none(),
            delete_marker: content_type == MARKER_TYPE,
            etag,
            size: bytes,
            last_modified,
            content_type,
        })
    }
}

/// A page of versions.
#[derive(Debug, Default)]
pub struct VersionPage {
    pub entries: Vec<VersionEntry>,
    pub truncated: bool,
}

/// What a link to a version says of it.
struct Listed<'a> {
    /// The ETag a read of the version gives (checked by the link).
    etag: &'a str,
    /// Its listing ETag (with a large object's other ETags).
    listed: &'a str,
    size: u64,
    content_type: &'a str,
    id: &'a str,
}

/// Where a write goes, decided before it starts.
pub(super) enum Prepared {
    /// The object itself (versioning off; or suspended: the null version).
    Plain { null_version: bool },
    /// A new version, linked as current once stored, with the container's
    /// default retention (Object Lock) unless the write names one.
    Version {
        at: Timestamp,
        retention: Option<Retention>,
    },
}

impl Prepared {
    /// The path the bytes go to.
    pub(super) fn target(&self, path: &ObjectPath) -> ObjectPath {
        match self {
            Prepared::Plain { .. } => path.clone(),
            Prepared::Version { at, .. } => {
                version_path(path, &version_name(&path.object, *at, false))
            }
        }
    }

    /// The link the nodes are asked to make current with the version, in
    /// the same write, when its size is known before it is sent.
    pub(super) fn link_plan(
        &self,
        path: &ObjectPath,
        content_type: &str,
        size: Option<u64>,
    ) -> Option<LinkPlan> {
        match (self, size) {
            (Prepared::Version { at, .. }, Some(size)) => Some(LinkPlan {
                object: path.clone(),
                at: *at,
                content_type: content_type.to_string(),
                size,
            }),
            _ => None,
        }
    }

    /// The time a version is dated at (its id, and its link's time).
    pub(super) fn version_time(&self) -> Option<Timestamp> {
        match self {
            Prepared::Version { at, .. } => Some(*at),
            Prepared::Plain { .. } => None,
        }
    }

    /// System metadata the stored object gets (where the write sets none
    /// of its own).
    pub(super) fn system(&self) -> Vec<(String, String)> {
        match self {
            Prepared::Plain { .. } => Vec::new(),
            Prepared::Version { at, retention } => {
                let mut items = vec![(VERSION_ID_KEY.to_string(), at.to_string())];
                if let Some(r) = retention {
                    items.extend(r.system_meta());
                }
                items
            }
        }
    }
}

/// A version's link, written by the nodes with the version
/// ([`crate::records::VersionLink`]): its timestamp is the version's, so
/// that of racing writers the newest version's link wins on every node.
pub(super) struct LinkPlan {
    /// The object the version is of.
    pub object: ObjectPath,
    pub at: Timestamp,
    content_type: String,
    size: u64,
}

impl LinkPlan {
    /// What each replica's node is asked to write, once the version's ETag
    /// is known; `replicas`: for each, the container servers it owes the
    /// link's row. The link itself is the same for all.
    pub(super) fn requests(
        &self,
        etag: &str,
        replicas: Vec<Vec<UpdateTarget>>,
    ) -> Vec<VersionLink> {
        let id = self.at.to_string();
        let version = Listed {
            etag,
            listed: etag,
            size: self.size,
            content_type: &self.content_type,
            id: &id,
        };
        let target = version_path(
            &self.object,
            &version_name(&self.object.object, self.at, false),
        );
        let headers =
            crate::object_server::stored_headers(&link_meta(&target, &version).node_headers());
        replicas
            .into_iter()
            .map(|targets| VersionLink {
                container: self.object.container.clone(),
                object: self.object.object.clone(),
                content_type: self.content_type.clone(),
                headers: headers.clone(),
                targets,
            })
            .collect()
    }
}

/// The metadata of a link to a stored version: a static link, listed as
/// the version it stands for.
fn link_meta(target: &ObjectPath, version: &Listed<'_>) -> ObjectMeta {
    let link = Link {
        container: target.container.clone(),
        object: target.object.clone(),
        account: None,
        etag: Some(version.etag.to_string()),
    };
    let mut meta = ObjectMeta {
        content_type: Some(version.content_type.to_string()),
        ..Default::default()
    };
    meta.system.extend(link.system_meta(Some(version.size)));
    meta.system.push((LINK_MARK_KEY.into(), "1".into()));
    meta.system.push((
        "container-update-override-size".into(),
        version.size.to_string(),
    ));
    meta.system.push((
        "container-update-override-etag".into(),
        format!("{}; version_id={}", version.listed, version.id),
    ));
    meta
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Objects {
    /// Before a write of `path`: where it goes. With versioning enabled, a
    /// null current object is kept as a version first; suspended, the
    /// stored null version (if any) makes way for the new one.
    pub(super) fn prepare_write<'a>(
        &'a self,
        path: &'a ObjectPath,
        container: &'a HeaderMap,
    ) -> Boxed<'a, ObjectResult<Prepared>> {
        Box::pin(async move {
            if is_hidden(&path.container) {
                return Ok(Prepared::Plain {
                    null_version: false,
                });
            }
            match State::of(container) {
                State::Off => Ok(Prepared::Plain {
                    null_version: false,
                }),
                State::Suspended => {
                    self.drop_stored_null(path).await?;
                    Ok(Prepared::Plain { null_version: true })
                }
                State::Enabled => {
                    // A null current object is kept as a version once the
                    // nodes say there is one ([`LinkOutcome::NullCurrent`]).
                    let at = Timestamp::now();
                    let retention =
                        LockConfig::of(container)
                            .and_then(|c| c.default)
                            .map(|(mode, secs)| Retention {
                                mode: Some(mode),
                                until: Some(at.secs() + secs),
                                legal_hold: false,
                            });
                    Ok(Prepared::Version { at, retention })
                }
            }
        })
    }

    /// After the bytes are stored: a new version becomes current.
    /// `size`: the version's size, when the writer knows it (a chunked
    /// body's is read back); `listed`: its own listing ETag override (a
    /// large object's, with the ETags each API shows), kept by its link.
    ///
    /// `linked`: what the nodes made of the link they were asked to write
    /// with the version ([`Prepared::link_plan`]); without one, or with a
    /// null version current, the link is written here.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish_write(
        &self,
        path: &ObjectPath,
        prepared: Prepared,
        mut written: Written,
        linked: Option<LinkOutcome>,
        content_type: &str,
        size: Option<u64>,
        listed: Option<&str>,
    ) -> ObjectResult<Written> {
        match prepared {
            Prepared::Plain { null_version } => {
                if null_version {
                    written.version_id = Some(NULL.into());
                }
                Ok(written)
            }
            Prepared::Version { at, .. } => {
                written.version_id = Some(at.to_string());
                match linked {
                    // Current on every replica that stored it.
                    Some(LinkOutcome::Linked) => return Ok(written),
                    // A newer version's link or marker's removal is
                    // current: its writer wrote it, at its own time, to
                    // every replica, so it stays current everywhere.
                    Some(LinkOutcome::Older) => return Ok(written),
                    Some(LinkOutcome::NullCurrent) | None => self.keep_null_current(path).await?,
                }
                let target = version_path(path, &version_name(&path.object, at, false));
                let size = match size {
                    Some(n) => n,
                    None => self.stored_size(&target).await?,
                };
                let version = Listed {
                    etag: &written.etag,
                    listed: listed.unwrap_or(&written.etag),
                    size,
                    content_type,
                    id: &at.to_string(),
                };
                self.link_current(path, &target, &version, at).await?;
                Ok(written)
            }
        }
    }

    async fn stored_size(&self, path: &ObjectPath) -> ObjectResult<u64> {
        let read = self.get(ReadObject::head_of_stored(path.clone())).await?;
        Ok(read.info().length)
    }

    /// Makes `path` a link to the stored version `target`, dated `at`
    /// (the version's own time for a new version, so that the newest of
    /// racing versions and markers is current on every node; just after
    /// the record it replaces when the current version goes back to an
    /// older one: [`Self::relink`]).
    async fn link_current(
        &self,
        path: &ObjectPath,
        target: &ObjectPath,
        version: &Listed<'_>,
        at: Timestamp,
    ) -> ObjectResult<()> {
        let meta = link_meta(target, version);
        let put = PutObject {
            at: Some(at),
            ..PutObject::empty(path.clone(), meta)
        };
        match self.write_plain(put).await {
            // A racing writer's newer record stays current.
            Ok(_) | Err(ObjectError::Superseded { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// With versioning enabled, a plain current object is the null
    /// version: it moves into the versions before anything replaces it.
    /// (Boxed: the copy is itself a write, which may end with this.)
    fn keep_null_current<'a>(&'a self, path: &'a ObjectPath) -> Boxed<'a, ObjectResult<()>> {
        Box::pin(async move {
            // Each primary's own current record, not the newest of them: a
            // null version current on only some replicas (a divergence
            // replication has not repaired yet) is kept even where the
            // others already hold a newer version's link, which is about
            // to replace it everywhere. A client's own symlink is a null
            // version too.
            let heads = self.backend.heads_of_primaries(&path.node()).await;
            let Some(at) = heads
                .iter()
                .filter(|h| !is_version_link_answer(h))
                .filter_map(|h| header_str(h, "x-timestamp")?.parse::<Timestamp>().ok())
                .max()
            else {
                return Ok(());
            };
            let to = ObjectPath::new(
                &path.account,
                versions_container(&path.container),
                version_name(&path.object, at, true),
            );
            let copy = CopyObject {
                source_stored_at: Some(at),
                ..CopyObject::as_stored(path.clone(), to)
            };
            let copied = self.copy(copy).await;
            match copied {
                Ok(_) | Err(ObjectError::NoSuchObject) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// The current object's headers as stored (a link as itself).
    async fn current(&self, path: &ObjectPath) -> ObjectResult<Option<HeaderMap>> {
        match self.head_newest(path).await {
            Ok(h) => Ok(Some(h)),
            Err(ObjectError::NoSuchObject) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored versions of `object`, newest first (at most `limit`).
    async fn stored_versions(
        &self,
        path: &ObjectPath,
        limit: usize,
    ) -> ObjectResult<Vec<(Named, ListingEntry)>> {
        let target =
            ListTarget::Container(path.account.clone(), versions_container(&path.container));
        let query = ListQuery {
            prefix: format!("{}\0", path.object),
            limit: Some(limit),
            ..Default::default()
        };
        let entries = match self.list(&target, &query).await {
            Ok(page) => page.entries,
            Err(ObjectError::NoSuchContainer) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let named = parse_version_name(e.name())?;
                (named.object == path.object).then_some((named, e))
            })
            .collect())
    }

    /// Suspended: a null version among the stored ones is removed (the
    /// write about to happen replaces it).
    async fn drop_stored_null(&self, path: &ObjectPath) -> ObjectResult<()> {
        for (named, entry) in self.stored_versions(path, 10_000).await? {
            if named.null {
                let p = version_path(path, entry.name());
                match self.remove(&p).await {
                    Ok(()) | Err(ObjectError::NoSuchObject) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// A DELETE of `path` without a version: in a versioned container, a
    /// delete marker becomes current. `None`: the container is not
    /// versioned.
    pub(super) async fn delete_current(
        &self,
        path: &ObjectPath,
        container: &HeaderMap,
    ) -> Option<ObjectResult<Deleted>> {
        let state = State::of(container);
        if state == State::Off || is_hidden(&path.container) {
            return None;
        }
        Some(
            async {
                let null = state == State::Suspended;
                if null {
                    self.drop_stored_null(path).await?;
                } else {
                    self.keep_null_current(path).await?;
                }
                let at = Timestamp::now();
                let marker = version_path(path, &version_name(&path.object, at, null));
                let mut meta = ObjectMeta {
                    content_type: Some(MARKER_TYPE.into()),
                    ..Default::default()
                };
                if !null {
                    meta.system.push((VERSION_ID_KEY.into(), at.to_string()));
                }
                self.write_plain(PutObject::empty(marker, meta)).await?;
                // At the marker's time, as a link is at its version's: the
                // newer of a racing PUT and DELETE is current on every node.
                done_or_overtaken(self.remove_at(path, at).await)?;
                Ok(Deleted {
                    version_id: Some(if null { NULL.into() } else { at.to_string() }),
                    delete_marker: true,
                })
            }
            .await,
        )
    }

    /// Deletes one version of `path` (`null` included), unless its
    /// retention forbids it ([`super::retention`]); the newest one left
    /// becomes current. Deletes of one object's versions take turns (the
    /// name's lease): each relinks what the one before it left, so that
    /// two of them cannot each link a version the other removed.
    pub async fn delete_version(
        &self,
        path: &ObjectPath,
        id: &str,
        bypass_governance: bool,
    ) -> ObjectResult<Deleted> {
        // Boxed, as [`Objects::write_if`]'s write.
        let work = Box::pin(self.delete_version_now(path, id, bypass_governance));
        self.leased(path, WhenBusy::Wait, work).await
    }

    async fn delete_version_now(
        &self,
        path: &ObjectPath,
        id: &str,
        bypass_governance: bool,
    ) -> ObjectResult<Deleted> {
        let (version, marker) = match self.find_version(path, id).await {
            Ok(found) => found,
            Err(ObjectError::NoSuchVersion) => {
                return Ok(Deleted {
                    version_id: Some(id.to_string()),
                    delete_marker: false,
                })
            }
            Err(e) => return Err(e),
        };
        if let Ok(h) = self.head_newest(&version).await {
            let now = Timestamp::now().secs();
            if let Some(why) = Retention::of(&h).refuses_delete(now, bypass_governance) {
                return Err(ObjectError::Retained(why));
            }
        }
        done_or_overtaken(self.remove(&version).await)?;
        self.relink(path, &version).await?;
        Ok(Deleted {
            version_id: Some(id.to_string()),
            delete_marker: marker,
        })
    }

    /// After the version `deleted` is removed: makes the newest stored
    /// version current, where the current record was a link to `deleted`
    /// or there is none (a marker was current). A null version current (a
    /// plain object, always the newest) or a link to another version (the
    /// newest, or one written since) stays.
    ///
    /// The link (or the removal, when a marker or nothing is left) is
    /// dated one tick after the current record it replaces, not now: a
    /// version or marker written meanwhile is dated after that record
    /// too, later than this relink, so it stays current on every node
    /// whatever order the writes reach them in.
    async fn relink(&self, path: &ObjectPath, deleted: &ObjectPath) -> ObjectResult<()> {
        let (current, current_at) = self.newest_record(path).await?;
        if let Some(c) = current {
            let links_deleted = is_version_link_answer(&c)
                && Link::of(&c).is_some_and(|l| {
                    l.container == deleted.container && l.object == deleted.object
                });
            if !links_deleted {
                return Ok(());
            }
        }
        let at = current_at.map_or_else(Timestamp::now, |t| Timestamp(t.0 + 1));
        let newest = self.stored_versions(path, 1).await?.into_iter().next();
        match newest {
            Some((named, entry)) if !is_marker(&entry) => {
                let ListingEntry::Object {
                    hash,
                    bytes,
                    content_type,
                    slo_etag,
                    s3_etag,
                    ..
                } = &entry
                else {
                    return Ok(());
                };
                let etag = slo_etag
                    .as_deref()
                    .map(|e| e.trim_matches('"').to_string())
                    .unwrap_or_else(|| hash.clone());
                let mut listed = hash.clone();
                if let Some(s3) = s3_etag {
                    listed.push_str(&format!("; s3_etag={s3}"));
                }
                if slo_etag.is_some() {
                    listed.push_str(&format!("; slo_etag={etag}"));
                }
                let target = version_path(path, entry.name());
                let version = Listed {
                    etag: &etag,
                    listed: &listed,
                    size: *bytes,
                    content_type,
                    id: &named.id(),
                };
                self.link_current(path, &target, &version, at).await
            }
            _ => done_or_overtaken(self.remove_at(path, at).await),
        }
    }

    /// The path of a version by its id, and whether it is a delete marker.
    pub(super) async fn find_version(
        &self,
        path: &ObjectPath,
        id: &str,
    ) -> ObjectResult<(ObjectPath, bool)> {
        if id == NULL {
            if let Some(current) = self.current(path).await? {
                if !is_version_link_answer(&current) {
                    return Ok((path.clone(), false));
                }
            }
            for (named, entry) in self.stored_versions(path, 10_000).await? {
                if named.null {
                    return Ok((version_path(path, entry.name()), is_marker(&entry)));
                }
            }
            return Err(ObjectError::NoSuchVersion);
        }
        let Some(at) = version_time(id)? else {
            return Err(ObjectError::NoSuchVersion);
        };
        let p = version_path(path, &version_name(&path.object, at, false));
        match self.head_newest(&p).await {
            Ok(h) => {
                let marker = header_str(&h, "content-type").as_deref() == Some(MARKER_TYPE);
                Ok((p, marker))
            }
            Err(ObjectError::NoSuchObject) => Err(ObjectError::NoSuchVersion),
            Err(e) => Err(e),
        }
    }

    /// Where a version of `path` is stored: the one named (`null`
    /// included), or the current one; a delete marker is not a version
    /// that holds data ([`ObjectError::DeleteMarker`]).
    pub async fn stored_version(
        &self,
        path: &ObjectPath,
        version: Option<&str>,
    ) -> ObjectResult<ObjectPath> {
        if let Some(id) = version {
            let (p, marker) = self.find_version(path, id).await?;
            if marker {
                return Err(ObjectError::DeleteMarker {
                    version_id: id.to_string(),
                });
            }
            return Ok(p);
        }
        let current = self.current(path).await?.ok_or(ObjectError::NoSuchObject)?;
        // A link to a version stands for it; any other object is itself.
        Ok(match Link::of(&current) {
            Some(link) if link.container == versions_container(&path.container) => {
                ObjectPath::new(&path.account, link.container, link.object)
            }
            _ => path.clone(),
        })
    }

    /// Every version of the objects under `prefix` in a container, key by
    /// key and newest first, from after (`key_marker`, `version_marker`).
    pub async fn list_versions(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        key_marker: &str,
        version_marker: Option<&str>,
        limit: usize,
    ) -> ObjectResult<VersionPage> {
        // The null versions that are current: plain objects of the
        // container (links stand for stored versions, listed below).
        let plain = self
            .list(
                &ListTarget::Container(account.into(), container.into()),
                &ListQuery {
                    prefix: prefix.into(),
                    marker: key_marker.to_string(),
                    limit: Some(limit + 1),
                    ..Default::default()
                },
            )
            .await?
            .entries;
        // Stored versions: after the marker's version, or after all of
        // the marker key's.
        let stored_marker = match version_marker {
            Some(NULL) => format!("{key_marker}\0"),
            Some(id) => match id.parse::<Timestamp>() {
                Ok(at) => version_name(key_marker, at, false),
                Err(_) => format!("{key_marker}\u{1}"),
            },
            None if key_marker.is_empty() => String::new(),
            None => format!("{key_marker}\u{1}"),
        };
        let stored = match self
            .list(
                &ListTarget::Container(account.into(), versions_container(container)),
                &ListQuery {
                    prefix: prefix.into(),
                    marker: stored_marker,
                    limit: Some(limit + 1),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(page) => page.entries,
            Err(ObjectError::NoSuchContainer) => Vec::new(),
            Err(e) => return Err(e),
        };
        let more = plain.len() > limit || stored.len() > limit;
        let mut merged: Vec<(String, u8, u64, VersionEntry)> = Vec::new();
        for e in plain {
            let Some(v) = VersionEntry::listed(e, None) else {
                continue;
            };
            // A link stands for a stored version, listed below; a plain
            // object is the null version, current (already listed when the
            // page before ended with it).
            let link = v.version_id.is_empty();
            let listed_before = version_marker == Some(NULL) && v.key == key_marker;
            if !link && !listed_before {
                merged.push((v.key.clone(), 0, 0, v));
            }
        }
        for e in stored {
            let Some(named) = parse_version_name(e.name()) else {
                continue;
            };
            if let Some(v) = VersionEntry::listed(e, Some(&named)) {
                merged.push((named.object.clone(), 1, u64::MAX - named.at.0, v));
            }
        }
        merged.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        let mut entries: Vec<VersionEntry> = Vec::new();
        // A page that goes on within the marker's key has its current
        // version on the page before.
        let resumed_key = version_marker.is_some().then_some(key_marker);
        for (_, _, _, mut v) in merged {
            // The newest of a key is current, unless a plain null one is.
            if entries.last().is_none_or(|l| l.key != v.key) && resumed_key != Some(&v.key) {
                v.is_latest = true;
            }
            entries.push(v);
        }
        let truncated = more || entries.len() > limit;
        entries.truncate(limit);
        Ok(VersionPage { entries, truncated })
    }

    /// Sets a container's versioning (`true`: enabled, `false`:
    /// suspended); enabling makes its versions container.
    pub async fn set_versioning(
        &self,
        account: &str,
        container: &str,
        enabled: bool,
    ) -> ObjectResult<()> {
        if enabled {
            self.put_container(account, &versions_container(container), HeaderMap::new())
                .await?;
        } else if LockConfig::of(&self.head_container(account, container).await?).is_some() {
            return Err(ObjectError::InvalidState(
                "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.".into(),
            ));
        }
        let mut h = HeaderMap::new();
        service_kit::http_util::set_header(
            &mut h,
            STATE_HEADER,
            if enabled { "true" } else { "false" },
        );
        self.post_container(account, container, h).await
    }
}

/// Where the version `name` of `path` is stored.
fn version_path(path: &ObjectPath, name: &str) -> ObjectPath {
    ObjectPath::new(&path.account, versions_container(&path.container), name)
}

fn is_marker(entry: &ListingEntry) -> bool {
    matches!(entry, ListingEntry::Object { content_type, .. } if content_type == MARKER_TYPE)
}

/// A change of the current object that found nothing to change, or that
/// a racing writer's newer change overtook: settling sorts it out.
fn done_or_overtaken(r: ObjectResult<()>) -> ObjectResult<()> {
    match r {
        Err(ObjectError::NoSuchObject | ObjectError::Superseded { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_from_metadata() {
        let mut h = HeaderMap::new();
        assert_eq!(State::of(&h), State::Off);
        service_kit::http_util::set_header(&mut h, STATE_HEADER, "true");
        assert_eq!(State::of(&h), State::Enabled);
        service_kit::http_util::set_header(&mut h, STATE_HEADER, "false");
        assert_eq!(State::of(&h), State::Suspended);
        assert!(is_hidden(&versions_container("c")));
    }
}
