//! The loaded ring: an immutable map from partitions to devices.
//!
//! Like Swift's `ring.py`, a lookup needs very little: hash the name, shift to
//! a partition, read one column of the replica table. Handoffs are derived on
//! demand and identically on every node, so no coordination is needed to agree
//! where a write goes when a primary is down.

use crate::device::{Device, DeviceId, NO_DEVICE};
use crate::error::{Error, Result};
use crate::permute::Permutation;
use crate::placement::{HashSecret, NameHash, NameHasher};
use std::collections::HashMap;
use std::path::Path;

/// Everything a ring is made of; [`Ring::from_parts`] checks it before a ring exists.
pub struct RingParts {
    pub part_power: u8,
    pub replicas: u8,
    /// Bumped by the builder each time the ring changes, so nodes can tell newer from older.
    pub generation: u64,
    pub secret: HashSecret,
    pub devices: Vec<Device>,
    /// Replica-major: entry `r * 2^part_power + p` is the device of replica `r` of partition `p`.
    pub table: Vec<u16>,
}

/// Where a device sits in the failure-domain tree, as small comparable keys.
#[derive(Clone, Copy, Default)]
struct TierKey {
    region: u32,
    zone: (u32, u32),
    host: u32,
}

pub struct Ring {
    parts: RingParts,
    hasher: NameHasher,
    /// Indexed by device id.
    by_id: Vec<Option<usize>>,
    tiers: Vec<TierKey>,
    /// Devices that may take handoff writes (weight > 0), sorted by id.
    handoff_pool: Vec<DeviceId>,
    checksum: [u8; 32],
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("part_power", &self.parts.part_power)
            .field("replicas", &self.parts.replicas)
            .field("devices", &self.parts.devices.len())
            .field("generation", &self.parts.generation)
            .finish()
    }
}

impl Ring {
    /// Builds a ring, refusing anything a lookup could trip over.
    pub fn from_parts(mut parts: RingParts) -> Result<Ring> {
        if !(1..=32).contains(&parts.part_power) {
            return Err(Error::InvalidPartPower(parts.part_power as u32));
        }
        if parts.replicas == 0 {
            return Err(Error::InvalidReplicas(0));
        }
        parts.devices.sort_by_key(|d| d.id);
        let max_id = parts.devices.last().map_or(0, |d| d.id as usize);
        let mut by_id = vec![None; max_id + 1];
        for (i, d) in parts.devices.iter().enumerate() {
            d.validate()?;
            if by_id[d.id as usize].replace(i).is_some() {
                return Err(Error::Malformed(format!(
                    "device id {} appears twice",
                    d.id
                )));
            }
        }
        let part_count = 1usize << parts.part_power;
        let replicas = parts.replicas as usize;
        if parts.table.len() != replicas * part_count {
            return Err(Error::Malformed(format!(
                "the replica table has {} entries, expected {}",
                parts.table.len(),
                replicas * part_count
            )));
        }
        let mut column = Vec::with_capacity(replicas);
        for p in 0..part_count {
            column.clear();
            for r in 0..replicas {
                let id = parts.table[r * part_count + p];
                if id == NO_DEVICE || by_id.get(id as usize).copied().flatten().is_none() {
                    return Err(Error::Malformed(format!(
                        "partition {p} replica {r} names device {id}, which is not in the ring"
                    )));
                }
                if column.contains(&id) {
                    return Err(Error::Malformed(format!(
                        "partition {p} has two replicas on device {id}"
                    )));
                }
                column.push(id);
            }
        }

        let mut hosts: HashMap<(u32, u32, &str, u16), u32> = HashMap::new();
        let mut tiers = vec![TierKey::default(); max_id + 1];
        for d in &parts.devices {
            let next = hosts.len() as u32;
            let host = *hosts
                .entry((d.region, d.zone, d.ip.as_str(), d.port))
                .or_insert(next);
            tiers[d.id as usize] = TierKey {
                region: d.region,
                zone: (d.region, d.zone),
                host,
            };
        }
        let handoff_pool = parts
            .devices
            .iter()
            .filter(|d| d.weight > 0.0)
            .map(|d| d.id)
            .collect();
        let hasher = parts.secret.hasher();
        let mut ring = Ring {
            parts,
            hasher,
            by_id,
            tiers,
            handoff_pool,
            checksum: [0; 32],
        };
        ring.checksum = crate::ring_file::checksum_of(&ring);
        Ok(ring)
    }

