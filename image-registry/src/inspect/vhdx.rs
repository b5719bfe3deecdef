//! VHDX (little-endian). `vhdxfile` at 0; two region tables (`regi`) at
//! 192 KiB and 256 KiB name the metadata region, whose table (`metadata`)
//! holds the virtual disk size and, for a differencing disk, a parent
//! locator.

use super::source::{le_u16, le_u32, le_u64, peek, read, within, Source};
use super::{Found, InspectError};

const FORMAT: &str = "vhdx";
const REGION_TABLES: [u64; 2] = [192 << 10, 256 << 10];
const MAX_ENTRIES: u64 = 2048;

/// A GUID as stored on disk (first three fields little-endian).
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

const METADATA_REGION: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
const FILE_PARAMETERS: [u8; 16] = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
const PARENT_LOCATOR: [u8; 16] = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);

pub fn matches(src: &dyn Source) -> bool {
    peek(src, 0, 8).is_some_and(|m| m == b"vhdxfile")
}

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

pub(crate) fn inspect(src: &dyn Source) -> Result<Found, InspectError> {
    let (meta_at, meta_len) = metadata_region(src)?;
    let table = read(src, FORMAT, meta_at, 32)?;
    if &table[..8] != b"metadata" {
        return Err(bad("has a bad metadata table signature"));
    }
    let count = u64::from(le_u16(&table, 10));
    if count > MAX_ENTRIES {
        return Err(bad(format!(
            "has {count} metadata entries (at most {MAX_ENTRIES})"
        )));
    }
    let entries = read(src, FORMAT, meta_at.saturating_add(32), count * 32)?;
    let mut size = None;
    for e in entries.chunks_exact(32) {
        let id: [u8; 16] = e[..16].try_into().expect("16 bytes");
        let (offset, len) = (u64::from(le_u32(e, 16)), u64::from(le_u32(e, 20)));
        if offset.saturating_add(len) > meta_len {
            return Err(bad("has a metadata item outside its region"));
        }
        let item_at = meta_at.saturating_add(offset);
        if id == PARENT_LOCATOR {
            return Err(bad("has a backing file (parent locator)"));
        }
        if id == FILE_PARAMETERS {
            let p = read(src, FORMAT, item_at, 8)?;
            if le_u32(&p, 4) & 0b10 != 0 {
                return Err(bad("has a backing file (differencing disk)"));
            }
        }
        if id == VIRTUAL_DISK_SIZE {
            size = Some(le_u64(&read(src, FORMAT, item_at, 8)?, 0));
        }
    }
    let virtual_size = size.ok_or_else(|| bad("has no virtual disk size"))?;
    Ok(Found {
        virtual_size,
        variant: "vhdx".into(),
    })
}

/// (offset, length) of the metadata region, from the first region table
/// with a valid signature.
fn metadata_region(src: &dyn Source) -> Result<(u64, u64), InspectError> {
    for at in REGION_TABLES {
        let h = read(src, FORMAT, at, 16)?;
        if &h[..4] != b"regi" {
            continue;
        }
        let count = u64::from(le_u32(&h, 8));
        if count > MAX_ENTRIES {
            return Err(bad(format!(
                "has {count} region entries (at most {MAX_ENTRIES})"
            )));
        }
        let entries = read(src, FORMAT, at + 16, count * 32)?;
        // Rule 11: every region (the BAT and the metadata among them) lies
        // inside the file.
        let mut metadata = None;
        for e in entries.chunks_exact(32) {
            let (offset, len) = (le_u64(e, 16), u64::from(le_u32(e, 24)));
            within(src, FORMAT, offset, len)?;
            if e[..16] == METADATA_REGION {
                metadata = Some((offset, len));
            }
        }
        if let Some(found) = metadata {
            return Ok(found);
        }
        return Err(bad("has no metadata region"));
    }
    Err(bad("has no valid region table"))
}
