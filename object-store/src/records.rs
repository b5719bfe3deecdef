//! What a storage node stores about objects, containers and accounts, and
//! the updates nodes send each other. Values are JSON in RocksDB: small,
//! self-describing and easy to inspect with `ldb` when something goes wrong.

use crate::body_hashes::{ChunkHashes, Expected};
use serde::{Deserialize, Serialize};
use service_kit::timestamp::Timestamp;
use std::collections::BTreeMap;

/// Bodies up to this size are kept inline, in the device's database with
/// their record (one shared WAL sync), rather than in a file of their own
/// (a data sync and directory syncs each); the proxy also reads bodies up
/// to this size whole before sending them. See the README's figures.
pub const INLINE_MAX: u64 = 64 << 10;

/// The newest state of one object on one device: data or a tombstone.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ObjectRecord {
    pub account: String,
    pub container: String,
    pub object: String,
    pub timestamp: Timestamp,
    pub kind: ObjectKind,
    #[serde(default)]
    pub size: u64,
    /// Hex MD5 of the body (Swift's ETag).
    #[serde(default)]
    pub etag: String,
    /// Hex blake3 of the body.
    #[serde(default)]
    pub blake3: String,
    /// The blake3 chaining value of each 1 MiB chunk of a body larger than
    /// one chunk: what a node checks each chunk against before sending it.
    #[serde(default, skip_serializing_if = "ChunkHashes::is_empty")]
    pub chunk_hashes: ChunkHashes,
    /// The body is kept in the device's database with this record rather
    /// than in a file (small objects: one synced write for both).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
    #[serde(default)]
    pub content_type: String,
    /// Metadata headers returned on GET/HEAD (`x-object-meta-*`, sysmeta,
    /// content-encoding, manifests), lower-case names.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// When a POST last replaced the metadata (at least `timestamp`).
    #[serde(default)]
    pub meta_timestamp: Timestamp,
    /// Unix seconds after which the object is gone (X-Delete-At).
    #[serde(default)]
    pub delete_at: Option<u64>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Data,
    Tombstone,
}

impl ObjectRecord {
    /// The tombstone of an object, deleted at `timestamp`.
    pub fn tombstone(account: &str, container: &str, object: &str, timestamp: Timestamp) -> Self {
        ObjectRecord {
            account: account.to_string(),
            container: container.to_string(),
            object: object.to_string(),
            timestamp,
            kind: ObjectKind::Tombstone,
            size: 0,
            etag: String::new(),
            blake3: String::new(),
            chunk_hashes: ChunkHashes::default(),
            inline: false,
            content_type: String::new(),
            headers: BTreeMap::new(),
            meta_timestamp: timestamp,
            delete_at: None,
        }
    }

    /// What this record's body is checked against.
    pub fn expected_body(&self) -> Expected<'_> {
        Expected {
            size: self.size,
            blake3: &self.blake3,
            chunks: &self.chunk_hashes.0,
        }
    }

    pub fn is_expired(&self, now_secs: u64) -> bool {
        self.delete_at.is_some_and(|at| at <= now_secs)
    }
}

/// A metadata value with the time it was set; an empty value is a removal.
/// Container and account metadata merge key by key, newest wins (as in Swift).
pub type MetaMap = BTreeMap<String, (String, Timestamp)>;

pub fn merge_meta(into: &mut MetaMap, updates: &MetaMap) {
    for (k, (v, ts)) in updates {
        match into.get(k) {
            Some((_, old)) if old >= ts => {}
            _ => {
                into.insert(k.clone(), (v.clone(), *ts));
            }
        }
    }
}

/// Visible metadata: removals dropped.
pub fn live_meta(meta: &MetaMap) -> impl Iterator<Item = (&String, &String)> {
    meta.iter()
        .filter(|(_, (v, _))| !v.is_empty())
        .map(|(k, (v, _))| (k, v))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub account: String,
    pub container: String,
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    #[serde(default)]
    pub meta: MetaMap,
    pub object_count: u64,
    pub bytes_used: u64,
}

impl ContainerRecord {
    pub fn exists(&self) -> bool {
        self.put_timestamp > self.delete_timestamp
    }
}

/// One object's entry in a container listing (or its deletion).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ObjectRow {
    pub timestamp: Timestamp,
    pub deleted: bool,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub etag: String,
    #[serde(default)]
    pub content_type: String,
}

/// The header of a versioned PUT that asks for a [`VersionLink`], and of
/// the answer that says what became of it ([`LinkOutcome`]).
pub const LINK_HEADER: &str = "x-nubo-version-link";
/// A read that wants one record only: the one stored at this timestamp
/// (a replica holding another answers a bare 404, so that the proxy goes
/// on to the next). How a null version current on only some replicas is
/// read from one of them, whatever newer record the others hold.
pub const STORED_AT_HEADER: &str = "x-nubo-stored-at";
/// A GET that asks a node, where the object's current record is a link
/// to one of its versions, for that version (stored beside it) rather than
/// the link; and the answer that gives it, naming the version as the link
/// does (its percent-encoded `<container>/<object>`), with the ETag the
/// link says the version has, for the proxy to check as it checks any
/// static link's.
pub const FOLLOW_VERSION_HEADER: &str = "x-nubo-follow-version-link";
pub const FOLLOWED_VERSION_HEADER: &str = "x-nubo-followed-version";
pub const FOLLOWED_ETAG_HEADER: &str = "x-nubo-followed-version-etag";
/// The listing row of a link made current (as `x-nubo-listing-row` is the
/// version's), for the proxy to make visible before it acknowledges.
pub const LINK_ROW_HEADER: &str = "x-nubo-link-row";