    /// Loads and verifies a ring file. Nothing half-read is ever returned.
    pub fn load(path: impl AsRef<Path>) -> Result<Ring> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        crate::ring_file::decode(&bytes)
    }

    /// Loads a ring and checks it was built for this cluster's secret.
    pub fn load_for_cluster(path: impl AsRef<Path>, secret: &HashSecret) -> Result<Ring> {
        let ring = Ring::load(path)?;
        if ring.secret() != secret {
            return Err(Error::SecretMismatch);
        }
        Ok(ring)
    }

    /// Writes the ring file atomically (temp file, fsync, rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic_file::write(path.as_ref(), &crate::ring_file::encode(self))
    }

    pub fn part_power(&self) -> u8 {
        self.parts.part_power
    }
    pub fn replicas(&self) -> usize {
        self.parts.replicas as usize
    }
    pub fn partition_count(&self) -> usize {
        1usize << self.parts.part_power
    }
    pub fn generation(&self) -> u64 {
        self.parts.generation
    }
    pub fn secret(&self) -> &HashSecret {
        &self.parts.secret
    }
    pub fn hasher(&self) -> &NameHasher {
        &self.hasher
    }
    /// blake3 of the ring file: equal rings have equal checksums.
    pub fn checksum(&self) -> [u8; 32] {
        self.checksum
    }
    pub fn checksum_hex(&self) -> String {
        self.checksum.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Every storage node (`ip:port`) the ring names, once each, sorted.
    pub fn node_addrs(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.devices().iter().map(|d| d.node_addr()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    pub fn devices(&self) -> &[Device] {
        &self.parts.devices
    }
    pub fn device(&self, id: DeviceId) -> Option<&Device> {
        let i = (*self.by_id.get(id as usize)?)?;
        Some(&self.parts.devices[i])
    }
    pub(crate) fn table(&self) -> &[u16] {
        &self.parts.table
    }

    pub fn partition_of(&self, hash: &NameHash) -> u32 {
        hash.partition(self.parts.part_power)
    }

    /// Hash and partition of a path of 1 to 3 components (account, container, object).
    pub fn locate(&self, components: &[&str]) -> (NameHash, u32) {
        let hash = self.hasher.path(components);
        (hash, self.partition_of(&hash))
    }

    /// The primary devices of a partition, in replica order.
    ///
    /// # Panics
    /// If `part` is not below [`Ring::partition_count`].
    pub fn primaries(&self, part: u32) -> impl ExactSizeIterator<Item = &Device> + '_ {
        let parts = self.partition_count();
        let part = part as usize;
        assert!(part < parts, "partition {part} is out of range");
        (0..self.replicas()).map(move |r| {
            let id = self.parts.table[r * parts + part];
            &self.parts.devices[self.by_id[id as usize].expect("validated at load")]
        })
    }

    /// The handoff devices of a partition: every weighted device that is not a
    /// primary, each once, lazily, in an order every node agrees on: first
    /// devices in a region not yet used, then a new zone, then a new host, then
    /// any remaining device.
    pub fn handoffs(&self, part: u32) -> Handoffs<'_> {
        Handoffs::new(self, part)
    }
}

/// The lazy handoff sequence of one partition; see [`Ring::handoffs`].
pub struct Handoffs<'r> {
    ring: &'r Ring,
    order: Permutation,
    step: usize,
    pass: u8,
    seen: Vec<bool>,
    used_regions: Vec<u32>,
    used_zones: Vec<(u32, u32)>,
    used_hosts: Vec<u32>,
}

impl<'r> Handoffs<'r> {
    fn new(ring: &'r Ring, part: u32) -> Self {
        // Each partition walks the pool in its own order, so handoff load spreads.
        let mut it = Handoffs {
            ring,
            order: Permutation::new(ring.handoff_pool.len(), part as u64),
            step: 0,
            pass: 0,
            seen: vec![false; ring.by_id.len()],
            used_regions: Vec::new(),
            used_zones: Vec::new(),
            used_hosts: Vec::new(),
        };
        for d in ring.primaries(part) {
            it.mark_used(d.id);
        }
        it
    }

    fn mark_used(&mut self, id: DeviceId) {
        let t = self.ring.tiers[id as usize];
        self.seen[id as usize] = true;
        self.used_regions.push(t.region);
        self.used_zones.push(t.zone);
        self.used_hosts.push(t.host);
    }
}

impl<'r> Iterator for Handoffs<'r> {
    type Item = &'r Device;

