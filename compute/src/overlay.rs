//! Instance disks as qcow2 copy-on-write overlays on a cached base image
//! (CloudStack's linked clones, Nova's `_base`): creating one writes a few
//! kilobytes whatever the base's size. The base is inspected first, every
//! time: a base must never have gained a backing file or data file, and
//! must still be the format it was cached as.

use image_registry::inspect::{inspect_disk, DiskFormat, FileSource, InspectError, Limits};
use image_registry::process::{run_bounded, RunError};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("base image {0}: {1}")]
    UnsafeBase(String, InspectError),
    #[error("base image {path} is {found}, not {expected} as cached")]
    WrongFormat {
        path: String,
        found: DiskFormat,
        expected: DiskFormat,
    },
    #[error(transparent)]
    QemuImg(#[from] RunError),
}

/// Creates `overlay` (qcow2) backed by `base`, with a virtual size of at
/// least `size` bytes (the flavor's disk) and never less than the base's.
/// Returns the overlay's virtual size.
pub fn create(
    base: &Path,
    base_format: DiskFormat,
    overlay: &Path,
    size: u64,
) -> Result<u64, OverlayError> {
    let src = FileSource::open(base).map_err(|e| {
        OverlayError::UnsafeBase(base.display().to_string(), InspectError::Io(e.to_string()))
    })?;
    let info = inspect_disk(&src, &Limits::default())
        .map_err(|e| OverlayError::UnsafeBase(base.display().to_string(), e))?;
    if info.format != base_format {
        return Err(OverlayError::WrongFormat {
            path: base.display().to_string(),
            found: info.format,
            expected: base_format,
        });
    }
    let size = size.max(info.virtual_size);
    let mut cmd = Command::new("qemu-img");
    cmd.args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        base_format.qemu_name(),
        "-b",
    ])
    .arg(base)
    .arg(overlay)
    .arg(size.to_string());
    run_bounded("create", cmd, Duration::from_secs(30))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_grow_to_the_flavor_and_leave_the_base_alone() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        std::fs::write(&base, crate::boot_disk::marker_disk("BASE", 1 << 20)).unwrap();
        let before = std::fs::read(&base).unwrap();
        let overlay = dir.path().join("vm.qcow2");
        let size = create(&base, DiskFormat::Raw, &overlay, 1 << 30).unwrap();
        assert_eq!(size, 1 << 30);
        assert_eq!(std::fs::read(&base).unwrap(), before);
        let info = Command::new("qemu-img")
            .args(["info", "--output=json", "-f", "qcow2"])
            .arg(&overlay)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["virtual-size"], 1u64 << 30);
        assert_eq!(v["backing-filename"], base.to_str().unwrap());
        assert_eq!(v["backing-filename-format"], "raw");
        // A smaller flavor never shrinks the disk below the base.
        let small = dir.path().join("small.qcow2");
        assert_eq!(
            create(&base, DiskFormat::Raw, &small, 512).unwrap(),
            1 << 20
        );
    }

    #[test]
    fn a_base_that_changed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.raw");
        std::fs::write(&real, vec![0u8; 1 << 20]).unwrap();
        // A "base" that is in fact a qcow2 with a backing file of its own.
        let base = dir.path().join("base");
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&real)
            .arg(&base)
            .status()
            .unwrap();
        assert!(st.success());
        let e = create(&base, DiskFormat::Qcow2, &dir.path().join("o"), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("has a backing file"), "{e}");
        // A base cached as qcow2 that is now raw.
        let e = create(&real, DiskFormat::Qcow2, &dir.path().join("o2"), 1 << 20).unwrap_err();
        assert!(matches!(e, OverlayError::WrongFormat { .. }), "{e}");
        assert!(!dir.path().join("o").exists() && !dir.path().join("o2").exists());
    }
}
