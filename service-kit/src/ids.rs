//! Random bytes, random ids and the timestamps APIs print.

use crate::timestamp::Timestamp;

/// `N` bytes from the OS random source.
pub fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

/// A random (version 4) UUID.
pub fn new_id() -> String {
    uuid_of(rand_bytes::<16>(), 4)
}

/// `bytes` as a UUID of `version` (4: random; 5: from a hash), its version
/// and variant bits set.
pub fn uuid_of(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The current time as OpenStack APIs print it: `2026-11-24T09:41:18Z`.
pub fn now_iso8601() -> String {
    let ts = Timestamp::now().iso8601();
    format!("{}Z", &ts[..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v4_uuids_and_times_are_seconds() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, new_id());
        let t = now_iso8601();
        assert_eq!(t.len(), 20);
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
