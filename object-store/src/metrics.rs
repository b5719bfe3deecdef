//! Counters a storage node exposes at `/metrics` (Prometheus text format).

use crate::storage_node::NodeState;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct NodeMetrics {
    pub replication_passes: AtomicU64,
    pub partitions_synced: AtomicU64,
    pub objects_pushed: AtomicU64,
    pub containers_pushed: AtomicU64,
    pub handoffs_removed: AtomicU64,
    pub replication_failures: AtomicU64,
    pub bytes_pushed: AtomicU64,
    pub tombstones_reclaimed: AtomicU64,
    pub rows_reclaimed: AtomicU64,
    pub files_reclaimed: AtomicU64,
    pub auditor_bytes: AtomicU64,
    pub auditor_quarantined: AtomicU64,
    /// Object bodies quarantined, by reads or by the auditor.
    pub quarantined: AtomicU64,
    pub expired: AtomicU64,
    /// Reads of a versioned object answered with the version its link
    /// names, in one read ([`crate::records::FOLLOW_VERSION_HEADER`]).
    pub version_links_followed: AtomicU64,
    pub lifecycle_passes: AtomicU64,
    pub lifecycle_expired: AtomicU64,
    pub lifecycle_noncurrent_expired: AtomicU64,
    pub lifecycle_markers_removed: AtomicU64,
    pub lifecycle_uploads_aborted: AtomicU64,
    pub lifecycle_retained: AtomicU64,
    pub lifecycle_failures: AtomicU64,
}

impl NodeMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub async fn render(state: &NodeState) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    let counters = [
        (
            "nubo_replication_passes_total",
            "Replication passes completed.",
            &m.replication_passes,
        ),
        (
            "nubo_replication_partitions_synced_total",
            "Partitions where the replicator pushed something.",
            &m.partitions_synced,
        ),
        (
            "nubo_replication_objects_pushed_total",
            "Object versions pushed to other replicas.",
            &m.objects_pushed,
        ),
        (
            "nubo_replication_containers_pushed_total",
            "Container states pushed to other replicas.",
            &m.containers_pushed,
        ),
        (
            "nubo_replication_handoffs_removed_total",
            "Handoff partitions dropped after the primaries confirmed.",
            &m.handoffs_removed,
        ),
        (
            "nubo_replication_failures_total",
            "Peers or pushes that failed during replication.",
            &m.replication_failures,
        ),
        (
            "nubo_replication_bytes_pushed_total",
            "Object bytes and listing states sent to other replicas.",
            &m.bytes_pushed,
        ),
        (
            "nubo_reclaimed_tombstones_total",
            "Object tombstones removed after the reclaim age.",
            &m.tombstones_reclaimed,
        ),
        (
            "nubo_reclaimed_listing_rows_total",
            "Deleted container and account listing rows removed after the reclaim age.",
            &m.rows_reclaimed,
        ),
        (
            "nubo_reclaimed_files_total",
            "Quarantined and stale temporary files removed after their reclaim age.",
            &m.files_reclaimed,
        ),
        (
            "nubo_auditor_bytes_total",
            "Bytes of object files the auditor has read.",
            &m.auditor_bytes,
        ),
        (
            "nubo_auditor_quarantined_total",
            "Object files quarantined by the auditor.",
            &m.auditor_quarantined,
        ),
        (
            "nubo_objects_quarantined_total",
            "Object bodies that failed their hash and were quarantined, by reads or by the auditor.",
            &m.quarantined,
        ),
        (
            "nubo_expirer_expired_total",
            "Objects turned into tombstones by the expirer.",
            &m.expired,
        ),
        (
            "nubo_version_links_followed_total",
            "Reads of a versioned object served with the version its link names, in one read.",
            &m.version_links_followed,
        ),
        (
            "nubo_lifecycle_passes_total",
            "Lifecycle passes completed.",
            &m.lifecycle_passes,
        ),
        (
            "nubo_lifecycle_expired_total",
            "Current objects the lifecycle rules deleted or gave a delete marker.",
            &m.lifecycle_expired,
        ),
        (
            "nubo_lifecycle_noncurrent_expired_total",
            "Noncurrent versions the lifecycle rules deleted.",
            &m.lifecycle_noncurrent_expired,
        ),
        (
            "nubo_lifecycle_delete_markers_removed_total",
            "Lone delete markers the lifecycle rules removed.",
            &m.lifecycle_markers_removed,
        ),
        (
            "nubo_lifecycle_uploads_aborted_total",
            "Incomplete multipart uploads the lifecycle rules aborted.",
            &m.lifecycle_uploads_aborted,
        ),
        (
            "nubo_lifecycle_retained_total",
            "Versions due to expire but kept by Object Lock.",
            &m.lifecycle_retained,
        ),
        (
            "nubo_lifecycle_failures_total",
            "Lifecycle actions or bucket passes that failed (retried next pass).",
            &m.lifecycle_failures,
        ),
    ];
    for (name, help, c) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            c.load(Ordering::Relaxed)
        );
    }
    let age = state
        .last_replication
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(t, _)| t.elapsed().as_secs_f64());
    let _ = writeln!(out, "# HELP nubo_replication_last_pass_age_seconds Seconds since the last full replication pass (-1: none yet).\n# TYPE nubo_replication_last_pass_age_seconds gauge\nnubo_replication_last_pass_age_seconds {}", age.unwrap_or(-1.0));
    let ring = state.ring();
    let _ = writeln!(out, "# HELP nubo_ring_generation Generation of the ring this node serves.\n# TYPE nubo_ring_generation gauge\nnubo_ring_generation {}", ring.generation());
    let _ = writeln!(out, "# HELP nubo_updates_queued Listing updates waiting to be delivered, per device.\n# TYPE nubo_updates_queued gauge");
    let mut disk = String::new();
    let mut commits = String::new();
    for dev in state.devices() {
        let d = dev.clone();
        let depth = tokio::task::spawn_blocking(move || d.db.queue_depth())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "nubo_updates_queued{{device=\"{}\"}} {depth}",
            dev.name
        );
        let (syncs, writes) = dev.db.group_counts();
        let _ = writeln!(
            commits,
            "nubo_group_syncs_total{{device=\"{0}\"}} {syncs}\nnubo_grouped_writes_total{{device=\"{0}\"}} {writes}",
            dev.name
        );
        if let Some(space) = dev.files.space() {
            let (used, total) = (space.total.saturating_sub(space.free), space.total);
            let _ = writeln!(disk, "nubo_device_used_bytes{{device=\"{}\"}} {used}\nnubo_device_size_bytes{{device=\"{}\"}} {total}", dev.name, dev.name);
        }
    }
    let _ = write!(out, "# HELP nubo_device_used_bytes Bytes used on the file system of each device.\n# TYPE nubo_device_used_bytes gauge\n# HELP nubo_device_size_bytes Size of the file system of each device.\n# TYPE nubo_device_size_bytes gauge\n{disk}");
    let _ = write!(out, "# HELP nubo_group_syncs_total WAL syncs made for object writes and durable listing rows, per device.\n# TYPE nubo_group_syncs_total counter\n# HELP nubo_grouped_writes_total Object writes made durable by a shared WAL sync, per device.\n# TYPE nubo_grouped_writes_total counter\n{commits}");
    out
}

