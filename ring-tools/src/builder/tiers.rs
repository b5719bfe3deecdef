//! The failure-domain tree a rebalance works on: region > zone > host > device.
//!
//! Two numbers per node drive placement:
//! - `max`: the most replicas of one partition the node may hold. Computed
//!   spread-first: replicas go to as many regions as possible, then within
//!   that to as many zones, hosts and devices as possible. A device holds at
//!   most one replica of a partition.
//! - `target`: how many partition-replicas the node should hold in total:
//!   its weight share, water-filled so that no node is asked for more than
//!   `max` per partition (what a capped node cannot take goes to its siblings
//!   in proportion to their weights).

use crate::device::{Device, DeviceId};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

pub(crate) const REGION: usize = 1;
pub(crate) const DEVICE: usize = 4;
const LEVELS: usize = 5;

pub(crate) struct Node {
    pub level: usize,
    /// Indexes of this node and its ancestors by level (`path[0]` is the root).
    pub path: [u32; LEVELS],
    pub children: Vec<u32>,
    pub weight: f64,
    /// `caps[j]`: weighted distinct descendants `j` levels down (`caps[0]`: 1 if weighted).
    caps: Vec<u32>,
    pub max: u32,
    pub target: f64,
    pub assigned: i64,
    pub device: Option<DeviceId>,
}

impl Node {
    /// How far below its target the node is, relative to that target; higher wants more.
    pub fn want_ratio(&self) -> f64 {
        (self.target - self.assigned as f64) / self.target
    }
    pub fn want(&self) -> f64 {
        self.target - self.assigned as f64
    }
}

pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    /// Device id -> its leaf node, for devices in the tree.
    pub leaf_of: Vec<Option<u32>>,
    pub leaves: Vec<u32>,
}

type HostKey<'a> = (&'a str, u16);

