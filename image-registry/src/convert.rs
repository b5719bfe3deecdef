//! Conversion with qemu-img, only ever on a file that passed inspection,
//! with the format always given (`-f`, never probing), under resource
//! limits as Glance and Nova run it: `qemu-img info` with 1 GiB of address
//! space and 2 s of CPU, `convert` with a wall-clock bound.
//!
//! Check 9 (qemu-img and our inspector must agree) and check 10 (the output
//! must inspect as the target format) live here.

use crate::inspect::{self, DiskFormat, FileSource, ImageInfo, Limits};
use crate::process::{run_bounded, RunError};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("qemu-img {0} failed: {1}")]
    QemuImg(&'static str, String),
    #[error("qemu-img {0} took longer than {1:?}")]
    Timeout(&'static str, Duration),
    /// Check 9: qemu-img sees something our inspector did not.
    #[error("qemu-img and the inspector disagree: {0}: rejected")]
    Disagree(String),
    #[error("{0}")]
    Inspect(#[from] inspect::InspectError),
    #[error("converted image: {0}")]
    Output(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<RunError> for ConvertError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Failed(what, why) => ConvertError::QemuImg(what, why),
            RunError::Timeout(what, limit) => ConvertError::Timeout(what, limit),
            RunError::Io(e) => ConvertError::Io(e),
        }
    }
}

/// What `qemu-img info --output=json` says.
#[derive(Debug, PartialEq)]
pub struct QemuInfo {
    pub format: String,
    pub virtual_size: u64,
    pub backing_file: Option<String>,
    pub data_file: Option<String>,
}

/// `qemu-img info` under prlimit (1 GiB address space, 2 s CPU).
pub fn qemu_info(path: &Path, format: DiskFormat) -> Result<QemuInfo, ConvertError> {
    let mut cmd = Command::new("prlimit");
    cmd.args([
        "--as=1073741824",
        "--cpu=2",
        "--",
        "qemu-img",
        "info",
        "-f",
        format.qemu_name(),
        "--output=json",
    ])
    .arg(path);
    let out = run_bounded("info", cmd, Duration::from_secs(10)).map_err(ConvertError::from)?;
    let v: Value =
        serde_json::from_slice(&out).map_err(|e| ConvertError::QemuImg("info", e.to_string()))?;
    Ok(QemuInfo {
        format: v["format"].as_str().unwrap_or_default().to_string(),
        virtual_size: v["virtual-size"].as_u64().unwrap_or(0),
        backing_file: v["backing-filename"].as_str().map(str::to_string),
        data_file: v["format-specific"]["data"]["data-file"]
            .as_str()
            .map(str::to_string),
    })
}

/// Check 9: trust neither alone.
pub fn cross_check(ours: &ImageInfo, qemu: &QemuInfo) -> Result<(), ConvertError> {
    if qemu.format != ours.format.qemu_name() {
        return Err(ConvertError::Disagree(format!(
            "qemu-img reads it as {}",
            qemu.format
        )));
    }
    if let Some(b) = &qemu.backing_file {
        return Err(ConvertError::Disagree(format!(
            "qemu-img sees a backing file {b:?}"
        )));
    }
    if let Some(d) = &qemu.data_file {
        return Err(ConvertError::Disagree(format!(
            "qemu-img sees a data file {d:?}"
        )));
    }
    if qemu.virtual_size != ours.virtual_size {
        return Err(ConvertError::Disagree(format!(
            "virtual size {} (qemu-img) against {} (inspector)",
            qemu.virtual_size, ours.virtual_size
        )));
    }
    Ok(())
}

/// Converts `src` (already inspected as `info`) to `target` at `dst`, then
/// inspects the output (check 10). `limit` bounds the conversion.
pub fn convert(
    src: &Path,
    info: &ImageInfo,
    dst: &Path,
    target: DiskFormat,
    limits: &Limits,
    limit: Duration,
) -> Result<ImageInfo, ConvertError> {
    cross_check(info, &qemu_info(src, info.format)?)?;
    let mut cmd = Command::new("prlimit");
    cmd.args([
        "--as=4294967296",
        "--",
        "qemu-img",
        "convert",
        "-q",
        "-f",
        info.format.qemu_name(),
        "-O",
        target.qemu_name(),
    ]);
    if target == DiskFormat::Vmdk {
        // One file, no descriptor pointing elsewhere.
        cmd.args(["-o", "subformat=streamOptimized"]);
    }
    cmd.arg(src).arg(dst);
    run_bounded("convert", cmd, limit).map_err(ConvertError::from)?;
    let out = inspect::inspect(&FileSource::open(dst)?, limits)?;
    if out.format != target {
        return Err(ConvertError::Output(format!(
            "detected as {}, not {target}",
            out.format
        )));
    }
    if out.virtual_size < info.virtual_size {
        return Err(ConvertError::Output(format!(
            "virtual size {} is smaller than the source's {}",
            out.virtual_size, info.virtual_size
        )));
    }
    Ok(out)
}

/// Copies `len` bytes at `offset` of `src` into a new file `dst` (the disk
/// of an OVA), so that qemu-img reads only that disk.
pub fn extract(src: &Path, offset: u64, len: u64, dst: &Path) -> Result<(), ConvertError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(src)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let copied = std::io::copy(&mut f.take(len), &mut out)?;
    if copied != len {
        return Err(ConvertError::Output(
            "the package ends inside its disk".into(),
        ));
    }
    out.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(format: DiskFormat, size: u64) -> ImageInfo {
        ImageInfo {
            format,
            container: None,
            virtual_size: size,
            variant: String::new(),
            properties: Vec::new(),
            disk_member: None,
        }
    }

    fn qemu(format: &str, size: u64) -> QemuInfo {
        QemuInfo {
            format: format.into(),
            virtual_size: size,
            backing_file: None,
            data_file: None,
        }
    }

    #[test]
    fn agreement_means_same_format_size_and_no_other_files() {
        assert!(cross_check(&ours(DiskFormat::Vhd, 10), &qemu("vpc", 10)).is_ok());
        assert!(cross_check(&ours(DiskFormat::Raw, 10), &qemu("qcow2", 10)).is_err());
        assert!(cross_check(&ours(DiskFormat::Qcow2, 10), &qemu("qcow2", 11)).is_err());
        let mut q = qemu("qcow2", 10);
        q.backing_file = Some("/etc/passwd".into());
        let e = cross_check(&ours(DiskFormat::Qcow2, 10), &q)
            .unwrap_err()
            .to_string();
        assert!(e.contains("backing file"), "{e}");
        let mut q = qemu("qcow2", 10);
        q.data_file = Some("/dev/sda".into());
        assert!(cross_check(&ours(DiskFormat::Qcow2, 10), &q).is_err());
    }
}
