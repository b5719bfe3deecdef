//! VHD (Virtual PC, big-endian). A 512-byte footer with cookie `conectix`
//! ends the file; a dynamic disk also has a copy at 0 and a `cxsparse`
//! header at the footer's data offset, with the block table after it.

use super::source::{be_u16, be_u32, be_u64, peek, read, within, Source};
use super::{Found, InspectError};

const FORMAT: &str = "vhd";
const COOKIE: &[u8] = b"conectix";
const FIXED: u32 = 2;
const DYNAMIC: u32 = 3;
const DIFFERENCING: u32 = 4;
/// qemu's largest CHS geometry: past it, the footer's size is used.
const MAX_GEOMETRY: u64 = 65_535 * 16 * 255;

pub fn matches(src: &dyn Source) -> bool {
    let at_end = src
        .size()
        .checked_sub(512)
        .and_then(|o| peek(src, o, 8))
        .is_some_and(|c| c == COOKIE);
    at_end || peek(src, 0, 8).is_some_and(|c| c == COOKIE)
}

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

pub(crate) fn inspect(src: &dyn Source) -> Result<Found, InspectError> {
    let end = src.size().checked_sub(512).ok_or(InspectError::Truncated {
        format: FORMAT,
        needed: 512,
        size: src.size(),
    })?;
    let footer = read(src, FORMAT, end, 512)?;
    if &footer[..8] != COOKIE {
        // A copy at 0 without the footer: cut short.
        return Err(bad("has no footer at its end (truncated)"));
    }
    // qemu reads the copy at 0 when there is one (and then treats the disk
    // as dynamic), else the footer at the end (and treats it as fixed). The
    // two must say the same, and say what qemu will assume.
    let copy_at_start = peek(src, 0, 512).filter(|c| &c[..8] == COOKIE);
    if let Some(copy) = &copy_at_start {
        if *copy != footer {
            return Err(bad(
                "has a footer copy at its start that differs from its footer",
            ));
        }
    }
    if !checksum_ok(&footer) {
        return Err(bad("has a footer with a bad checksum"));
    }
    let disk_type = be_u32(&footer, 60);
    let current_size = be_u64(&footer, 48);
    let variant = match (disk_type, copy_at_start.is_some()) {
        (FIXED, false) => {
            within(src, FORMAT, 0, current_size.saturating_add(512))?;
            "vhd fixed"
        }
        (FIXED, true) => return Err(bad("is a fixed disk with a footer copy at its start")),
        (DYNAMIC, true) => {
            check_dynamic(src, &footer, current_size)?;
            "vhd dynamic"
        }
        (DYNAMIC, false) => {
            return Err(bad(
                "is a dynamic disk without its footer copy at its start",
            ))
        }
        (DIFFERENCING, _) => return Err(bad("has a backing file (differencing disk)")),
        (other, _) => return Err(bad(format!("has an unknown disk type {other}"))),
    };
    Ok(Found {
        virtual_size: qemu_visible_size(&footer, current_size),
        variant: variant.into(),
    })
}

/// The footer's checksum: the ones' complement of the sum of its bytes,
/// the checksum field counted as zero (qemu refuses a footer without it).
fn checksum_ok(footer: &[u8]) -> bool {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |acc, (_, b)| acc.wrapping_add(u32::from(*b)));
    !sum == be_u32(footer, 64)
}

/// The dynamic header and its block table must be inside the file and
/// cover the disk.
fn check_dynamic(src: &dyn Source, footer: &[u8], current_size: u64) -> Result<(), InspectError> {
    let header_at = be_u64(footer, 16);
    let h = read(src, FORMAT, header_at, 1024)?;
    if &h[..8] != b"cxsparse" {
        return Err(bad("has no dynamic disk header"));
    }
    let table_at = be_u64(&h, 16);
    let entries = u64::from(be_u32(&h, 28));
    let block = u64::from(be_u32(&h, 32));
    if block == 0 || !block.is_power_of_two() {
        return Err(bad(format!("has an invalid block size ({block})")));
    }
    if entries.saturating_mul(block) < current_size {
        return Err(bad("has a block table smaller than the disk"));
    }
    within(src, FORMAT, table_at, entries * 4)
}

/// The size qemu shows: Virtual PC and qemu's own "qemu" images use the
/// CHS geometry, Hyper-V and other tools the footer's current size
/// (qemu's `block/vpc.c` table), so that we agree with `qemu-img info`.
fn qemu_visible_size(footer: &[u8], current_size: u64) -> u64 {
    let creator = &footer[28..32];
    let chs = u64::from(be_u16(footer, 56)) * u64::from(footer[58]) * u64::from(footer[59]);
    let uses_current_size = [&b"win "[..], b"qem2", b"d2v ", b"CTXS", b"tap\0"].contains(&creator);
    if uses_current_size || chs == MAX_GEOMETRY {
        current_size
    } else {
        chs * 512
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(size: u64) -> Vec<u8> {
        let mut img = vec![0u8; size as usize + 512];
        let f = &mut img[size as usize..];
        f[..8].copy_from_slice(COOKIE);
        f[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        f[28..32].copy_from_slice(b"win ");
        f[48..56].copy_from_slice(&size.to_be_bytes());
        f[60..64].copy_from_slice(&FIXED.to_be_bytes());
        seal(f);
        img
    }

    fn seal(footer: &mut [u8]) {
        footer[64..68].fill(0);
        let sum = footer
            .iter()
            .fold(0u32, |a, b| a.wrapping_add(u32::from(*b)));
        footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
    }

    #[test]
    fn fixed_disks_report_their_size() {
        let f = inspect(&fixed(4096)).unwrap();
        assert_eq!((f.virtual_size, f.variant.as_str()), (4096, "vhd fixed"));
    }

    #[test]
    fn differencing_and_short_disks_are_refused() {
        let mut img = fixed(4096);
        img[4096 + 60..4096 + 64].copy_from_slice(&DIFFERENCING.to_be_bytes());
        seal(&mut img[4096..]);
        assert!(inspect(&img)
            .unwrap_err()
            .to_string()
            .contains("backing file"));
        let mut img = fixed(4096);
        img[4096 + 48..4096 + 56].copy_from_slice(&(1u64 << 40).to_be_bytes());
        seal(&mut img[4096..]);
        assert!(matches!(inspect(&img), Err(InspectError::Truncated { .. })));
        let mut img = fixed(4096);
        img[4096 + 100] ^= 1;
        assert!(inspect(&img).unwrap_err().to_string().contains("checksum"));
    }
}
