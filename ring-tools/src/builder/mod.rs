//! The ring builder: the operator's editable state, from which rings are made.
//!
//! The builder keeps what a rebalance needs to move as little as possible:
//! the current assignment, and when each partition last moved (for
//! `min_part_hours`). It is saved beside the ring file by [`crate::builder_file`].

mod rebalance;
mod tiers;

use crate::device::{validate_weight, Device, DeviceId, MAX_DEVICE_ID, NO_DEVICE};
use crate::error::{Error, Result};
use crate::placement::HashSecret;
use crate::ring::{Ring, RingParts};
use serde::Serialize;
use std::collections::BTreeMap;
use tiers::{Tree, DEVICE, REGION};

/// `balance` shown for a device that holds partitions but has no weight (as Swift does).
pub const BALANCE_OF_UNWANTED: f64 = 999.99;

#[derive(Debug, Clone)]
pub struct RingBuilder {
    pub(crate) part_power: u8,
    pub(crate) replicas: u8,
    pub(crate) min_part_hours: u32,
    pub(crate) secret: HashSecret,
    pub(crate) generation: u64,
    pub(crate) next_device_id: u32,
    /// Devices changed since the last rebalance.
    pub(crate) dirty: bool,
    pub(crate) devices: BTreeMap<DeviceId, BuilderDevice>,
    /// Replica-major partition table; empty until the first rebalance.
    pub(crate) table: Vec<u16>,
    /// Minutes since the Unix epoch at which each partition last moved; 0: never.
    pub(crate) last_moved: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuilderDevice {
    pub device: Device,
    /// Marked by `remove`; its replicas move off and it disappears at the next rebalance.
    pub removing: bool,
}

/// A device as an operator adds it; the builder picks the id.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub region: u32,
    pub zone: u32,
    pub ip: String,
    pub port: u16,
    pub device: String,
    pub weight: f64,
    pub meta: String,
}

#[derive(Debug, Clone, Copy)]
pub struct RebalanceOptions {
    /// Chooses among equally good moves; the same seed on the same builder gives the same ring.
    pub seed: u64,
    /// The clock, in minutes since the Unix epoch, for `min_part_hours`.
    pub now_minutes: u32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RebalanceReport {
    /// Partition-replicas whose device changed (initial placement counts).
    pub moved: u64,
    pub balance: f64,
    pub dispersion: f64,
    /// Partitions that moved within `min_part_hours` and so could not move now.
    #[serde(skip)]
    pub held_by_min_part_hours: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    #[serde(flatten)]
    pub device: Device,
    pub parts: u64,
    /// Percent above (+) or below (-) the device's weight share.
    pub balance: f64,
    pub removing: bool,
}

pub fn now_minutes() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs / 60) as u32
}

impl RingBuilder {
    pub fn new(
        part_power: u32,
        replicas: u32,
        min_part_hours: u32,
        secret: HashSecret,
    ) -> Result<Self> {
        if !(1..=32).contains(&part_power) {
            return Err(Error::InvalidPartPower(part_power));
        }
        if !(1..=255).contains(&replicas) {
            return Err(Error::InvalidReplicas(replicas));
        }
        Ok(RingBuilder {
            part_power: part_power as u8,
            replicas: replicas as u8,
            min_part_hours,
            secret,
            generation: 0,
            next_device_id: 0,
            dirty: true,
            devices: BTreeMap::new(),
            table: Vec::new(),
            last_moved: Vec::new(),
        })
    }

