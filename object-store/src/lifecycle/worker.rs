//! The lifecycle worker of a storage node: applies each bucket's lifecycle
//! rules ([`super::Rules`]) to its objects, versions and multipart uploads.
//!
//! Each node works on the buckets whose container record it keeps as the
//! first primary, so every bucket is looked after by one node (after a
//! ring change, by the new first primary; two nodes working on one bucket
//! at once would do nothing twice, since every action is idempotent). It
//! acts through the object layer, as a proxy would (as Swift's expirer does
//! through its internal client), so Object Lock, versioning and listings
//! are obeyed as for any client:
//! - an expired current object of an unversioned bucket is deleted with a
//!   tombstone dated just after it, so a write made meanwhile survives;
//! - in a versioned bucket it gets a delete marker;
//! - noncurrent versions and lone delete markers are deleted by version id,
//!   and a retained version is left (and counted);
//! - incomplete multipart uploads are aborted.
//!
//! Work is paced at `lifecycle_ops_per_sec` (listings and deletions).

use super::{Facts, Rules};
use crate::device_db::ListingKind;
use crate::proxy::backend::Backend;
use crate::proxy::containers::{ListQuery, ListTarget};
use crate::proxy::object_versions::{State, VersionEntry};
use crate::proxy::objects::{ObjectError, ObjectMeta, ObjectPath, ObjectResult, Objects};
use crate::rate_limit::RateLimiter;
use crate::records::{live_meta, ListingEntry};
use crate::s3::{multipart, tagging};
use crate::storage_node::NodeState;
use serde::Serialize;
use service_kit::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// What one pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LifecycleStats {
    /// Buckets with rules this node looked after.
    pub buckets: u64,
    /// Current objects deleted (or given a delete marker).
    pub expired: u64,
    pub noncurrent_expired: u64,
    pub delete_markers_removed: u64,
    pub uploads_aborted: u64,
    /// Versions due but kept by their retention or legal hold.
    pub retained: u64,
    pub failures: u64,
}

/// The worker's own object layer, and one pass at a time.
pub struct Lifecycle {
    objects: Objects,
    running: tokio::sync::Mutex<()>,
}