impl Tree {
    /// Builds the tree over `devices` for `replicas` replicas of `partitions` partitions.
    pub fn build<'a>(
        devices: impl Iterator<Item = &'a Device>,
        replicas: u32,
        partitions: usize,
    ) -> Result<Tree> {
        #[allow(clippy::type_complexity)]
        let mut grouped: BTreeMap<
            u32,
            BTreeMap<u32, BTreeMap<HostKey<'a>, Vec<&'a Device>>>,
        > = BTreeMap::new();
        for d in devices {
            grouped
                .entry(d.region)
                .or_default()
                .entry(d.zone)
                .or_default()
                .entry((d.ip.as_str(), d.port))
                .or_default()
                .push(d);
        }
        let mut tree = Tree {
            nodes: Vec::new(),
            leaf_of: Vec::new(),
            leaves: Vec::new(),
        };
        let root = tree.push(0, [0; LEVELS], None, 0.0);
        for zones in grouped.values() {
            let region = tree.child(root, None, 0.0);
            for hosts in zones.values() {
                let zone = tree.child(region, None, 0.0);
                for devs in hosts.values() {
                    let host = tree.child(zone, None, 0.0);
                    for d in devs {
                        let leaf = tree.child(host, Some(d.id), d.weight);
                        if tree.leaf_of.len() <= d.id as usize {
                            tree.leaf_of.resize(d.id as usize + 1, None);
                        }
                        tree.leaf_of[d.id as usize] = Some(leaf);
                        tree.leaves.push(leaf);
                    }
                }
            }
        }
        tree.sum_up(root as usize);
        let weighted_devices = tree.nodes[root as usize].caps[DEVICE];
        if weighted_devices < replicas {
            return Err(Error::CannotPlace {
                replicas,
                reason: format!(
                    "only {weighted_devices} device(s) have weight > 0, and no device holds two replicas of a partition"
                ),
            });
        }
        tree.nodes[root as usize].max = replicas;
        tree.spread(root as usize);
        tree.share(root as usize, replicas as f64, partitions as f64);
        Ok(tree)
    }

    fn push(
        &mut self,
        level: usize,
        mut path: [u32; LEVELS],
        device: Option<DeviceId>,
        weight: f64,
    ) -> u32 {
        let idx = self.nodes.len() as u32;
        path[level] = idx;
        self.nodes.push(Node {
            level,
            path,
            children: Vec::new(),
            weight,
            caps: Vec::new(),
            max: 0,
            target: 0.0,
            assigned: 0,
            device,
        });
        idx
    }

    fn child(&mut self, parent: u32, device: Option<DeviceId>, weight: f64) -> u32 {
        let p = &self.nodes[parent as usize];
        let (level, path) = (p.level + 1, p.path);
        let idx = self.push(level, path, device, weight);
        self.nodes[parent as usize].children.push(idx);
        idx
    }

    fn sum_up(&mut self, n: usize) {
        let children = self.nodes[n].children.clone();
        for &c in &children {
            self.sum_up(c as usize);
        }
        let node = &self.nodes[n];
        let depth = DEVICE - node.level + 1;
        let mut caps = vec![0u32; depth];
        let mut weight = node.weight;
        if !children.is_empty() {
            weight = children
                .iter()
                .map(|&c| self.nodes[c as usize].weight)
                .sum();
            for &c in &children {
                for (j, cap) in self.nodes[c as usize].caps.iter().enumerate() {
                    caps[j + 1] += cap;
                }
            }
        }
        caps[0] = u32::from(weight > 0.0);
        let node = &mut self.nodes[n];
        node.weight = weight;
        node.caps = caps;
    }

    /// Sets each child's `max` from its parent's, spread-first (see the module docs).
    fn spread(&mut self, n: usize) {
        let allowance = self.nodes[n].max;
        let children = self.nodes[n].children.clone();
        let caps: Vec<&[u32]> = children
            .iter()
            .map(|&c| self.nodes[c as usize].caps.as_slice())
            .collect();
        let maxes = spread_max(allowance, &caps);
        for (&c, m) in children.iter().zip(maxes) {
            self.nodes[c as usize].max = m;
            self.spread(c as usize);
        }
    }

    /// Sets each node's target from its replica share, water-filled under `max`.
    fn share(&mut self, n: usize, share: f64, partitions: f64) {
        self.nodes[n].target = share * partitions;
        let children = self.nodes[n].children.clone();
        let demands: Vec<(f64, f64)> = children
            .iter()
            .map(|&c| {
                let node = &self.nodes[c as usize];
                (node.weight, node.max as f64)
            })
            .collect();
        for (&c, s) in children.iter().zip(water_fill(share, &demands)) {
            self.share(c as usize, s, partitions);
        }
    }

    pub fn leaf(&self, id: DeviceId) -> Option<u32> {
        self.leaf_of.get(id as usize).copied().flatten()
    }
}

/// Splits `allowance` replicas among children, as widely as their subtrees allow.
///
/// For the shallowest depth `j` at which the children together have at least
/// `allowance` distinct weighted descendants, the water level `L` is the least
/// with `sum(min(caps[j], L)) >= allowance`; each child may hold `min(caps[j], L)`.
pub(crate) fn spread_max(allowance: u32, caps: &[&[u32]]) -> Vec<u32> {
    let depth = caps.iter().map(|c| c.len()).max().unwrap_or(0);
    for j in 0..depth {
        let cap = |c: &[u32]| c.get(j).copied().unwrap_or(0);
        let total: u64 = caps.iter().map(|c| cap(c) as u64).sum();
        if total >= allowance as u64 {
            let level = (1..=allowance.max(1))
                .find(|&l| {
                    caps.iter().map(|c| cap(c).min(l) as u64).sum::<u64>() >= allowance as u64
                })
                .unwrap_or(allowance);
            return caps.iter().map(|c| cap(c).min(level)).collect();
        }
    }
    // Fewer devices than replicas below this node: each child takes all it has.
    caps.iter()
        .map(|c| c.last().copied().unwrap_or(0))
        .collect()
}

