//! Names to partitions: the pure hashing core of the ring.
//!
//! A name (`account`, `account/container` or `account/container/object`) is
//! hashed with blake3 keyed by the cluster secret. The secret keeps clients
//! from crafting names that pile onto one partition. Each path component is
//! length-framed, so no two different paths can feed the hash the same bytes.

use crate::error::{Error, Result};
use std::fmt;

/// The cluster's hash secret, in Swift's prefix + suffix form.
#[derive(Clone, PartialEq, Eq)]
pub struct HashSecret {
    prefix: String,
    suffix: String,
}

impl fmt::Debug for HashSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashSecret(..)")
    }
}

/// A secret shorter than this (prefix and suffix together) is refused.
pub const MIN_SECRET_LEN: usize = 8;

impl HashSecret {
    pub fn new(prefix: impl Into<String>, suffix: impl Into<String>) -> Result<Self> {
        let s = HashSecret {
            prefix: prefix.into(),
            suffix: suffix.into(),
        };
        if s.prefix.len() + s.suffix.len() < MIN_SECRET_LEN {
            return Err(Error::MissingSecret);
        }
        if s.prefix.len() > u16::MAX as usize || s.suffix.len() > u16::MAX as usize {
            return Err(Error::Malformed("hash secret is longer than 64 KiB".into()));
        }
        Ok(s)
    }

    /// A fresh random secret, for `nubo ring create` without an explicit one.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        HashSecret {
            prefix: hex[..32].to_string(),
            suffix: hex[32..].to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    pub fn hasher(&self) -> NameHasher {
        let mut material = Vec::with_capacity(16 + self.prefix.len() + self.suffix.len());
        for part in [&self.prefix, &self.suffix] {
            material.extend_from_slice(&(part.len() as u64).to_le_bytes());
            material.extend_from_slice(part.as_bytes());
        }
        NameHasher {
            key: blake3::derive_key("nubo 2026-11 ring name hashing v1", &material),
        }
    }
}

/// Hashes names under one secret. Cheap to copy; hashing allocates nothing.
#[derive(Clone, Copy)]
pub struct NameHasher {
    key: [u8; 32],
}

impl NameHasher {
    pub fn account(&self, account: &str) -> NameHash {
        self.path(&[account])
    }
    pub fn container(&self, account: &str, container: &str) -> NameHash {
        self.path(&[account, container])
    }
    pub fn object(&self, account: &str, container: &str, object: &str) -> NameHash {
        self.path(&[account, container, object])
    }

    /// Hashes 1 to 3 path components (account, container, object).
    pub fn path(&self, components: &[&str]) -> NameHash {
        // Short names (almost all) are framed on the stack and hashed in one
        // shot: with varint lengths a typical object path fits one 64-byte
        // blake3 block, and one-shot hashing skips the streaming hasher's
        // bookkeeping. Both paths hash exactly the same bytes.
        let framed_len = 1 + components.iter().map(|c| 10 + c.len()).sum::<usize>();
        let mut out = [0u8; 16];
        if framed_len <= STACK_FRAME {
            let mut buf = [0u8; STACK_FRAME];
            let mut at = 0;
            frame(components, |bytes| {
                buf[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            });
            out.copy_from_slice(&blake3::keyed_hash(&self.key, &buf[..at]).as_bytes()[..16]);
        } else {
            let mut h = blake3::Hasher::new_keyed(&self.key);
            frame(components, |bytes| {
                h.update(bytes);
            });
            out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        }
        NameHash(out)
    }
}

/// The hashed form of a path: `count u8 | (LEB128 length | bytes)*`, which
/// keeps ("a/b", "c") and ("a", "b/c") apart.
fn frame(components: &[&str], mut emit: impl FnMut(&[u8])) {
    emit(&[components.len() as u8]);
    for c in components {
        let mut len = c.len() as u64;
        let mut varint = [0u8; 10];
        let mut n = 0;
        loop {
            let low = (len & 0x7f) as u8;
            len >>= 7;
            varint[n] = if len == 0 { low } else { low | 0x80 };
            n += 1;
            if len == 0 {
                break;
            }
        }
        emit(&varint[..n]);
        emit(c.as_bytes());
    }
}

/// Names whose framed form fits here are hashed from the stack.
const STACK_FRAME: usize = 512;

/// 128 bits of a name's keyed hash: its partition, and its directory name on disk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameHash(pub [u8; 16]);

impl NameHash {
    /// The top `part_power` bits of the first four bytes.
    pub fn partition(&self, part_power: u8) -> u32 {
        debug_assert!((1..=32).contains(&part_power));
        let top = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        // part_power 32 would shift by zero, which is fine; u64 avoids the shift-by-32 case.
        ((top as u64) >> (32 - part_power as u32)) as u32
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The last three hex digits: a partition's objects are grouped by suffix (as in Swift).
    pub fn suffix(&self) -> String {
        let hex = self.to_hex();
        hex[hex.len() - 3..].to_string()
    }
}

impl fmt::Debug for NameHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameHash({})", self.to_hex())
    }
}

