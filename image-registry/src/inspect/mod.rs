//! Format inspection of untrusted disk images, in pure Rust and without
//! qemu: which format an image is, its virtual size, and whether it is safe
//! to hand to qemu-img or a hypervisor (no backing file, no external data
//! file or extent, nothing that makes qemu read another file of the host).
//!
//! The checks follow `../shared/reference/image-safety.md` and oslo.utils'
//! `format_inspector`. Every byte is hostile: reads are bounds-checked and
//! capped ([`source::MAX_READ`]), tables are bounded before they are read,
//! and only headers and tables are read, so inspecting a 10 GiB image
//! takes a few small reads.
//!
//! No maintained crate does this (the format crates parse for access, not
//! for safety, and most need the whole file); hence our own.

pub mod iso;
pub mod mbr;
pub mod ova;
pub mod qcow2;
pub mod source;
pub mod vdi;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

pub use source::{FileSource, Source};

use serde::Serialize;

/// Glance's `disk_format` values we detect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
    Vhd,
    Vhdx,
    Vdi,
    Vmdk,
    Iso,
}

impl DiskFormat {
    pub const ALL: [DiskFormat; 7] = [
        DiskFormat::Raw,
        DiskFormat::Qcow2,
        DiskFormat::Vhd,
        DiskFormat::Vhdx,
        DiskFormat::Vdi,
        DiskFormat::Vmdk,
        DiskFormat::Iso,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Iso => "iso",
        }
    }

    pub fn parse(s: &str) -> Option<DiskFormat> {
        DiskFormat::ALL.into_iter().find(|f| f.name() == s)
    }

    /// qemu's driver name for `-f` / `-O` (qemu calls vhd "vpc"; an iso is raw to it).
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Vhd => "vpc",
            DiskFormat::Iso => "raw",
            other => other.name(),
        }
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What inspection found in an image that passed every check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageInfo {
    pub format: DiskFormat,
    /// `ova` when the image is an OVA package (the disk inside is `format`).
    pub container: Option<&'static str>,
    pub virtual_size: u64,
    /// The variant, e.g. "qcow2 v3", "vhd dynamic", "vmdk streamOptimized".
    pub variant: String,
    /// Properties read from an OVA's descriptor (name, OS, CPUs, memory).
    pub properties: Vec<(String, String)>,
    /// In an OVA: the disk member's name, offset and length in the package.
    pub disk_member: Option<(String, u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InspectError {
    /// The image is (or claims to be) `format` but is unsafe or malformed.
    #[error("{format} image {reason}: rejected")]
    Unsafe {
        format: &'static str,
        reason: String,
    },
    #[error("{format} image is shorter than its header claims ({needed} bytes needed, {size} present): rejected")]
    Truncated {
        format: &'static str,
        needed: u64,
        size: u64,
    },
    #[error("image matches several formats ({0}): rejected")]
    Polyglot(String),
    #[error("image was declared {declared} but is {detected}: rejected")]
    FormatMismatch {
        declared: String,
        detected: DiskFormat,
    },
    #[error("image has a virtual size of {size} bytes, over the limit of {limit}: rejected")]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot read the image: {0}")]
    Io(String),
}

impl InspectError {
    pub fn unsafe_image(format: &'static str, reason: impl Into<String>) -> InspectError {
        InspectError::Unsafe {
            format,
            reason: reason.into(),
        }
    }
}

/// What the operator allows.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest virtual size accepted.
    pub max_virtual_size: u64,
    /// Glance's option to accept raw images whose MBR/GPT looks invalid.
    pub allow_bad_partition_table: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_virtual_size: 1 << 40,
            allow_bad_partition_table: false,
        }
    }
}

/// A format's own inspection, once its magic bytes matched.
#[derive(Debug)]
pub(crate) struct Found {
    pub virtual_size: u64,
    pub variant: String,
}