    fn next(&mut self) -> Option<&'r Device> {
        let pool = &self.ring.handoff_pool;
        while self.pass < 4 {
            while self.step < pool.len() {
                let id = pool[self.order.get(self.step)];
                self.step += 1;
                if self.seen[id as usize] {
                    continue;
                }
                let t = self.ring.tiers[id as usize];
                let wanted = match self.pass {
                    0 => !self.used_regions.contains(&t.region),
                    1 => !self.used_zones.contains(&t.zone),
                    2 => !self.used_hosts.contains(&t.host),
                    _ => true,
                };
                if wanted {
                    self.mark_used(id);
                    return self.ring.device(id);
                }
            }
            self.pass += 1;
            self.step = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::test_device;

    /// 2 regions; region 1 has zones 1 and 2, region 2 has zone 1; 2 hosts per zone, 2 devices per host.
    fn sample_ring() -> Ring {
        let mut devices = Vec::new();
        let mut id = 0;
        for (region, zone) in [(1, 1), (1, 2), (2, 1)] {
            for host in 1..=2 {
                for _ in 0..2 {
                    devices.push(test_device(id, region, zone, host, 100.0));
                    id += 1;
                }
            }
        }
        // Partition p: replicas on devices p%4, 4 + p%4, 8 + p%4 (one per zone).
        let part_power = 4;
        let mut table = Vec::new();
        for r in 0..3u16 {
            for p in 0..16u16 {
                table.push(r * 4 + p % 4);
            }
        }
        Ring::from_parts(RingParts {
            part_power,
            replicas: 3,
            generation: 1,
            secret: HashSecret::new("prefix-secret", "").unwrap(),
            devices,
            table,
        })
        .unwrap()
    }

    #[test]
    fn node_addrs_name_each_node_once() {
        let ring = sample_ring();
        let nodes = ring.node_addrs();
        // 12 devices, 2 per host, 6 hosts.
        assert_eq!(nodes.len(), 6);
        assert!(nodes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn primaries_read_one_column() {
        let ring = sample_ring();
        let ids: Vec<_> = ring.primaries(5).map(|d| d.id).collect();
        assert_eq!(ids, vec![1, 5, 9]);
    }

    #[test]
    fn handoffs_cover_every_other_device_once_in_tier_order() {
        let ring = sample_ring();
        for part in 0..16 {
            let primaries: Vec<_> = ring.primaries(part).map(|d| d.id).collect();
            let handoffs: Vec<_> = ring.handoffs(part).map(|d| d.id).collect();
            assert_eq!(handoffs.len(), 12 - 3);
            let mut all: Vec<_> = primaries.iter().chain(&handoffs).copied().collect();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), 12, "each device once");
            // Primaries use every zone, so the first handoffs must be on new hosts:
            // 3 zones x 2 hosts = 6 hosts, 3 used by primaries, 3 new ones come first.
            let host_of = |id: u16| {
                let d = ring.device(id).unwrap();
                (d.region, d.zone, d.ip.clone())
            };
            let primary_hosts: Vec<_> = primaries.iter().map(|&i| host_of(i)).collect();
            for h in &handoffs[..3] {
                assert!(
                    !primary_hosts.contains(&host_of(*h)),
                    "part {part}: {handoffs:?}"
                );
            }
            // Deterministic: the same sequence every time.
            let again: Vec<_> = ring.handoffs(part).map(|d| d.id).collect();
            assert_eq!(handoffs, again);
        }
    }

    #[test]
    fn handoffs_prefer_a_new_region_first() {
        // Primaries confined to region 1: the first handoff must be in region 2.
        let mut devices: Vec<_> = (0..4)
            .map(|i| test_device(i, 1, 1 + i as u32 % 2, i as u8, 1.0))
            .collect();
        devices.push(test_device(4, 2, 1, 1, 1.0));
        devices.push(test_device(5, 2, 1, 2, 1.0));
        let table = [vec![0u16; 2], vec![1u16; 2]].concat();
        let ring = Ring::from_parts(RingParts {
            part_power: 1,
            replicas: 2,
            generation: 1,
            secret: HashSecret::new("prefix-secret", "").unwrap(),
            devices,
            table,
        })
        .unwrap();
        for part in 0..2 {
            let first = ring.handoffs(part).next().unwrap();
            assert_eq!(first.region, 2);
        }
    }

    #[test]
    fn zero_weight_devices_take_no_handoffs() {
        let mut devices: Vec<_> = (0..4)
            .map(|i| test_device(i, 1, i as u32, 1, 1.0))
            .collect();
        devices[3].weight = 0.0;
        let ring = Ring::from_parts(RingParts {
            part_power: 1,
            replicas: 1,
            generation: 1,
            secret: HashSecret::new("prefix-secret", "").unwrap(),
            devices,
            table: vec![0, 1],
        })
        .unwrap();
        let h: Vec<_> = ring.handoffs(0).map(|d| d.id).collect();
        assert_eq!(h.len(), 2);
        assert!(!h.contains(&3));
    }

    #[test]
    fn inconsistent_parts_are_refused() {
        let ok = || RingParts {
            part_power: 1,
            replicas: 2,
            generation: 1,
            secret: HashSecret::new("prefix-secret", "").unwrap(),
            devices: (0..2)
                .map(|i| test_device(i, 1, i as u32, 1, 1.0))
                .collect(),
            table: vec![0, 0, 1, 1],
        };
        assert!(Ring::from_parts(ok()).is_ok());
        let mut p = ok();
        p.table = vec![0, 0, 0, 1];
        assert!(Ring::from_parts(p).is_err(), "two replicas on one device");
        let mut p = ok();
        p.table = vec![0, 0, 1, 7];
        assert!(Ring::from_parts(p).is_err(), "unknown device");
        let mut p = ok();
        p.table.pop();
        assert!(Ring::from_parts(p).is_err(), "short table");
        let mut p = ok();
        p.devices[1].id = 0;
        assert!(Ring::from_parts(p).is_err(), "duplicate id");
        let mut p = ok();
        p.part_power = 33;
        assert!(Ring::from_parts(p).is_err());
    }
}
