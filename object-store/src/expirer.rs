//! The expirer: objects whose `X-Delete-At` has passed are already hidden
//! from GET; this turns them into tombstones on each replica and removes
//! them from their container listings (rows queued like any delete).

use crate::records::{ObjectKind, ObjectRecord, ObjectRow, PendingUpdate, Target, Update};
use crate::storage_node::{Device, NodeState};
use serde::Serialize;
use service_kit::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Clone, Serialize)]
pub struct ExpireStats {
    pub expired: u64,
    pub failures: u64,
}

pub async fn expire_once(state: &Arc<NodeState>) -> ExpireStats {
    let mut stats = ExpireStats::default();
    let now = Timestamp::now().secs();
    for dev in state.devices() {
        let st = state.clone();
        let d = dev.clone();
        let s = tokio::task::spawn_blocking(move || expire_device(&st, &d, now))
            .await
            .unwrap_or_default();
        stats.expired += s.expired;
        stats.failures += s.failures;
    }
    if stats.expired > 0 {
        state.updates_queued.notify_one();
    }
    crate::metrics::NodeMetrics::add(&state.metrics.expired, stats.expired);
    stats
}

fn expire_device(state: &NodeState, dev: &Device, now: u64) -> ExpireStats {
    let mut stats = ExpireStats::default();
    let ring = state.ring();
    for item in dev.db.objects() {
        let (part, hash, rec) = match item {
            Ok(o) => (o.part, o.hash, o.record),
            Err(e) => {
                tracing::error!(error = %e, device = %dev.name, "expirer cannot read a record");
                stats.failures += 1;
                continue;
            }
        };
        if rec.kind != ObjectKind::Data || !rec.is_expired(now) {
            continue;
        }
        // The tombstone is dated at the expiry, as in Swift, but never
        // before the version it replaces.
        let at = Timestamp::from_secs(rec.delete_at.unwrap_or(now))
            .max(Timestamp(rec.meta_timestamp.max(rec.timestamp).0 + 1));
        let tombstone = ObjectRecord::tombstone(&rec.account, &rec.container, &rec.object, at);
        let placed = crate::version_names::container_placement(&rec.container);
        let (_, cpart) = ring.locate(&[&rec.account, placed]);
        let owed: Vec<PendingUpdate> = ring
            .primaries(cpart)
            .map(|d| PendingUpdate {
                target: Target {
                    addr: d.node_addr(),
                    device: d.device.clone(),
                    partition: cpart,
                },
                update: Update::ObjectRow {
                    account: rec.account.clone(),
                    container: rec.container.clone(),
                    object: rec.object.clone(),
                    row: ObjectRow {
                        timestamp: at,
                        deleted: true,
                        size: 0,
                        etag: String::new(),
                        content_type: String::new(),
                    },
                    link: None,
                },
                immediate: true,
            })
            .collect();
        match dev.db.put_object(part, &hash, &tombstone, &owed) {
            Ok(_) => {
                if !rec.inline {
                    let _ = std::fs::remove_file(dev.files.data_path(part, &hash, rec.timestamp));
                }
                stats.expired += 1;
            }
            // A newer version arrived meanwhile: nothing to expire.
            Err(crate::device_db::DbError::Conflict(_)) => {}
            Err(_) => stats.failures += 1,
        }
    }
    stats
}

pub async fn run(state: Arc<NodeState>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let stats = expire_once(&state).await;
        if stats.expired > 0 {
            tracing::info!(?stats, "expirer pass");
        }
    }
}
