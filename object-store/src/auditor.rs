//! The auditor: walks every object file of a node at a bounded rate and
//! checks it against the blake3 recorded when it was written. A file that is
//! missing, short or different is moved aside to `<device>/quarantined/`
//! (never served again) and its record dropped, so that the replicator sees
//! the object missing here and restores a good copy from another replica.

use crate::rate_limit::RateLimiter;
use crate::records::ObjectKind;
use crate::storage_node::{Device, NodeState};
use serde::Serialize;
use std::io::Read;
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
        let d = dev.clone();
        let s = tokio::task::spawn_blocking(move || audit_device(&d, bytes_per_sec))
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

fn audit_device(dev: &Device, bytes_per_sec: u64) -> AuditStats {
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
        let path = dev.files.data_path(o.part, &o.hash, o.record.timestamp);
        let (good, read) = check_file(&path, o.record.size, &o.record.blake3);
        stats.bytes_read += read;
        std::thread::sleep(limit.consume(read));
        if !good {
            tracing::warn!(path = %path.display(), "object file does not match its checksum; quarantined");
            quarantine(dev, &path);
            match dev.db.forget_object(o.part, &o.hash, o.record.timestamp) {
                Ok(true) => stats.quarantined += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "auditor cannot drop a bad record");
                    stats.errors += 1;
                }
            }
        }
    }
    stats
}

/// (matches, bytes read). A missing or unreadable file does not match.
fn check_file(path: &std::path::Path, size: u64, expected_hex: &str) -> (bool, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (false, 0);
    };
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                read += n as u64;
            }
            Err(_) => return (false, read),
        }
    }
    (
        read == size && h.finalize().to_hex().as_str() == expected_hex,
        read,
    )
}

fn quarantine(dev: &Device, path: &std::path::Path) {
    let dir = dev.files.root().join("quarantined").join("objects");
    let _ = std::fs::create_dir_all(&dir);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = std::fs::rename(path, dir.join(format!("{parent}-{name}")));
}

/// Runs passes forever, `interval` apart.
pub async fn run(state: Arc<NodeState>, interval: Duration, bytes_per_sec: u64) {
    loop {
        tokio::time::sleep(interval).await;
        let stats = audit_once(&state, bytes_per_sec).await;
        tracing::info!(?stats, "audit pass");
    }
}
