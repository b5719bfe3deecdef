//! qemu-img, run the way Glance and Nova run it: the format always given
//! (`-f`, never probing), `info` and `measure` under prlimit (1 GiB of
//! address space, 2 s of CPU), `convert` with a wall-clock bound and a cap
//! on the size of what it writes, and only ever on a file that
//! [`crate::verify`] passed.
//!
//! Check 9 (qemu-img and our inspector must agree, [`cross_check`]) and
//! check 10 (the output must inspect as the target format) live here.

#![cfg(feature = "service")]

use crate::inspect::{self, DiskFormat, FileSource, ImageInfo, Limits};
use crate::process::{run_bounded, run_capped, RunError};
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
            RunError::Capped(what, cap) => {
                ConvertError::Output(format!("qemu-img {what} wrote more than {cap} bytes"))
            }
            RunError::Io(e) => ConvertError::Io(e),
        }
    }
}

/// What `qemu-img info --output=json` says.
#[derive(Debug, PartialEq, Default)]
pub struct QemuInfo {
    pub format: String,
    pub virtual_size: u64,
    pub backing_file: Option<String>,
    pub data_file: Option<String>,
    /// Every file name anywhere in the answer (the image, its children,
    /// VMDK extents): anything but the image itself is another file qemu
    /// would read.
    pub files: Vec<String>,
    /// VMDK: the create type qemu settled on, and how many extents.
    pub vmdk_create_type: Option<String>,
    pub vmdk_extents: usize,
}

impl QemuInfo {
    pub fn parse(v: &Value) -> QemuInfo {
        let mut files = Vec::new();
        collect_files(v, &mut files);
        let specific = &v["format-specific"]["data"];
        QemuInfo {
            format: v["format"].as_str().unwrap_or_default().to_string(),
            virtual_size: v["virtual-size"].as_u64().unwrap_or(0),
            backing_file: v["backing-filename"]
                .as_str()
                .or(v["full-backing-filename"].as_str())
                .map(str::to_string),
            data_file: specific["data-file"].as_str().map(str::to_string),
            files,
            vmdk_create_type: specific["create-type"].as_str().map(str::to_string),
            vmdk_extents: specific["extents"].as_array().map_or(0, Vec::len),
        }
    }
}

/// Every string under a key that names a file, anywhere in the tree.
fn collect_files(v: &Value, out: &mut Vec<String>) {
    const FILE_KEYS: [&str; 5] = [
        "filename",
        "backing-filename",
        "full-backing-filename",
        "data-file",
        "backing-image",
    ];
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if let (true, Some(s)) = (FILE_KEYS.contains(&k.as_str()), v.as_str()) {
                    out.push(s.to_string());
                }
                collect_files(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_files(v, out)),
        _ => {}
    }
}

/// qemu-img under prlimit (1 GiB address space, `cpu_secs` of CPU, five
/// times that of wall-clock time), JSON out.
fn qemu_img_json(
    what: &'static str,
    args: &[&str],
    path: &Path,
    cpu_secs: u64,
) -> Result<Value, ConvertError> {
    let mut cmd = Command::new("prlimit");
    cmd.arg("--as=1073741824")
        .arg(format!("--cpu={cpu_secs}"))
        .args(["--", "qemu-img", what])
        .args(args)
        .arg("--output=json")
        .arg(path);
    let out =
        run_bounded(what, cmd, Duration::from_secs(5 * cpu_secs)).map_err(ConvertError::from)?;
    serde_json::from_slice(&out).map_err(|e| ConvertError::QemuImg(what, e.to_string()))
}

/// `qemu-img info -f FORMAT`, with 2 s of CPU as Glance and Nova give it
/// (it reads headers only).
pub fn qemu_info(path: &Path, format: DiskFormat) -> Result<QemuInfo, ConvertError> {
    let v = qemu_img_json("info", &["-f", format.qemu_name()], path, 2)?;
    Ok(QemuInfo::parse(&v))
}

/// `qemu-img measure`: the bytes a qcow2 conversion of the image would
/// allocate (what the data qemu reads from it takes, whatever the format).
/// It walks the whole allocation map, so it gets 30 s of CPU: a large
/// fully allocated image must not be refused for being large.
pub fn measure(path: &Path, format: DiskFormat) -> Result<u64, ConvertError> {
    let args = ["-f", format.qemu_name(), "-O", "qcow2"];
    let v = qemu_img_json("measure", &args, path, 30)?;
    v["required"]
        .as_u64()
        .ok_or_else(|| ConvertError::QemuImg("measure", format!("no size in {v}")))
}