impl fmt::Display for NameHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(prefix: &str) -> NameHasher {
        HashSecret::new(prefix, "suffix-secret").unwrap().hasher()
    }

    #[test]
    fn a_secret_is_required() {
        assert!(matches!(HashSecret::new("", ""), Err(Error::MissingSecret)));
        assert!(matches!(
            HashSecret::new("abc", ""),
            Err(Error::MissingSecret)
        ));
        assert!(HashSecret::new("", "long-enough").is_ok());
        let a = HashSecret::generate();
        let b = HashSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.prefix().len(), 32);
    }

    #[test]
    fn the_secret_changes_every_hash() {
        let (a, b) = (hasher("one-secret"), hasher("another-secret"));
        assert_ne!(a.object("acc", "c", "o"), b.object("acc", "c", "o"));
        assert_eq!(
            a.object("acc", "c", "o"),
            hasher("one-secret").object("acc", "c", "o")
        );
    }

    #[test]
    fn framing_keeps_distinct_paths_distinct() {
        let h = hasher("framing-test");
        assert_ne!(h.container("a", "bc"), h.container("ab", "c"));
        assert_ne!(h.account("a/b"), h.container("a", "b"));
        assert_ne!(h.container("a", ""), h.account("a"));
    }

    #[test]
    fn short_and_long_names_hash_the_same_way() {
        // The stack fast path and the streaming path must agree byte for byte;
        // the reference frames by hand: count, then LEB128 length and bytes.
        let h = hasher("paths-agree");
        for len in [0, 1, 127, 128, 300, 470, 480, 490, 500, 1024, 20_000] {
            let object = "o".repeat(len);
            let mut reference = blake3::Hasher::new_keyed(&h.key);
            reference.update(&[3]);
            for c in ["AUTH_x", "c", object.as_str()] {
                let mut v = c.len();
                while v >= 0x80 {
                    reference.update(&[(v as u8 & 0x7f) | 0x80]);
                    v >>= 7;
                }
                reference.update(&[v as u8]);
                reference.update(c.as_bytes());
            }
            let expected: [u8; 16] = reference.finalize().as_bytes()[..16].try_into().unwrap();
            assert_eq!(
                h.object("AUTH_x", "c", &object).0,
                expected,
                "object of {len} bytes"
            );
        }
    }

    #[test]
    fn partition_uses_the_top_bits() {
        let h = NameHash([
            0xAB, 0xCD, 0xEF, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0xed,
        ]);
        assert_eq!(h.partition(1), 1);
        assert_eq!(h.partition(8), 0xAB);
        assert_eq!(h.partition(16), 0xABCD);
        assert_eq!(h.partition(32), 0xABCDEF12);
        assert_eq!(h.suffix(), "fed");
        assert_eq!(h.to_hex().len(), 32);
    }

    #[test]
    fn partitions_are_uniform() {
        // 64k names into 256 partitions: every partition within 30% of the mean.
        let h = hasher("uniformity");
        let mut counts = [0u32; 256];
        for i in 0..65536 {
            counts[h.object("AUTH_test", "c", &format!("obj-{i}")).partition(8) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 180 && *max < 333, "min {min} max {max}");
    }
}
