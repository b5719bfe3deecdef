//! qcow2 (big-endian). Header: magic `QFI\xfb`, version at 4, backing file
//! offset at 8, cluster bits at 20, virtual size at 24, encryption at 32,
//! L1 table size/offset at 36/40, refcount table at 48; v3 adds feature
//! bits at 72 and the header length at 100, then header extensions.

use super::source::{be_u32, be_u64, peek, read, within, Source};
use super::{Found, InspectError};

const FORMAT: &str = "qcow2";
const MAGIC: &[u8] = b"QFI\xfb";
/// Incompatible feature bits qemu knows: dirty, corrupt, external data
/// file, compression type, extended L2 entries.
const KNOWN_INCOMPATIBLE: u64 = 0b1_1111;
const DATA_FILE_BIT: u64 = 1 << 2;
const EXT_END: u32 = 0;
const EXT_DATA_FILE: u32 = 0x4441_5441;
const MAX_EXTENSIONS: usize = 64;
/// qemu's `QCOW_MAX_L1_SIZE` (32 MiB of 8-byte entries).
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
/// qemu's `QCOW_MAX_SNAPSHOTS`.
const MAX_SNAPSHOTS: u64 = 65_536;
/// The fixed part of a snapshot table entry.
const SNAPSHOT_MIN: u64 = 40;

pub fn matches(src: &dyn Source) -> bool {
    peek(src, 0, 4).is_some_and(|m| m == MAGIC)
}

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

pub(crate) fn inspect(src: &dyn Source) -> Result<Found, InspectError> {
    let h = read(src, FORMAT, 0, 72)?;
    let version = be_u32(&h, 4);
    if version != 2 && version != 3 {
        return Err(bad(format!(
            "has version {version} (only 2 and 3 are accepted)"
        )));
    }
    if be_u64(&h, 8) != 0 || be_u32(&h, 16) != 0 {
        return Err(bad("has a backing file"));
    }
    let cluster_bits = be_u32(&h, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(bad(format!(
            "has an invalid cluster size (2^{cluster_bits})"
        )));
    }
    let cluster = 1u64 << cluster_bits;
    let size = be_u64(&h, 24);
    if be_u32(&h, 32) != 0 {
        return Err(bad("is encrypted"));
    }
    // Rule 11: every table the header points at lies inside the file,
    // with checked arithmetic, and is of a size qemu would accept.
    let l1_entries = u64::from(be_u32(&h, 36));
    if l1_entries > MAX_L1_ENTRIES {
        return Err(bad(format!("has an L1 table of {l1_entries} entries")));
    }
    let entries_per_l2 = cluster / 8;
    if l1_entries
        .saturating_mul(entries_per_l2)
        .saturating_mul(cluster)
        < size
    {
        return Err(bad("has an L1 table too small for its virtual size"));
    }
    let snapshots = u64::from(be_u32(&h, 60));
    if snapshots > MAX_SNAPSHOTS {
        return Err(bad(format!("has {snapshots} snapshots")));
    }
    let refcount_clusters = u64::from(be_u32(&h, 56));
    for (what, offset, len) in [
        ("L1 table", be_u64(&h, 40), l1_entries * 8),
        (
            "refcount table",
            be_u64(&h, 48),
            refcount_clusters.saturating_mul(cluster),
        ),
        ("snapshot table", be_u64(&h, 64), snapshots * SNAPSHOT_MIN),
    ] {
        if len == 0 {
            continue;
        }
        within(src, FORMAT, offset, len)?;
        if offset % cluster != 0 {
            return Err(bad(format!("has a misaligned {what}")));
        }
    }
    let mut header_len = 72u64;
    if version == 3 {
        let v3 = read(src, FORMAT, 0, 104)?;
        let incompatible = be_u64(&v3, 72);
        if incompatible & DATA_FILE_BIT != 0 {
            return Err(bad("has an external data file"));
        }
        let unknown = incompatible & !KNOWN_INCOMPATIBLE;
        if unknown != 0 {
            return Err(bad(format!(
                "uses unknown incompatible features ({unknown:#x})"
            )));
        }
        header_len = u64::from(be_u32(&v3, 100));
        if !(104..=cluster).contains(&header_len) {
            return Err(bad(format!("has an invalid header length ({header_len})")));
        }
    }
    check_extensions(src, header_len, cluster)?;
    Ok(Found {
        virtual_size: size,
        variant: format!("qcow2 v{version}"),
    })
}

/// Header extensions follow the header, inside the first cluster. An
/// external data file name is refused even without the feature bit.
fn check_extensions(src: &dyn Source, start: u64, cluster: u64) -> Result<(), InspectError> {
    let end = cluster.min(src.size());
    let mut at = start.next_multiple_of(8);
    for _ in 0..MAX_EXTENSIONS {
        if at + 8 > end {
            return Ok(());
        }
        let e = read(src, FORMAT, at, 8)?;
        let (kind, len) = (be_u32(&e, 0), u64::from(be_u32(&e, 4)));
        match kind {
            EXT_END => return Ok(()),
            EXT_DATA_FILE => return Err(bad("has an external data file")),
            _ => {}
        }
        at = (at + 8)
            .checked_add(len.next_multiple_of(8))
            .filter(|n| *n <= end)
            .ok_or_else(|| bad("has a header extension past the first cluster"))?;
    }
    Err(bad("has too many header extensions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid v3 header for a 1 GiB image with 64 KiB clusters.
    pub fn header() -> Vec<u8> {
        let mut h = vec![0u8; 196_608];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        h[36..40].copy_from_slice(&2u32.to_be_bytes());
        h[40..48].copy_from_slice(&131_072u64.to_be_bytes());
        h[48..56].copy_from_slice(&65_536u64.to_be_bytes());
        h[56..60].copy_from_slice(&1u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        h
    }

    #[test]
    fn a_plain_image_passes() {
        let f = inspect(&header()).unwrap();
        assert_eq!(f.virtual_size, 1 << 30);
        assert_eq!(f.variant, "qcow2 v3");
    }

    #[test]
    fn backing_files_data_files_and_unknown_features_are_refused() {
        let mut h = header();
        h[8..16].copy_from_slice(&512u64.to_be_bytes());
        assert!(inspect(&h)
            .unwrap_err()
            .to_string()
            .contains("backing file"));
        let mut h = header();
        h[72..80].copy_from_slice(&DATA_FILE_BIT.to_be_bytes());
        assert!(inspect(&h)
            .unwrap_err()
            .to_string()
            .contains("external data file"));
        let mut h = header();
        h[72..80].copy_from_slice(&(1u64 << 9).to_be_bytes());
        assert!(inspect(&h)
            .unwrap_err()
            .to_string()
            .contains("unknown incompatible"));
        let mut h = header();
        h[112..116].copy_from_slice(&EXT_DATA_FILE.to_be_bytes());
        h[116..120].copy_from_slice(&8u32.to_be_bytes());
        assert!(inspect(&h)
            .unwrap_err()
            .to_string()
            .contains("external data file"));
        let mut h = header();
        h[4..8].copy_from_slice(&4u32.to_be_bytes());
        assert!(inspect(&h).unwrap_err().to_string().contains("version 4"));
    }

    #[test]
    fn tables_past_the_end_are_refused() {
        let mut h = header();
        h[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(inspect(&h), Err(InspectError::Truncated { .. })));
        assert!(matches!(
            inspect(&header()[..50].to_vec()),
            Err(InspectError::Truncated { .. })
        ));
    }
}
