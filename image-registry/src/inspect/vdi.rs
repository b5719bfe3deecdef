//! VDI (VirtualBox, little-endian). Signature 0xBEDA107F at 0x40; image
//! type at 0x4C (1 dynamic, 2 static, 3 undo, 4 differencing); block map
//! offset at 0x154, data offset at 0x158; virtual size at 0x170; block
//! size at 0x178; blocks at 0x180; linkage and parent UUIDs at 0x1A8/0x1B8.

use super::source::{le_u32, le_u64, peek, read, within, Source};
use super::{Found, InspectError};

const FORMAT: &str = "vdi";
const SIGNATURE: u32 = 0xBEDA_107F;

pub fn matches(src: &dyn Source) -> bool {
    peek(src, 0x40, 4).is_some_and(|s| le_u32(&s, 0) == SIGNATURE)
}

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

pub(crate) fn inspect(src: &dyn Source) -> Result<Found, InspectError> {
    let h = read(src, FORMAT, 0, 0x1C8)?;
    let variant = match le_u32(&h, 0x4C) {
        1 => "vdi dynamic",
        2 => "vdi static",
        3 | 4 => return Err(bad("has a backing file (undo or differencing image)")),
        other => return Err(bad(format!("has an unknown image type {other}"))),
    };
    if h[0x1A8..0x1C8].iter().any(|b| *b != 0) {
        return Err(bad("has a backing file (linkage or parent UUID)"));
    }
    let map_at = u64::from(le_u32(&h, 0x154));
    let size = le_u64(&h, 0x170);
    let block = u64::from(le_u32(&h, 0x178));
    let blocks = u64::from(le_u32(&h, 0x180));
    if block == 0 || blocks.saturating_mul(block) < size {
        return Err(bad("has a block map smaller than the disk"));
    }
    // Rule 11: the block map and the allocated data lie inside the file.
    let data_at = u64::from(le_u32(&h, 0x158));
    let allocated = u64::from(le_u32(&h, 0x184));
    if allocated > blocks {
        return Err(bad("has more allocated blocks than blocks"));
    }
    let data_len = allocated.saturating_mul(block);
    within(src, FORMAT, map_at, blocks * 4)?;
    within(src, FORMAT, data_at, data_len)?;
    Ok(Found {
        virtual_size: size,
        variant: variant.into(),
    })
}