/// Formats with a signature, in detection order.
fn signatures(src: &dyn Source) -> Vec<DiskFormat> {
    let mut found = Vec::new();
    if qcow2::matches(src) {
        found.push(DiskFormat::Qcow2);
    }
    if vhd::matches(src) {
        found.push(DiskFormat::Vhd);
    }
    if vhdx::matches(src) {
        found.push(DiskFormat::Vhdx);
    }
    if vdi::matches(src) {
        found.push(DiskFormat::Vdi);
    }
    if vmdk::matches(src) {
        found.push(DiskFormat::Vmdk);
    }
    if iso::matches(src) {
        found.push(DiskFormat::Iso);
    }
    found
}

/// Inspects a disk image (not a package): detects its format, runs that
/// format's checks, and reports its virtual size.
pub fn inspect_disk(src: &dyn Source, limits: &Limits) -> Result<ImageInfo, InspectError> {
    if qcow2::is_qed(src) {
        return Err(InspectError::unsafe_image("qed", "is not accepted"));
    }
    let found = signatures(src);
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|f| f.name()).collect();
        return Err(InspectError::Polyglot(names.join(", ")));
    }
    let format = found.first().copied().unwrap_or(DiskFormat::Raw);
    let f = match format {
        DiskFormat::Qcow2 => qcow2::inspect(src)?,
        DiskFormat::Vhd => vhd::inspect(src)?,
        DiskFormat::Vhdx => vhdx::inspect(src)?,
        DiskFormat::Vdi => vdi::inspect(src)?,
        DiskFormat::Vmdk => vmdk::inspect(src)?,
        DiskFormat::Iso => iso::inspect(src)?,
        DiskFormat::Raw => {
            if !limits.allow_bad_partition_table {
                mbr::check(src)?;
            }
            Found {
                virtual_size: src.size(),
                variant: "raw".into(),
            }
        }
    };
    if f.virtual_size > limits.max_virtual_size {
        return Err(InspectError::TooLarge {
            size: f.virtual_size,
            limit: limits.max_virtual_size,
        });
    }
    Ok(ImageInfo {
        format,
        container: None,
        virtual_size: f.virtual_size,
        variant: f.variant,
        properties: Vec::new(),
        disk_member: None,
    })
}

/// Inspects an upload: an OVA package (tar with the .ovf first) or a disk.
pub fn inspect(src: &dyn Source, limits: &Limits) -> Result<ImageInfo, InspectError> {
    if ova::matches(src) {
        return ova::inspect(src, limits);
    }
    inspect_disk(src, limits)
}

/// Check 8: a declared `disk_format` must be what the image is (a "raw"
/// declaration of a qcow2 is the classic attack).
pub fn check_declared(info: &ImageInfo, declared: Option<&str>) -> Result<(), InspectError> {
    match declared {
        None => Ok(()),
        Some(d) if d == info.format.name() => Ok(()),
        Some(d) => Err(InspectError::FormatMismatch {
            declared: d.to_string(),
            detected: info.format,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_tiny_inputs_are_raw() {
        for data in [&b""[..], b"x", &[0u8; 600][..]] {
            let info = inspect(&data, &Limits::default()).unwrap();
            assert_eq!(info.format, DiskFormat::Raw);
            assert_eq!(info.virtual_size, data.len() as u64);
        }
    }

    #[test]
    fn qed_is_always_rejected() {
        let mut img = vec![0u8; 4096];
        img[..4].copy_from_slice(b"QED\0");
        let e = inspect(&img, &Limits::default()).unwrap_err();
        assert_eq!(e.to_string(), "qed image is not accepted: rejected");
    }

    #[test]
    fn declared_format_must_match() {
        let info = inspect(&vec![0u8; 1024], &Limits::default()).unwrap();
        assert!(check_declared(&info, Some("raw")).is_ok());
        assert!(check_declared(&info, None).is_ok());
        let e = check_declared(&info, Some("qcow2")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image was declared qcow2 but is raw: rejected"
        );
    }

    #[test]
    fn virtual_size_limit() {
        let limits = Limits {
            max_virtual_size: 100,
            ..Limits::default()
        };
        assert!(matches!(
            inspect(&vec![0u8; 101], &limits),
            Err(InspectError::TooLarge {
                size: 101,
                limit: 100
            })
        ));
    }
}