/// (api, method, status) of a client request.
type RequestKind = (&'static str, &'static str, u16);

/// Counters a proxy exposes at `/metrics`.
#[derive(Default)]
pub struct ProxyMetrics {
    /// (api, method, status) -> (requests, seconds spent).
    requests: std::sync::Mutex<std::collections::BTreeMap<RequestKind, (u64, f64)>>,
    /// Replicas written to a handoff because the primary was down, full
    /// (507) or failing.
    pub handoff_writes: AtomicU64,
    /// GETs continued from another replica after one failed mid-body.
    pub reads_resumed: AtomicU64,
    /// Listing rows made visible on a container replica before their
    /// write was acknowledged.
    pub rows_listed_at_once: AtomicU64,
}

impl ProxyMetrics {
    pub fn record(&self, api: &'static str, method: &str, status: u16, seconds: f64) {
        // Clients choose the method; only known ones get their own label, so
        // that made-up methods cannot grow the table.
        const KNOWN: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "OPTIONS"];
        let method = KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER");
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let e = r.entry((api, method, status)).or_default();
        e.0 += 1;
        e.1 += seconds;
    }

    pub fn render(&self, ring_generation: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP nubo_proxy_requests_total Client requests answered, by API, method and status.\n# TYPE nubo_proxy_requests_total counter");
        let mut secs = String::new();
        for ((api, method, status), (n, s)) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = format!("api=\"{api}\",method=\"{method}\",status=\"{status}\"");
            let _ = writeln!(out, "nubo_proxy_requests_total{{{labels}}} {n}");
            let _ = writeln!(secs, "nubo_proxy_request_seconds_total{{{labels}}} {s:.6}");
        }
        let _ = write!(out, "# HELP nubo_proxy_request_seconds_total Time spent answering (to the response head), by API, method and status.\n# TYPE nubo_proxy_request_seconds_total counter\n{secs}");
        for (name, help, c) in [
            (
                "nubo_proxy_handoff_writes_total",
                "Replicas written to a handoff instead of their primary.",
                &self.handoff_writes,
            ),
            (
                "nubo_proxy_reads_resumed_total",
                "Object reads continued from another replica after one failed mid-body.",
                &self.reads_resumed,
            ),
            (
                "nubo_proxy_rows_listed_at_once_total",
                "Listing rows made visible on a container replica before their write was acknowledged.",
                &self.rows_listed_at_once,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP nubo_ring_generation Generation of the ring this proxy routes by.\n# TYPE nubo_ring_generation gauge\nnubo_ring_generation {ring_generation}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_metrics_render_counts_per_label_set() {
        let m = ProxyMetrics::default();
        m.record("swift", "PUT", 201, 0.5);
        m.record("swift", "PUT", 201, 0.25);
        m.record("s3", "GET", 404, 0.1);
        m.record("s3", "BREW", 400, 0.1);
        NodeMetrics::add(&m.handoff_writes, 2);
        let text = m.render(7);
        assert!(text.contains(
            "nubo_proxy_requests_total{api=\"swift\",method=\"PUT\",status=\"201\"} 2\n"
        ));
        assert!(text.contains("nubo_proxy_request_seconds_total{api=\"swift\",method=\"PUT\",status=\"201\"} 0.750000\n"));
        assert!(text
            .contains("nubo_proxy_requests_total{api=\"s3\",method=\"GET\",status=\"404\"} 1\n"));
        assert!(text.contains("method=\"OTHER\",status=\"400\"} 1\n"));
        assert!(!text.contains("BREW"));
        assert!(text.contains("nubo_proxy_handoff_writes_total 2\n"));
        assert!(text.contains("nubo_ring_generation 7\n"));
    }
}
