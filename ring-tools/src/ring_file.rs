//! The ring file: what every service loads.
//!
//! Body (inside the [`crate::codec`] envelope, magic `NUBORING`, version 1):
//! `part_power u8 | replicas u8 | generation u64 | secret prefix str16 |
//! secret suffix str16 | device count u32 | devices | replica table`, where the
//! table is `replicas * 2^part_power` little-endian `u16` device ids,
//! replica-major. A 2^20-partition, 3-replica ring is 6 MiB.

use crate::codec::{self, Reader, Writer};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::placement::HashSecret;
use crate::ring::{Ring, RingParts};

pub const MAGIC: &[u8; 8] = b"NUBORING";
pub const VERSION: u32 = 1;

pub fn encode(ring: &Ring) -> Vec<u8> {
    let mut w = Writer::with_capacity(ring.table().len() * 2 + ring.devices().len() * 64 + 128);
    w.u8(ring.part_power());
    w.u8(ring.replicas() as u8);
    w.u64(ring.generation());
    w.str16(ring.secret().prefix());
    w.str16(ring.secret().suffix());
    w.u32(ring.devices().len() as u32);
    for d in ring.devices() {
        d.encode(&mut w);
    }
    w.u16_slice(ring.table());
    codec::seal(MAGIC, VERSION, &w.buf)
}

pub(crate) fn checksum_of(ring: &Ring) -> [u8; 32] {
    let bytes = encode(ring);
    bytes[bytes.len() - 32..].try_into().unwrap()
}

pub fn decode(bytes: &[u8]) -> Result<Ring> {
    let (body, _) = codec::open("ring", MAGIC, VERSION, bytes)?;
    let mut r = Reader::new(body);
    let part_power = r.u8("part power")?;
    if !(1..=32).contains(&part_power) {
        return Err(Error::InvalidPartPower(part_power as u32));
    }
    let replicas = r.u8("replica count")?;
    let generation = r.u64("generation")?;
    let prefix = r.str16("hash secret prefix")?;
    let suffix = r.str16("hash secret suffix")?;
    let secret = HashSecret::new(prefix, suffix)?;
    let device_count = r.u32("device count")?;
    let mut devices = Vec::new();
    for _ in 0..device_count {
        devices.push(Device::decode(&mut r)?);
    }
    let entries = (replicas as usize)
        .checked_mul(1usize << part_power)
        .ok_or_else(|| Error::Malformed("replica table size overflows".into()))?;
    let table = r.u16_vec(entries, "replica table")?;
    r.finish()?;
    Ring::from_parts(RingParts {
        part_power,
        replicas,
        generation,
        secret,
        devices,
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::test_device;

    fn ring() -> Ring {
        Ring::from_parts(RingParts {
            part_power: 3,
            replicas: 2,
            generation: 7,
            secret: HashSecret::new("a-prefix", "a-suffix").unwrap(),
            devices: (0..3)
                .map(|i| test_device(i, 1, i as u32, 1, 1.0))
                .collect(),
            table: vec![0, 1, 2, 0, 1, 2, 0, 1, 1, 2, 0, 1, 2, 0, 1, 2],
        })
        .unwrap()
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let bytes = encode(&ring());
        let back = decode(&bytes).unwrap();
        assert_eq!(encode(&back), bytes);
        assert_eq!(back.generation(), 7);
        assert_eq!(back.checksum(), ring().checksum());
        let h = back.hasher().object("a", "c", "o");
        assert_eq!(h, ring().hasher().object("a", "c", "o"));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected() {
        let bytes = encode(&ring());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert!(decode(&bad).is_err(), "flip at {i}");
            }
        }
    }

    #[test]
    fn a_well_sealed_but_inconsistent_body_is_rejected() {
        // The checksum only proves the bytes are what was written; the content is
        // still checked, so a hand-made file cannot smuggle in a broken table.
        let good = encode(&ring());
        let (body, _) = codec::open("ring", MAGIC, VERSION, &good).unwrap();
        let mut body = body.to_vec();
        let n = body.len();
        body[n - 2..].copy_from_slice(&99u16.to_le_bytes());
        let err = decode(&codec::seal(MAGIC, VERSION, &body)).unwrap_err();
        assert!(err.to_string().contains("not in the ring"), "{err}");

        let mut no_secret = Writer::default();
        no_secret.u8(3);
        no_secret.u8(2);
        no_secret.u64(1);
        no_secret.str16("");
        no_secret.str16("");
        let err = decode(&codec::seal(MAGIC, VERSION, &no_secret.buf)).unwrap_err();
        assert!(matches!(err, Error::MissingSecret));
    }
}