    pub fn part_power(&self) -> u8 {
        self.part_power
    }
    pub fn replicas(&self) -> usize {
        self.replicas as usize
    }
    pub fn min_part_hours(&self) -> u32 {
        self.min_part_hours
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn partition_count(&self) -> usize {
        1usize << self.part_power
    }
    pub fn devices(&self) -> impl Iterator<Item = &BuilderDevice> {
        self.devices.values()
    }
    pub fn device(&self, id: u32) -> Result<&BuilderDevice> {
        u16::try_from(id)
            .ok()
            .and_then(|id| self.devices.get(&id))
            .ok_or(Error::UnknownDevice(id))
    }
    fn device_mut(&mut self, id: u32) -> Result<&mut BuilderDevice> {
        u16::try_from(id)
            .ok()
            .and_then(|id| self.devices.get_mut(&id))
            .ok_or(Error::UnknownDevice(id))
    }

    /// Adds a device and returns its id. Ids are never reused.
    pub fn add_device(&mut self, new: NewDevice) -> Result<DeviceId> {
        if self.next_device_id > MAX_DEVICE_ID {
            return Err(Error::InvalidDevice(format!(
                "the ring has used all {} device ids",
                MAX_DEVICE_ID + 1
            )));
        }
        let device = Device {
            id: self.next_device_id as DeviceId,
            region: new.region,
            zone: new.zone,
            ip: new.ip,
            port: new.port,
            device: new.device,
            weight: new.weight,
            meta: new.meta,
        };
        device.validate()?;
        if let Some(existing) = self.devices.values().find(|b| {
            !b.removing
                && b.device.ip == device.ip
                && b.device.port == device.port
                && b.device.device == device.device
        }) {
            return Err(Error::InvalidDevice(format!(
                "{}/{} is already in the ring as device {}",
                device.node_addr(),
                device.device,
                existing.device.id
            )));
        }
        let id = device.id;
        self.devices.insert(
            id,
            BuilderDevice {
                device,
                removing: false,
            },
        );
        self.next_device_id += 1;
        self.dirty = true;
        Ok(id)
    }

    /// Marks a device for removal: the next rebalance moves its replicas off and drops it.
    pub fn remove_device(&mut self, id: u32) -> Result<()> {
        let never_placed = self.table.is_empty();
        let dev = self.device_mut(id)?;
        dev.removing = true;
        if never_placed {
            self.devices.remove(&(id as u16));
        }
        self.dirty = true;
        Ok(())
    }

    pub fn set_weight(&mut self, id: u32, weight: f64) -> Result<()> {
        validate_weight(weight)?;
        let dev = self.device_mut(id)?;
        if dev.removing {
            return Err(Error::InvalidDevice(format!(
                "device {id} is being removed"
            )));
        }
        dev.device.weight = weight;
        self.dirty = true;
        Ok(())
    }

    fn tree(&self) -> Result<Tree> {
        Tree::build(
            self.devices
                .values()
                .filter(|b| !b.removing)
                .map(|b| &b.device),
            self.replicas as u32,
            self.partition_count(),
        )
    }

    /// Reassigns partition-replicas: see [`rebalance`](self::rebalance) for how.
    /// On error the builder is unchanged.
    pub fn rebalance(&mut self, opts: RebalanceOptions) -> Result<RebalanceReport> {
        let tree = self.tree()?;
        let parts = self.partition_count();
        let mut table = if self.table.is_empty() {
            vec![NO_DEVICE; parts * self.replicas()]
        } else {
            self.table.clone()
        };
        let mut last_moved = if self.last_moved.is_empty() {
            vec![0; parts]
        } else {
            self.last_moved.clone()
        };
        let window = self.min_part_hours.saturating_mul(60);
        let movable: Vec<bool> = last_moved
            .iter()
            .map(|&t| t == 0 || opts.now_minutes.saturating_sub(t) >= window)
            .collect();
        let held_by_min_part_hours = movable.iter().filter(|&&m| !m).count() as u64;
        let mut plan = rebalance::Plan::new(
            tree,
            &mut table,
            self.replicas(),
            movable,
            window > 0,
            opts.seed,
        );
        plan.run();
        for (p, _) in plan.touched.iter().enumerate().filter(|(_, &t)| t) {
            last_moved[p] = opts.now_minutes.max(1);
        }
        let moved = if self.table.is_empty() {
            table.len() as u64
        } else {
            table
                .iter()
                .zip(&self.table)
                .filter(|(a, b)| a != b)
                .count() as u64
        };
        if moved > 0 || self.dirty || self.generation == 0 {
            self.generation += 1;
        }
        self.table = table;
        self.last_moved = last_moved;
        self.devices.retain(|_, b| !b.removing);
        self.dirty = false;
        Ok(RebalanceReport {
            moved,
            balance: self.balance(),
            dispersion: self.dispersion()?,
            held_by_min_part_hours,
        })
    }

    /// The ring services load. Needs a rebalance first.
    pub fn build_ring(&self) -> Result<Ring> {
        if self.table.is_empty() || self.devices.values().any(|d| d.removing) {
            return Err(Error::NotRebalanced);
        }
        Ring::from_parts(RingParts {
            part_power: self.part_power,
            replicas: self.replicas,
            generation: self.generation,
            secret: self.secret.clone(),
            devices: self.devices.values().map(|b| b.device.clone()).collect(),
            table: self.table.clone(),
        })
    }

    fn parts_per_device(&self) -> BTreeMap<DeviceId, u64> {
        let mut counts: BTreeMap<DeviceId, u64> = self.devices.keys().map(|&id| (id, 0)).collect();
        for &id in &self.table {
            if let Some(c) = counts.get_mut(&id) {
                *c += 1;
            }
        }
        counts
    }

    /// Each device with its partition count and its balance against its weight share.
    pub fn device_reports(&self) -> Vec<DeviceReport> {
        let counts = self.parts_per_device();
        let total_weight: f64 = self
            .devices
            .values()
            .filter(|b| !b.removing)
            .map(|b| b.device.weight)
            .sum();
        let slots = (self.partition_count() * self.replicas()) as f64;
        self.devices
            .values()
            .map(|b| {
                let parts = counts[&b.device.id];
                let share = if b.removing || total_weight <= 0.0 {
                    0.0
                } else {
                    slots * b.device.weight / total_weight
                };
                let balance = if share > 0.0 {
                    (parts as f64 - share) / share * 100.0
                } else if parts > 0 {
                    BALANCE_OF_UNWANTED
                } else {
                    0.0
                };
                DeviceReport {
                    device: b.device.clone(),
                    parts,
                    balance,
                    removing: b.removing,
                }
            })
            .collect()
    }

    /// The worst device's percentage off its weight share; 0 before the first rebalance.
    pub fn balance(&self) -> f64 {
        if self.table.is_empty() {
            return 0.0;
        }
        self.device_reports()
            .iter()
            .map(|d| d.balance.abs())
            .fold(0.0, f64::max)
    }

    /// Percentage of partition-replicas placed above a tier's `max` (worst tier per partition).
    pub fn dispersion(&self) -> Result<f64> {
        if self.table.is_empty() {
            return Ok(0.0);
        }
        let tree = self.tree()?;
        let parts = self.partition_count();
        let replicas = self.replicas();
        let mut leaves = Vec::with_capacity(replicas);
        let mut crowded = 0u64;
        for p in 0..parts {
            leaves.clear();
            for r in 0..replicas {
                match tree.leaf(self.table[r * parts + p]) {
                    Some(l) if tree.nodes[l as usize].weight > 0.0 => leaves.push(l),
                    _ => {}
                }
            }
            let mut worst = 0u32;
            for level in REGION..DEVICE {
                let mut over = 0u32;
                for (i, &l) in leaves.iter().enumerate() {
                    let tier = tree.nodes[l as usize].path[level];
                    let first = leaves[..i]
                        .iter()
                        .all(|&o| tree.nodes[o as usize].path[level] != tier);
                    if first {
                        let n = leaves
                            .iter()
                            .filter(|&&o| tree.nodes[o as usize].path[level] == tier)
                            .count() as u32;
                        over += n.saturating_sub(tree.nodes[tier as usize].max);
                    }
                }
                worst = worst.max(over);
            }
            crowded += worst as u64;
        }
        Ok(crowded as f64 * 100.0 / (parts * replicas) as f64)
    }
}

#[cfg(test)]
mod tests;
