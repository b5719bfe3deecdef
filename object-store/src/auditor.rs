//! The auditor: walks every object body of a node (files and inline) at a
//! bounded rate and checks each chunk against the hashes recorded when it was
//! written ([`crate::object_body`]). A body that is missing, short or
//! different is moved aside to `<device>/quarantined/` (never served again)
//! and its record dropped, so that the replicator sees the object missing
//! here and restores a good copy from another replica.

use crate::object_body::{StoredBody, Unreadable};
use crate::rate_limit::RateLimiter;
use crate::records::ObjectKind;
use crate::storage_node::{Device, NodeState};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Clone, Serialize)]
pub struct AuditStats {
    pub objects_checked: u64,
    pub bytes_read: u64,
    pub quarantined: u64,
    /// Records that could not be read or dropped (logged).
    pub errors: u64,
}

/// One pass over every device, reading at most `bytes_per_sec`.
pub async fn audit_once(state: &Arc<NodeState>, bytes_per_sec: u64) -> AuditStats {
    let mut total = AuditStats::default();
    for dev in state.devices() {
        let (st, d) = (state.clone(), dev.clone());
        let s = tokio::task::spawn_blocking(move || audit_device(&st, &d, bytes_per_sec))
            .await
            .unwrap_or_default();
        total.objects_checked += s.objects_checked;
        total.bytes_read += s.bytes_read;
        total.quarantined += s.quarantined;
        total.errors += s.errors;
    }
    crate::metrics::NodeMetrics::add(&state.metrics.auditor_bytes, total.bytes_read);
    crate::metrics::NodeMetrics::add(&state.metrics.auditor_quarantined, total.quarantined);
    total
}

fn audit_device(state: &Arc<NodeState>, dev: &Arc<Device>, bytes_per_sec: u64) -> AuditStats {
    let mut stats = AuditStats::default();
    let mut limit = RateLimiter::new(bytes_per_sec);
    for item in dev.db.objects() {
        let o = match item {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, device = %dev.name, "auditor cannot read a record");
                stats.errors += 1;
                continue;
            }
        };
        if o.record.kind != ObjectKind::Data {
            continue;
        }
        stats.objects_checked += 1;
        let body = StoredBody {
            state: state.clone(),
            device: dev.clone(),
            part: o.part,
            hash: o.hash,
            record: o.record,
        };
        let checked = body.check_whole(|n| {
            stats.bytes_read += n;
            std::thread::sleep(limit.consume(n));
        });
        match checked {
            Ok(_) => {}
            Err(Unreadable::Corrupt) => stats.quarantined += 1,
            // A record whose body is lost: dropped the same way.
            Err(Unreadable::Missing) => {
                if body.quarantine() {
                    stats.quarantined += 1;
                }
            }
            Err(Unreadable::Io(e)) => {
                tracing::error!(error = %e, device = %dev.name, "auditor cannot read a body");
                stats.errors += 1;
            }
        }
    }
    stats
}

/// Runs passes forever, `interval` apart.
pub async fn run(state: Arc<NodeState>, interval: Duration, bytes_per_sec: u64) {
    loop {
        tokio::time::sleep(interval).await;
        let stats = audit_once(&state, bytes_per_sec).await;
        tracing::info!(?stats, "audit pass");
    }
}