/// Check 9: trust neither alone. `path` is the file qemu-img was given:
/// any other file in its answer is a file qemu would read.
pub fn cross_check(ours: &ImageInfo, qemu: &QemuInfo, path: &Path) -> Result<(), ConvertError> {
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
    let own = path.to_string_lossy();
    if let Some(other) = qemu.files.iter().find(|f| **f != own) {
        return Err(ConvertError::Disagree(format!(
            "qemu-img would read another file {other:?}"
        )));
    }
    if ours.format == DiskFormat::Vmdk {
        let ours_type = ours.variant.strip_prefix("vmdk ").unwrap_or_default();
        if qemu.vmdk_create_type.as_deref() != Some(ours_type) || qemu.vmdk_extents != 1 {
            return Err(ConvertError::Disagree(format!(
                "qemu-img reads a {} VMDK with {} extents",
                qemu.vmdk_create_type.as_deref().unwrap_or("?"),
                qemu.vmdk_extents
            )));
        }
    }
    if qemu.virtual_size != ours.virtual_size {
        return Err(ConvertError::Disagree(format!(
            "virtual size {} (qemu-img) against {} (inspector)",
            qemu.virtual_size, ours.virtual_size
        )));
    }
    Ok(())
}

/// Converts `src` (verified as `info`) to `target` at `dst`, then inspects
/// the output (check 10). `limit` bounds the time; what the output takes on
/// disk is capped at [`Limits::expansion_cap`] of the source's size (and a
/// raw output's length at the virtual size), so a conversion that would
/// expand further is killed, whatever the format and whatever `qemu-img
/// measure` could tell beforehand.
pub fn convert(
    src: &Path,
    info: &ImageInfo,
    dst: &Path,
    target: DiskFormat,
    limits: &Limits,
    limit: Duration,
) -> Result<ImageInfo, ConvertError> {
    let cap = limits.expansion_cap(std::fs::metadata(src)?.len());
    let mut cmd = Command::new("prlimit");
    cmd.arg("--as=4294967296");
    if target == DiskFormat::Raw {
        cmd.arg(format!("--fsize={}", info.virtual_size.max(512)));
    }
    cmd.args([
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
    run_capped("convert", cmd, dst, cap, limit).map_err(|e| match e {
        RunError::Capped(_, cap) => ConvertError::Output(format!(
            "would take more than {cap} bytes (the image expands past its limit): rejected"
        )),
        e => ConvertError::from(e),
    })?;
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
            files: vec!["/img".into()],
            ..QemuInfo::default()
        }
    }

    #[test]
    fn agreement_means_same_format_size_and_no_other_files() {
        let p = Path::new("/img");
        assert!(cross_check(&ours(DiskFormat::Vhd, 10), &qemu("vpc", 10), p).is_ok());
        assert!(cross_check(&ours(DiskFormat::Raw, 10), &qemu("qcow2", 10), p).is_err());
        assert!(cross_check(&ours(DiskFormat::Qcow2, 10), &qemu("qcow2", 11), p).is_err());
        let mut q = qemu("qcow2", 10);
        q.backing_file = Some("/etc/passwd".into());
        let e = cross_check(&ours(DiskFormat::Qcow2, 10), &q, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("backing file"), "{e}");
        let mut q = qemu("qcow2", 10);
        q.data_file = Some("/dev/sda".into());
        assert!(cross_check(&ours(DiskFormat::Qcow2, 10), &q, p).is_err());
    }

    #[test]
    fn every_file_qemu_names_must_be_the_image() {
        let v = serde_json::json!({
            "format": "vmdk", "virtual-size": 10, "filename": "/img",
            "format-specific": {"type": "vmdk", "data": {"create-type": "monolithicSparse",
                "extents": [{"filename": "/img"}, {"filename": "/etc/passwd"}]}}
        });
        let q = QemuInfo::parse(&v);
        assert_eq!(q.files, ["/img", "/img", "/etc/passwd"]);
        let mut o = ours(DiskFormat::Vmdk, 10);
        o.variant = "vmdk monolithicSparse".into();
        let e = cross_check(&o, &q, Path::new("/img"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("another file \"/etc/passwd\""), "{e}");
    }
}