/// What a versioned PUT asks a node to make of the version's object (the
/// `x-nubo-version-link` header): its current record, a link to the
/// version, written in the version's batch with the version's timestamp.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VersionLink {
    /// The container the versions are of, and the object.
    pub container: String,
    pub object: String,
    pub content_type: String,
    /// The link's stored headers (its target, the listing overrides).
    pub headers: BTreeMap<String, String>,
    /// The container servers this replica owes the link's listing row.
    pub targets: Vec<Target>,
}

/// What became of a [`VersionLink`] on one device (the
/// `x-nubo-version-link` header of the node's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkOutcome {
    /// The link is the object's current record.
    Linked,
    /// A newer current record (a racing writer's) stays.
    Older,
    /// The current record is a plain object, the null version, which the
    /// proxy keeps as a version before it links.
    NullCurrent,
}

impl LinkOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkOutcome::Linked => "linked",
            LinkOutcome::Older => "older",
            LinkOutcome::NullCurrent => "null-current",
        }
    }

    pub fn parse(s: &str) -> Option<LinkOutcome> {
        [
            LinkOutcome::Linked,
            LinkOutcome::Older,
            LinkOutcome::NullCurrent,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AccountRecord {
    pub account: String,
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    #[serde(default)]
    pub meta: MetaMap,
    pub container_count: u64,
    pub object_count: u64,
    pub bytes_used: u64,
}

/// One container's entry in an account listing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ContainerRow {
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    pub object_count: u64,
    pub bytes_used: u64,
    /// When the stats were taken; newer stats replace older ones.
    pub stats_timestamp: Timestamp,
}

impl ContainerRow {
    pub fn exists(&self) -> bool {
        self.put_timestamp > self.delete_timestamp
    }
}

/// Where a queued update goes: a device on a node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub addr: String,
    pub device: String,
    pub partition: u32,
}

/// An update this node owes another node: a container listing row after an
/// object PUT/DELETE, or container stats for an account listing. Kept in
/// RocksDB until the target acknowledges it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PendingUpdate {
    pub target: Target,
    pub update: Update,
    /// Sent at once rather than with the once-a-second stats (a container
    /// created or deleted shows in its account's listing right away).
    #[serde(default)]
    pub immediate: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Update {
    ObjectRow {
        account: String,
        container: String,
        object: String,
        row: ObjectRow,
        /// The row of the link a version's write made current in the same
        /// batch, owed to the same container device (a versions container
        /// is placed with its container): one queue entry carries both.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<Box<LinkRow>>,
    },
    ContainerRow {
        account: String,
        container: String,
        row: ContainerRow,
    },
}

/// A version link's listing row, in the account of the version it
/// comes with ([`Update::ObjectRow`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LinkRow {
    pub container: String,
    pub object: String,
    pub row: ObjectRow,
}

/// A version's owed rows with its link's folded in: each link row rides
/// with the version's row owed to the same target, in one queue entry; a
/// link row without such a partner stays an entry of its own.
pub fn fold_link_rows(version: &[PendingUpdate], link: &[PendingUpdate]) -> Vec<PendingUpdate> {
    let mut out = version.to_vec();
    for l in link {
        let Update::ObjectRow {
            account,
            container,
            object,
            row,
            ..
        } = &l.update
        else {
            out.push(l.clone());
            continue;
        };
        let partner = out.iter_mut().find_map(|u| match &mut u.update {
            Update::ObjectRow {
                account: a,
                link: slot @ None,
                ..
            } if u.target == l.target && a == account => Some(slot),
            _ => None,
        });
        match partner {
            Some(slot) => {
                *slot = Some(Box::new(LinkRow {
                    container: container.clone(),
                    object: object.clone(),
                    row: row.clone(),
                }))
            }
            None => out.push(l.clone()),
        }
    }
    out
}

impl Update {
    pub fn timestamp(&self) -> Timestamp {
        match self {
            Update::ObjectRow { row, .. } => row.timestamp,
            Update::ContainerRow { row, .. } => row.stats_timestamp,
        }
    }
}

/// One entry of a listing as nodes send it to the proxy and the Swift API
/// returns it (`format=json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ListingEntry {
    /// Names grouped under a delimiter.
    Subdir { subdir: String },
    /// An object of a container. A large object is listed with its total
    /// size, the manifest's MD5 as `hash`, and the ETags the APIs show for
    /// it (as Swift lists SLO manifests: `slo_etag` quoted, S3's
    /// `md5-of-md5s-N` for S3).
    Object {
        name: String,
        hash: String,
        bytes: u64,
        content_type: String,
        last_modified: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slo_etag: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        s3_etag: Option<String>,
        /// The version a versioned container's current object is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version_id: Option<String>,
    },
    /// A container of an account.
    Container {
        name: String,
        count: u64,
        bytes: u64,
        last_modified: String,
    },
}