/// Shares `total` among `(weight, cap)` children in proportion to weight,
/// never giving a child more than its cap; what a capped child cannot take is
/// shared among the rest.
pub(crate) fn water_fill(total: f64, children: &[(f64, f64)]) -> Vec<f64> {
    let mut share = vec![0.0; children.len()];
    let mut capped = vec![false; children.len()];
    let mut left = total;
    loop {
        let free_weight: f64 = children
            .iter()
            .zip(&capped)
            .filter(|(_, &c)| !c)
            .map(|((w, _), _)| *w)
            .sum();
        if free_weight <= 0.0 {
            break;
        }
        let mut newly_capped = false;
        for (i, &(w, cap)) in children.iter().enumerate() {
            if !capped[i] && w > 0.0 && left * w / free_weight > cap + 1e-9 {
                capped[i] = true;
                share[i] = cap;
                left -= cap;
                newly_capped = true;
            }
        }
        if !newly_capped {
            for (i, &(w, _)) in children.iter().enumerate() {
                if !capped[i] {
                    share[i] = left * w / free_weight;
                }
            }
            break;
        }
    }
    share
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::test_device;

    #[test]
    fn spread_uses_every_domain_before_doubling_up() {
        // Four zones, three replicas: one replica per zone at most.
        let one = [1u32, 2, 4];
        assert_eq!(spread_max(3, &[&one, &one, &one, &one]), vec![1, 1, 1, 1]);
        // Two zones: one of them must take two.
        assert_eq!(spread_max(3, &[&one, &one]), vec![2, 2]);
        // A region with one zone next to a region with three: the lone zone
        // gets one replica, so no zone ever holds two.
        let small = [1u32, 1, 2];
        let big = [1u32, 3, 6];
        assert_eq!(spread_max(3, &[&small, &big]), vec![1, 2]);
        // Not enough devices: each takes what it has.
        assert_eq!(spread_max(5, &[&[1u32, 1], &[1, 2]]), vec![1, 2]);
    }

    #[test]
    fn water_fill_respects_caps_and_weights() {
        let s = water_fill(3.0, &[(1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]);
        assert!(s.iter().all(|x| (x - 0.75).abs() < 1e-9));
        // A zone with 40% of the weight cannot hold 1.2 replicas per partition.
        let s = water_fill(3.0, &[(4.0, 1.0), (2.0, 1.0), (2.0, 1.0), (2.0, 1.0)]);
        assert!((s[0] - 1.0).abs() < 1e-9);
        assert!(s[1..].iter().all(|x| (x - 2.0 / 3.0).abs() < 1e-9), "{s:?}");
        assert!((s.iter().sum::<f64>() - 3.0).abs() < 1e-9);
        // Zero weight gets nothing.
        let s = water_fill(1.0, &[(0.0, 1.0), (1.0, 1.0)]);
        assert_eq!(s, vec![0.0, 1.0]);
    }

    #[test]
    fn targets_add_up_and_follow_weight() {
        let devs: Vec<_> = (0..6)
            .map(|i| {
                test_device(
                    i,
                    1,
                    i as u32 % 3,
                    i as u8,
                    if i == 0 { 200.0 } else { 100.0 },
                )
            })
            .collect();
        let tree = Tree::build(devs.iter(), 3, 1024).unwrap();
        let total: f64 = tree
            .leaves
            .iter()
            .map(|&l| tree.nodes[l as usize].target)
            .sum();
        assert!((total - 3072.0).abs() < 1e-6);
        // Zone 0 has 300 of 700 weight, but can hold at most 1 replica per partition.
        let zone0 = tree.nodes[tree.leaf(0).unwrap() as usize].path[2] as usize;
        assert_eq!(tree.nodes[zone0].max, 1);
        assert!((tree.nodes[zone0].target - 1024.0).abs() < 1e-6);
        let d0 = tree.nodes[tree.leaf(0).unwrap() as usize].target;
        let d3 = tree.nodes[tree.leaf(3).unwrap() as usize].target;
        assert!((d0 - 2.0 * d3).abs() < 1e-6, "same zone: split by weight");
    }

    #[test]
    fn too_few_devices_is_an_error() {
        let devs: Vec<_> = (0..2).map(|i| test_device(i, 1, 1, 1, 1.0)).collect();
        assert!(matches!(
            Tree::build(devs.iter(), 3, 16),
            Err(Error::CannotPlace { .. })
        ));
    }
}
