//! ISO 9660: the primary volume descriptor at 32 KiB (type 1, `CD001`),
//! with the volume's block count at +80 and block size at +128 (both-endian
//! fields; the little-endian half is read).

use super::source::{le_u16, le_u32, peek, read, Source};
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
    let size = u64::from(le_u32(&d, 80)) * u64::from(le_u16(&d, 128));
    Ok(Found {
        virtual_size: size,
        variant: "iso".into(),
    })
}
