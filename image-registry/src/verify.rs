//! The one verdict on an image file. Every path that makes an image usable
//! calls [`verify`]: a direct upload (`PUT /file`, and so `nubo image
//! upload`), stage + import, an OVA's disk, and a compute host settling a
//! downloaded base. An image passes only if both readers agree that it is
//! safe:
//! 1. the pure inspector ([`crate::inspect`]): format, virtual size and
//!    every check of image-safety.md;
//! 2. the declared disk and container formats match what was found;
//! 3. `qemu-img info -f <format>` under prlimit (check 9): the same
//!    format and virtual size, no backing file, no data file, and no file
//!    but the image itself anywhere in its answer (VMDK extents included);
//! 4. `qemu-img measure`: what the image's data would take once converted
//!    stays within [`Limits::expansion_cap`] of the file's own size (so a
//!    small file whose tables all point at one cluster is refused before
//!    anything converts it). qemu has no allocation map for VHDX, so there
//!    the conversion's own cap ([`crate::convert::convert`]) is the guard.
//!
//! Blocking (it runs qemu-img): call it off the async workers.

#![cfg(feature = "service")]

use crate::convert::{self, ConvertError};
use crate::inspect::{self, DiskFormat, FileSource, ImageInfo, InspectError, Limits};
use std::path::{Path, PathBuf};

/// What a client said the image is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Declared<'a> {
    pub disk_format: Option<&'a str>,
    pub container_format: Option<&'a str>,
}

/// An image that passed.
#[derive(Debug)]
pub struct Verified {
    /// What the file is (for an OVA: the package, with its disk's format
    /// and virtual size and the descriptor's properties).
    pub info: ImageInfo,
    /// The disk itself: the file, or an OVA's disk extracted into the work
    /// directory.
    pub disk: PathBuf,
    /// The disk's own inspection.
    pub disk_info: ImageInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Inspect(#[from] InspectError),
    #[error("image was declared {declared} but {found}: rejected")]
    Container {
        declared: String,
        found: &'static str,
    },
    #[error("{0}")]
    Qemu(#[from] ConvertError),
    #[error("image data would take {required} bytes once converted, more than the {limit} allowed for it: rejected")]
    Expands { required: u64, limit: u64 },
    #[error("cannot read the image: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs every check on `path`. `work` is a directory the caller owns and
/// removes afterwards (an OVA's disk is extracted there).
pub fn verify(
    path: &Path,
    declared: Declared<'_>,
    limits: &Limits,
    work: &Path,
) -> Result<Verified, VerifyError> {
    let file = FileSource::open(path)?;
    let info = inspect::inspect(&file, limits)?;
    inspect::check_declared(&info, declared.disk_format)?;
    check_container(&info, declared.container_format)?;
    let (disk, disk_info) = match &info.disk_member {
        Some((_, offset, len)) => {
            std::fs::create_dir_all(work)?;
            let disk = work.join("ova-disk");
            convert::extract(path, *offset, *len, &disk)?;
            let disk_info = inspect::inspect_disk(&FileSource::open(&disk)?, limits)?;
            (disk, disk_info)
        }
        None => (path.to_path_buf(), info.clone()),
    };
    let qemu = convert::qemu_info(&disk, disk_info.format)?;
    convert::cross_check(&disk_info, &qemu, &disk)?;
    // qemu cannot tell which parts of a VHDX are allocated (it has no
    // block status for it), so `measure` would count the whole virtual
    // size; a VHDX is held to the limit by the conversion's cap instead.
    if disk_info.format != DiskFormat::Vhdx {
        let required = convert::measure(&disk, disk_info.format)?;
        let limit = limits.expansion_cap(std::fs::metadata(&disk)?.len());
        if required > limit {
            return Err(VerifyError::Expands { required, limit });
        }
    }
    Ok(Verified {
        info,
        disk,
        disk_info,
    })
}

/// `container_format` ova means an OVA package, and only then.
fn check_container(info: &ImageInfo, declared: Option<&str>) -> Result<(), VerifyError> {
    let is_ova = info.container == Some("ova");
    match declared {
        Some("ova") if !is_ova => Err(VerifyError::Container {
            declared: "ova".into(),
            found: "is not an OVA package",
        }),
        Some(c) if c != "ova" && is_ova => Err(VerifyError::Container {
            declared: c.into(),
            found: "is an OVA package",
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expansion_limit_is_a_ratio_above_a_floor_below_a_cap() {
        let limits = Limits {
            max_expansion: 64,
            expansion_floor: 256 << 20,
            max_convert_bytes: 10 << 30,
            ..Limits::default()
        };
        assert_eq!(limits.expansion_cap(448 << 10), 256 << 20);
        assert_eq!(limits.expansion_cap(1 << 30), 10 << 30);
        assert_eq!(limits.expansion_cap(100 << 20), 6400 << 20);
    }
}