impl Lifecycle {
    pub fn new(backend: Backend) -> Lifecycle {
        Lifecycle {
            objects: Objects::new(Arc::new(backend)),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

/// Runs a pass every `every`, as of the time it starts.
pub async fn run(state: Arc<NodeState>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        run_once(&state, Timestamp::now().secs()).await;
    }
}

/// One pass, deciding as if it were `now` (Unix seconds): the timer passes
/// the time; `POST /lifecycle?now=` lets a test see what a later day does.
pub async fn run_once(state: &Arc<NodeState>, now: u64) -> LifecycleStats {
    let lifecycle = &state.lifecycle;
    let _one = lifecycle.running.lock().await;
    let st = state.clone();
    let buckets = tokio::task::spawn_blocking(move || my_buckets(&st))
        .await
        .unwrap_or_default();
    let mut pass = Pass {
        objects: &lifecycle.objects,
        now,
        pace: RateLimiter::new(state.config.lifecycle_ops_per_sec),
        stats: LifecycleStats::default(),
    };
    for (account, bucket) in buckets {
        if let Err(e) = pass.bucket(&account, &bucket).await {
            tracing::warn!(%account, %bucket, error = %e, "lifecycle pass of a bucket failed");
            pass.stats.failures += 1;
        }
    }
    let m = &state.metrics;
    let s = &pass.stats;
    for (counter, n) in [
        (&m.lifecycle_expired, s.expired),
        (&m.lifecycle_noncurrent_expired, s.noncurrent_expired),
        (&m.lifecycle_markers_removed, s.delete_markers_removed),
        (&m.lifecycle_uploads_aborted, s.uploads_aborted),
        (&m.lifecycle_retained, s.retained),
        (&m.lifecycle_failures, s.failures),
        (&m.lifecycle_passes, 1),
    ] {
        crate::metrics::NodeMetrics::add(counter, n);
    }
    pass.stats
}

/// The buckets with rules whose container record this node keeps as the
/// first primary.
fn my_buckets(state: &NodeState) -> Vec<(String, String)> {
    let ring = state.ring();
    let mut found = Vec::new();
    for dev in state.devices() {
        let parts = dev
            .db
            .listing_partitions(ListingKind::Containers)
            .unwrap_or_default();
        for part in parts {
            if part as usize >= ring.partition_count() {
                continue;
            }
            let first = ring.primaries(part).next();
            let mine = first.is_some_and(|d| {
                d.device == dev.name && d.ip == state.config.bind_ip && d.port == state.config.port
            });
            if !mine {
                continue;
            }
            let names = dev
                .db
                .listing_names(ListingKind::Containers, part)
                .unwrap_or_default();
            for hash in names {
                let Ok(Some(rec)) = dev.db.container(part, &hash) else {
                    continue;
                };
                let has_rules = live_meta(&rec.meta).any(|(k, _)| k == super::HEADER);
                if rec.exists() && has_rules {
                    found.push((rec.account, rec.container));
                }
            }
        }
    }
    found
}

struct Pass<'a> {
    objects: &'a Objects,
    now: u64,
    pace: RateLimiter,
    stats: LifecycleStats,
}

impl Pass<'_> {
    async fn paced(&mut self) {
        let wait = self.pace.consume(1);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The next page of a container's listing after `marker` (moved on),
    /// or `None` at its end (or if the container is gone).
    async fn page(
        &mut self,
        target: &ListTarget,
        marker: &mut String,
    ) -> ObjectResult<Option<Vec<ListingEntry>>> {
        self.paced().await;
        let query = ListQuery {
            marker: marker.clone(),
            limit: Some(1000),
            ..Default::default()
        };
        let page = match self.objects.list(target, &query).await {
            Ok(p) => p.entries,
            Err(ObjectError::NoSuchContainer) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(last) = page.last() else {
            return Ok(None);
        };
        *marker = last.name().to_string();
        Ok(Some(page))
    }

    async fn bucket(&mut self, account: &str, bucket: &str) -> ObjectResult<()> {
        // The rules and state every replica agrees on, not this one's.
        let container = self.objects.head_container(account, bucket).await?;
        let Some(rules) = Rules::of(&container) else {
            return Ok(());
        };
        self.stats.buckets += 1;
        if State::of(&container) == State::Off {
            self.unversioned(account, bucket, &rules).await?;
        } else {
            self.versioned(account, bucket, &rules).await?;
        }
        if rules.aborts_uploads() {
            self.uploads(account, bucket, &rules).await?;
        }
        Ok(())
    }

    /// The tags of a stored object, if a rule needs them for `key`.
    async fn tags_if_needed(
        &self,
        rules: &Rules,
        path: &ObjectPath,
    ) -> ObjectResult<Option<Vec<(String, String)>>> {
        if !rules.needs_tags(&path.object) {
            return Ok(None);
        }
        let h = self.objects.head_newest(path).await?;
        Ok(Some(tagging::of(&ObjectMeta::from_stored(&h))))
    }

    async fn unversioned(
        &mut self,
        account: &str,
        bucket: &str,
        rules: &Rules,
    ) -> ObjectResult<()> {
        let target = ListTarget::Container(account.into(), bucket.into());
        let mut marker = String::new();
        while let Some(page) = self.page(&target, &mut marker).await? {
            for entry in page {
                let ListingEntry::Object {
                    name,
                    bytes,
                    last_modified,
                    ..
                } = entry
                else {
                    continue;
                };
                let Some(created) = Timestamp::from_iso8601(&last_modified) else {
                    continue;
                };
                let path = ObjectPath::new(account, bucket, &name);
                let tags = match self.tags_if_needed(rules, &path).await {
                    Ok(t) => t,
                    Err(ObjectError::NoSuchObject) => continue,
                    Err(e) => return Err(e),
                };
                let facts = Facts {
                    key: &name,
                    size: bytes,
                    tags: tags.as_deref(),
                };
                let due = rules
                    .current_expiry(&facts, created.secs())
                    .is_some_and(|(at, _)| at <= self.now);
                if !due {
                    continue;
                }
                self.paced().await;
                // Dated just after the listed version: a newer write wins.
                match self
                    .objects
                    .remove_at(&path, Timestamp(created.0 + 1))
                    .await
                {
                    Ok(()) => self.stats.expired += 1,
                    Err(ObjectError::NoSuchObject | ObjectError::Superseded { .. }) => {}
                    Err(e) => {
                        tracing::warn!(object = %name, error = %e, "lifecycle expiry failed");
                        self.stats.failures += 1;
                    }
                }
            }
        }
        Ok(())
    }

    async fn versioned(&mut self, account: &str, bucket: &str, rules: &Rules) -> ObjectResult<()> {
        let expires_current = rules.rules.iter().any(|r| r.expiration.is_some());
        if !expires_current && !rules.acts_on_versions() {
            return Ok(());
        }
        let (mut key_marker, mut version_marker) = (String::new(), None::<String>);
        // One key's versions, newest first, gathered across pages.
        let mut group: Vec<VersionEntry> = Vec::new();
        loop {
            self.paced().await;
            let page = self
                .objects
                .list_versions(
                    account,
                    bucket,
                    "",
                    &key_marker,
                    version_marker.as_deref(),
                    1000,
                )
                .await?;
            for v in page.entries {
                if group.first().is_some_and(|g| g.key != v.key) {
                    let done = std::mem::take(&mut group);
                    self.key_versions(account, bucket, rules, done).await;
                }
                key_marker = v.key.clone();
                version_marker = Some(v.version_id.clone());
                group.push(v);
            }
            if !page.truncated {
                break;
            }
        }
        if !group.is_empty() {
            self.key_versions(account, bucket, rules, group).await;
        }
        Ok(())
    }

    /// The rules applied to one key's versions (newest first).
    async fn key_versions(
        &mut self,
        account: &str,
        bucket: &str,
        rules: &Rules,
        versions: Vec<VersionEntry>,
    ) {
        let path = ObjectPath::new(account, bucket, &versions[0].key);
        let created = |v: &VersionEntry| {
            Timestamp::from_iso8601(&v.last_modified)
                .unwrap_or_default()
                .secs()
        };
        let mut left = versions.len();
        // The current version: expired, it gets a delete marker.
        let current = &versions[0];
        if current.is_latest && !current.delete_marker {
            if let Some(tags) = self.version_tags(rules, &path, current).await {
                let facts = Facts {
                    key: &current.key,
                    size: current.size,
                    tags: tags.as_deref(),
                };
                let due = rules
                    .current_expiry(&facts, created(current))
                    .is_some_and(|(at, _)| at <= self.now);
                if due {
                    self.paced().await;
                    match self.objects.delete_object(&path).await {
                        Ok(_) => self.stats.expired += 1,
                        Err(e) => self.failed(&path, &e),
                    }
                }
            }
        }
        // Noncurrent versions: each stopped being current when the one
        // above it was made.
        let mut newer_noncurrent = 0u32;
        for pair in versions.windows(2) {
            let (newer, v) = (&pair[0], &pair[1]);
            let Some(tags) = self.version_tags(rules, &path, v).await else {
                continue;
            };
            let facts = Facts {
                key: &v.key,
                size: v.size,
                tags: tags.as_deref(),
            };
            if rules.noncurrent_expires(&facts, created(newer), newer_noncurrent, self.now) {
                self.paced().await;
                match self
                    .objects
                    .delete_version(&path, &v.version_id, false)
                    .await
                {
                    Ok(_) => {
                        self.stats.noncurrent_expired += 1;
                        left -= 1;
                        continue;
                    }
                    Err(ObjectError::Retained(_)) => self.stats.retained += 1,
                    Err(e) => self.failed(&path, &e),
                }
            }
            newer_noncurrent += 1;
        }
        // A delete marker left as the key's only version.
        if current.is_latest
            && current.delete_marker
            && left == 1
            && rules.removes_lone_marker(&current.key)
        {
            self.paced().await;
            match self
                .objects
                .delete_version(&path, &current.version_id, false)
                .await
            {
                Ok(_) => self.stats.delete_markers_removed += 1,
                Err(e) => self.failed(&path, &e),
            }
        }
    }

    /// A version's tags if a rule needs them (`Some(None)`: not needed);
    /// `None` if the version is gone or cannot be read now.
    async fn version_tags(
        &mut self,
        rules: &Rules,
        path: &ObjectPath,
        v: &VersionEntry,
    ) -> Option<Option<Vec<(String, String)>>> {
        if v.delete_marker || !rules.needs_tags(&v.key) {
            return Some(None);
        }
        let stored = match self.objects.stored_version(path, Some(&v.version_id)).await {
            Ok(p) => p,
            Err(_) => return None,
        };
        match self.tags_if_needed(rules, &stored).await {
            Ok(t) => Some(t),
            Err(ObjectError::NoSuchObject) => None,
            Err(e) => {
                self.failed(path, &e);
                None
            }
        }
    }

    fn failed(&mut self, path: &ObjectPath, e: &ObjectError) {
        tracing::warn!(object = %path.object, error = %e, "lifecycle action failed");
        self.stats.failures += 1;
    }

    async fn uploads(&mut self, account: &str, bucket: &str, rules: &Rules) -> ObjectResult<()> {
        let target = ListTarget::Container(account.into(), multipart::segments_container(bucket));
        let mut marker = String::new();
        while let Some(page) = self.page(&target, &mut marker).await? {
            for entry in page {
                let ListingEntry::Object {
                    name,
                    last_modified,
                    ..
                } = &entry
                else {
                    continue;
                };
                let Some((key, id)) = multipart::parse_marker(name) else {
                    continue;
                };
                let initiated = Timestamp::from_iso8601(last_modified)
                    .unwrap_or_default()
                    .secs();
                if !rules.aborts_upload(key, initiated, self.now) {
                    continue;
                }
                self.paced().await;
                match multipart::abort_upload(self.objects, account, bucket, key, id).await {
                    Ok(()) => self.stats.uploads_aborted += 1,
                    Err(e) => {
                        tracing::warn!(%key, upload = %id, error = ?e, "lifecycle abort failed");
                        self.stats.failures += 1;
                    }
                }
            }
        }
        Ok(())
    }
}
