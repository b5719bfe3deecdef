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

use source::peek;

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
    /// The most a conversion may write, whatever the image.
    pub max_convert_bytes: u64,
    /// How many times its own size an image may expand to when converted
    /// (what `qemu-img measure` says its data takes)...
    pub max_expansion: u64,
    /// ...above this floor, so small images are not held to the ratio.
    pub expansion_floor: u64,
}

impl Limits {
    /// The most an image of `len` bytes may take once converted: the
    /// expansion ratio above the floor, within the absolute cap.
    pub fn expansion_cap(&self, len: u64) -> u64 {
        len.saturating_mul(self.max_expansion)
            .max(self.expansion_floor)
            .min(self.max_convert_bytes)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_virtual_size: 1 << 40,
            allow_bad_partition_table: false,
            max_convert_bytes: 1 << 40,
            max_expansion: 64,
            expansion_floor: 256 << 20,
        }
    }
}

/// A format's own inspection, once its magic bytes matched.
#[derive(Debug)]
pub(crate) struct Found {
    pub virtual_size: u64,
    pub variant: String,
}

/// Formats qemu's probing recognises that are never accepted here, by the
/// name qemu gives them: qemu would open a file with one of these
/// signatures as that format wherever it probes, so it is refused whatever
/// it is declared as (and counts towards a polyglot).
fn refused_signatures(src: &dyn Source) -> Vec<&'static str> {
    let head = peek(src, 0, src.size().min(512) as usize).unwrap_or_default();
    let starts = |magic: &[u8]| head.starts_with(magic);
    let mut found = Vec::new();
    if starts(b"QED\0") {
        found.push("qed");
    }
    if starts(b"LUKS\xba\xbe") {
        found.push("luks");
    }
    if starts(b"WithoutFreeSpace") || starts(b"WithouFreSpacExt") {
        found.push("parallels");
    }
    if starts(b"Bochs Virtual HD Image") {
        found.push("bochs");
    }
    if starts(
        b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n",
    ) {
        found.push("cloop");
    }
    found
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
    let refused = refused_signatures(src);
    let found = signatures(src);
    if found.len() + refused.len() > 1 {
        let mut names: Vec<&str> = found.iter().map(|f| f.name()).collect();
        names.extend(&refused);
        return Err(InspectError::Polyglot(names.join(", ")));
    }
    if let Some(name) = refused.first() {
        return Err(InspectError::unsafe_image(name, "is not accepted"));
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
                virtual_size: raw_virtual_size(src),
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

/// The size qemu gives a raw file: its length rounded up to whole sectors.
pub(crate) fn raw_virtual_size(src: &dyn Source) -> u64 {
    src.size().div_ceil(512).saturating_mul(512)
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
        for (data, size) in [(&b""[..], 0), (b"x", 512), (&[0u8; 600][..], 1024)] {
            let info = inspect(&data, &Limits::default()).unwrap();
            assert_eq!(info.format, DiskFormat::Raw);
            assert_eq!(
                info.virtual_size, size,
                "qemu rounds raw sizes up to sectors"
            );
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
                size: 512,
                limit: 100
            })
        ));
    }

    #[test]
    fn formats_qemu_probes_are_refused_whatever_they_are_declared() {
        for (magic, name) in [
            (&b"LUKS\xba\xbe"[..], "luks"),
            (b"WithoutFreeSpace", "parallels"),
            (b"Bochs Virtual HD Image", "bochs"),
        ] {
            let mut img = vec![0u8; 4096];
            img[..magic.len()].copy_from_slice(magic);
            let e = inspect(&img, &Limits::default()).unwrap_err().to_string();
            assert_eq!(e, format!("{name} image is not accepted: rejected"));
        }
    }
}
