//! The builder file: the operator's ring state, kept beside the ring file.
//!
//! Body (inside the [`crate::codec`] envelope, magic `NUBOBLDR`, version 1):
//! `part_power u8 | replicas u8 | min_part_hours u32 | generation u64 |
//! next_device_id u32 | dirty u8 | secret prefix str16 | secret suffix str16 |
//! device count u32 | (device, removing u8)* | has_table u8 |
//! [table u16 * replicas * 2^part_power | last_moved u32 * 2^part_power]`.

use crate::builder::{BuilderDevice, RingBuilder};
use crate::codec::{self, Reader, Writer};
use crate::device::{Device, NO_DEVICE};
use crate::error::{Error, Result};
use crate::placement::HashSecret;
use std::collections::BTreeMap;
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"NUBOBLDR";
pub const VERSION: u32 = 1;

pub fn encode(b: &RingBuilder) -> Vec<u8> {
    let mut w = Writer::with_capacity(b.table.len() * 2 + b.last_moved.len() * 4 + 4096);
    w.u8(b.part_power);
    w.u8(b.replicas);
    w.u32(b.min_part_hours);
    w.u64(b.generation);
    w.u32(b.next_device_id);
    w.u8(b.dirty as u8);
    w.str16(b.secret.prefix());
    w.str16(b.secret.suffix());
    w.u32(b.devices.len() as u32);
    for d in b.devices.values() {
        d.device.encode(&mut w);
        w.u8(d.removing as u8);
    }
    w.u8(!b.table.is_empty() as u8);
    if !b.table.is_empty() {
        w.u16_slice(&b.table);
        w.u32_slice(&b.last_moved);
    }
    codec::seal(MAGIC, VERSION, &w.buf)
}

pub fn decode(bytes: &[u8]) -> Result<RingBuilder> {
    let (body, _) = codec::open("ring builder", MAGIC, VERSION, bytes)?;
    let mut r = Reader::new(body);
    let part_power = r.u8("part power")? as u32;
    let replicas = r.u8("replica count")? as u32;
    let min_part_hours = r.u32("min_part_hours")?;
    let mut b = RingBuilder::new(part_power, replicas, min_part_hours, HashSecret::generate())?;
    b.generation = r.u64("generation")?;
    b.next_device_id = r.u32("next device id")?;
    b.dirty = r.u8("dirty flag")? != 0;
    let prefix = r.str16("hash secret prefix")?;
    let suffix = r.str16("hash secret suffix")?;
    b.secret = HashSecret::new(prefix, suffix)?;
    let count = r.u32("device count")?;
    let mut devices = BTreeMap::new();
    for _ in 0..count {
        let device = Device::decode(&mut r)?;
        let removing = r.u8("removing flag")? != 0;
        if device.id as u32 >= b.next_device_id {
            return Err(Error::Malformed(format!(
                "device id {} was never handed out",
                device.id
            )));
        }
        let id = device.id;
        if devices
            .insert(id, BuilderDevice { device, removing })
            .is_some()
        {
            return Err(Error::Malformed(format!("device id {id} appears twice")));
        }
    }
    b.devices = devices;
    if r.u8("table flag")? != 0 {
        let parts = b.partition_count();
        b.table = r.u16_vec(parts * b.replicas(), "replica table")?;
        b.last_moved = r.u32_vec(parts, "last-moved table")?;
        if let Some(bad) = b
            .table
            .iter()
            .find(|&&id| id != NO_DEVICE && !b.devices.contains_key(&id))
        {
            return Err(Error::Malformed(format!(
                "the table names unknown device {bad}"
            )));
        }
    }
    r.finish()?;
    Ok(b)
}

impl RingBuilder {
    pub fn load(path: impl AsRef<Path>) -> Result<RingBuilder> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        decode(&bytes)
    }

    /// Writes the builder file atomically (temp file, fsync, rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic_file::write(path.as_ref(), &encode(self))
    }
}
