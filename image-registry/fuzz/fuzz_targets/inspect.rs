//! Feeds arbitrary bytes to the inspector, as a whole upload and as each
//! format's own parser: no panic, hang or huge allocation may follow.
//! Run: `cd image-registry/fuzz && cargo fuzz run inspect corpus/inspect`
#![no_main]

use image_registry::inspect::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = inspect::inspect(&data, &limits);
    let _ = inspect::inspect_disk(&data, &limits);
    let _ = inspect::vmdk::check_descriptor(data);
    let _ = inspect::ova::parse_ovf(data);
});
