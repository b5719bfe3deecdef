//! ISO 9660: the primary volume descriptor at 32 KiB (type 1, `CD001`),
//! with the volume's block count at +80 and block size at +128 (both-endian
//! fields; the little-endian half is read).
//!
//! qemu opens an ISO as raw, so its virtual size is the file's (rounded up
//! to sectors, as for raw), not the volume's: an ISO padded after its
//! volume is normal. The declared volume must lie inside the file (rule
//! 11). The system area before the descriptor (the first 32 KiB) is where
//! a hybrid ISO keeps its MBR, and where a hostile one would hide another
//! format's header: detection ([`super::inspect_disk`]) looks there too.

use super::source::{le_u16, le_u32, peek, read, within, Source};
use super::{Found, InspectError};

const FORMAT: &str = "iso";
const DESCRIPTOR: u64 = 32 << 10;

pub fn matches(src: &dyn Source) -> bool {
    peek(src, DESCRIPTOR + 1, 5).is_some_and(|m| m == b"CD001")
}

pub(crate) fn inspect(src: &dyn Source) -> Result<Found, InspectError> {
    let d = read(src, FORMAT, DESCRIPTOR, 2048)?;
    if d[0] != 1 {
        return Err(InspectError::unsafe_image(
            FORMAT,
            "has no primary volume descriptor first",
        ));
    }
    let block = u64::from(le_u16(&d, 128));
    let volume = u64::from(le_u32(&d, 80)) * block;
    within(src, FORMAT, 0, volume)?;
    Ok(Found {
        virtual_size: super::raw_virtual_size(src),
        variant: "iso".into(),
    })
}