/// A listing row's ETag with what a write attached to it (Swift's
/// container update override): `<md5>; s3_etag=<s3>; slo_etag=<slo>;
/// version_id=<id>`.
#[derive(Debug, Default, PartialEq)]
pub struct ListedEtag {
    pub hash: String,
    /// Quoted, as Swift lists it.
    pub slo_etag: Option<String>,
    pub s3_etag: Option<String>,
    pub version_id: Option<String>,
}

pub fn split_listing_etag(etag: &str) -> ListedEtag {
    let mut parts = etag.split(';').map(str::trim);
    let mut out = ListedEtag {
        hash: parts.next().unwrap_or_default().to_string(),
        ..Default::default()
    };
    for p in parts {
        if let Some(v) = p.strip_prefix("slo_etag=") {
            out.slo_etag = Some(format!("\"{}\"", v.trim_matches('"')));
        } else if let Some(v) = p.strip_prefix("s3_etag=") {
            out.s3_etag = Some(v.to_string());
        } else if let Some(v) = p.strip_prefix("version_id=") {
            out.version_id = Some(v.to_string());
        }
    }
    out
}

impl ListingEntry {
    /// The name, or the subdir's prefix: where the next page starts.
    pub fn name(&self) -> &str {
        match self {
            ListingEntry::Subdir { subdir } => subdir,
            ListingEntry::Object { name, .. } | ListingEntry::Container { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod listing_tests {
    use super::ListingEntry;

    #[test]
    fn entries_parse_as_what_they_are() {
        let json = r#"[{"subdir":"d/"},
            {"name":"o","hash":"h","bytes":3,"content_type":"t","last_modified":"x"},
            {"name":"c","count":1,"bytes":3,"last_modified":"x"}]"#;
        let entries: Vec<ListingEntry> = serde_json::from_str(json).unwrap();
        assert!(matches!(&entries[0], ListingEntry::Subdir { subdir } if subdir == "d/"));
        assert!(matches!(&entries[1], ListingEntry::Object { bytes: 3, .. }));
        assert!(matches!(
            &entries[2],
            ListingEntry::Container { count: 1, .. }
        ));
        assert_eq!(
            entries.iter().map(ListingEntry::name).collect::<Vec<_>>(),
            ["d/", "o", "c"]
        );
        let back: Vec<ListingEntry> =
            serde_json::from_slice(&serde_json::to_vec(&entries).unwrap()).unwrap();
        assert_eq!(back, entries);
    }
}

#[cfg(test)]
mod queue_entry_tests {
    use super::*;

    fn owed(account: &str, object: &str, device: &str) -> PendingUpdate {
        PendingUpdate {
            target: Target {
                addr: "127.0.0.1:1".into(),
                device: device.into(),
                partition: 1,
            },
            update: Update::ObjectRow {
                account: account.into(),
                container: "c".into(),
                object: object.into(),
                row: ObjectRow {
                    timestamp: Timestamp(5),
                    deleted: false,
                    size: 1,
                    etag: String::new(),
                    content_type: String::new(),
                },
                link: None,
            },
            immediate: true,
        }
    }

    fn link_of(u: &PendingUpdate) -> Option<&str> {
        match &u.update {
            Update::ObjectRow { link, .. } => link.as_ref().map(|l| l.object.as_str()),
            Update::ContainerRow { .. } => None,
        }
    }

    /// A link row rides with the version row of its target and account;
    /// one without a partner keeps an entry of its own; an entry without a
    /// link reads as it did before links were folded in.
    #[test]
    fn link_rows_fold_into_their_targets_version_rows() {
        let version = [owed("a", "v", "d1"), owed("a", "v", "d2")];
        let link = [
            owed("a", "o", "d2"),
            owed("a", "o", "d3"),
            owed("b", "o", "d1"),
        ];
        let folded = fold_link_rows(&version, &link);
        assert_eq!(folded.len(), 4);
        assert_eq!(
            link_of(&folded[0]),
            None,
            "d1's link row is another account's"
        );
        assert_eq!(link_of(&folded[1]), Some("o"));
        assert_eq!(folded[2].target.device, "d3");
        assert_eq!(link_of(&folded[2]), None);
        assert_eq!(folded[3].target.device, "d1");
        let unlinked = serde_json::to_string(&version[0]).unwrap();
        assert!(!unlinked.contains("link"));
        assert_eq!(
            serde_json::from_str::<PendingUpdate>(&unlinked).unwrap(),
            version[0]
        );
        let linked = serde_json::to_string(&folded[1]).unwrap();
        assert_eq!(
            serde_json::from_str::<PendingUpdate>(&linked).unwrap(),
            folded[1]
        );
    }
}
