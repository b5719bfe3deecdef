//! Reclaims what a device keeps only for a while, at the start of each
//! replication pass (as Swift reclaims while hashing suffixes):
//! - object tombstones and deleted listing rows older than `reclaim_age_secs`
//!   (they exist to win over stale copies; past that age every replica has
//!   seen them);
//! - quarantined files older than `quarantine_reclaim_age_secs`;
//! - temp files of uploads that never finished, older than `reclaim_age_secs`.

use crate::config::NodeConfig;
use crate::device_db::Reclaimed;
use crate::storage_node::Device;
use service_kit::timestamp::Timestamp;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, Default, Clone, Copy)]
pub struct ReclaimStats {
    pub db: Reclaimed,
    pub files: u64,
}

pub async fn reclaim_device(config: &NodeConfig, dev: &Arc<Device>) -> ReclaimStats {
    let cutoff = Timestamp(
        Timestamp::now()
            .0
            .saturating_sub(Timestamp::from_secs(config.reclaim_age_secs).0),
    );
    let quarantine_age = Duration::from_secs(config.quarantine_reclaim_age_secs);
    let temp_age = Duration::from_secs(config.reclaim_age_secs);
    let d = dev.clone();
    tokio::task::spawn_blocking(move || {
        let db = d.db.reclaim_before(cutoff).unwrap_or_else(|e| {
            tracing::warn!(device = %d.name, error = %e, "reclaim failed");
            Reclaimed::default()
        });
        let root = d.files.root();
        let files = remove_older_than(&root.join("quarantined").join("objects"), quarantine_age)
            + remove_older_than(&root.join("tmp"), temp_age);
        ReclaimStats { db, files }
    })
    .await
    .unwrap_or_default()
}

/// Removes the files directly in `dir` last modified more than `age` ago.
fn remove_older_than(dir: &Path, age: Duration) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|a| a >= age);
        if meta.is_file() && old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_past_their_age_go() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        std::fs::write(&old, b"x").unwrap();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        std::fs::write(dir.path().join("fresh"), b"y").unwrap();
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        assert_eq!(remove_older_than(dir.path(), Duration::from_secs(60)), 1);
        assert!(!old.exists());
        assert!(dir.path().join("fresh").exists());
        assert!(dir.path().join("subdir").exists());
        assert_eq!(
            remove_older_than(&dir.path().join("missing"), Duration::ZERO),
            0
        );
    }
}
