//! Rebalance: assign every partition-replica to a device, moving as few as possible.
//!
//! Three phases, all within one pass over the partition table:
//! 1. Forced: replicas with no device (a new ring, or a removed device) are
//!    placed, regardless of `min_part_hours`.
//! 2. Dispersion: a partition with more replicas in a tier than the tier's
//!    `max` (after a topology change) has one moved, if it may move.
//! 3. Weight: a replica moves only from a device above its target to one
//!    below its target that wants it more than the origin would after giving
//!    it up (a device with weight 0 gives up everything). Each move lowers the
//!    sum of squared deviations, so this ends. The most loaded device gives
//!    next, one replica at a time, so devices on the same side of their
//!    targets stay within a replica of each other and never trade replicas
//!    sideways: adding a device moves its share onto it and nothing else.
//!
//! A placement walks the tier tree from the root, at each level taking the
//! child that is furthest below its target (relative to that target) among
//! those still allowed another replica of this partition; it backtracks if a
//! subtree has no legal device. A seeded jitter worth up to two replicas
//! breaks near-ties differently for every partition: without it the greedy
//! walk settles into a cycle in which a device's partitions always share the
//! same partner zones, which both blocks later moves and concentrates
//! recovery traffic on a few devices.

use super::tiers::{Node, Tree, DEVICE};
use crate::device::NO_DEVICE;
use crate::permute::{mix, Permutation};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const NONE: u32 = u32::MAX;
/// Weight phases; each starts from fresh per-device lists. Two or three suffice in practice.
const WEIGHT_PASSES: u64 = 6;
/// The tie-breaking jitter, in replicas of the child's target.
const JITTER_REPLICAS: f64 = 2.0;

pub(super) struct Plan<'a> {
    pub tree: Tree,
    pub table: &'a mut [u16],
    pub parts: usize,
    pub replicas: usize,
    /// May this partition move (not moved within `min_part_hours`)?
    pub movable: Vec<bool>,
    /// Partitions changed by this rebalance.
    pub touched: Vec<bool>,
    /// With `min_part_hours > 0`, at most one replica of a partition moves per window.
    pub one_move_per_partition: bool,
    pub seed: u64,
    scratch: Vec<u32>,
}

impl<'a> Plan<'a> {
    pub fn new(
        tree: Tree,
        table: &'a mut [u16],
        replicas: usize,
        movable: Vec<bool>,
        one_move_per_partition: bool,
        seed: u64,
    ) -> Self {
        let parts = movable.len();
        let mut plan = Plan {
            tree,
            table,
            parts,
            replicas,
            touched: vec![false; parts],
            movable,
            one_move_per_partition,
            seed,
            scratch: Vec::with_capacity(replicas),
        };
        for slot in 0..plan.table.len() {
            if let Some(leaf) = plan.leaf_of_slot(slot) {
                plan.count(leaf, 1);
            }
        }
        plan
    }

    pub fn run(&mut self) {
        for p in 0..self.parts {
            self.place_forced(p);
            self.fix_dispersion(p);
        }
        for pass in 0..WEIGHT_PASSES {
            if self.weight_pass(pass) == 0 {
                break;
            }
        }
    }

    fn leaf_of_slot(&self, slot: usize) -> Option<u32> {
        match self.table[slot] {
            NO_DEVICE => None,
            id => self.tree.leaf(id),
        }
    }

    fn count(&mut self, leaf: u32, delta: i64) {
        let path = self.tree.nodes[leaf as usize].path;
        for idx in path {
            self.tree.nodes[idx as usize].assigned += delta;
        }
    }

    fn may_move(&self, p: usize) -> bool {
        self.movable[p] && !(self.one_move_per_partition && self.touched[p])
    }

    /// Fills `scratch` with the leaves of partition `p`'s replicas other than `skip`.
    fn others(&mut self, p: usize, skip: usize) -> Vec<u32> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        for r in 0..self.replicas {
            if r != skip {
                out.push(self.leaf_of_slot(r * self.parts + p).unwrap_or(NONE));
            }
        }
        out
    }

    fn assign(&mut self, p: usize, r: usize, leaf: u32) {
        self.table[r * self.parts + p] = self.tree.nodes[leaf as usize].device.expect("leaf");
        self.count(leaf, 1);
        self.touched[p] = true;
    }

    fn place_forced(&mut self, p: usize) {
        for r in 0..self.replicas {
            let slot = r * self.parts + p;
            if self.leaf_of_slot(slot).is_some() {
                continue;
            }
            self.table[slot] = NO_DEVICE;
            let others = self.others(p, r);
            let leaf = self
                .place(p, &others)
                .or_else(|| self.least_loaded_free(&others))
                .expect("the tree has at least `replicas` weighted devices");
            self.scratch = others;
            self.assign(p, r, leaf);
        }
    }

    fn fix_dispersion(&mut self, p: usize) {
        for _ in 0..self.replicas {
            if !self.may_move(p) {
                return;
            }
            let Some(r) = self.worst_crowded_replica(p) else {
                return;
            };
            let slot = r * self.parts + p;
            let from = self
                .leaf_of_slot(slot)
                .expect("crowded replicas are placed");
            self.count(from, -1);
            let others = self.others(p, r);
            let to = self.place(p, &others);
            self.scratch = others;
            match to {
                Some(to) if to != from => self.assign(p, r, to),
                _ => {
                    self.count(from, 1);
                    return;
                }
            }
        }
    }

    /// A replica of `p` in a tier holding more than its `max`: the one on the most loaded device.
    fn worst_crowded_replica(&mut self, p: usize) -> Option<usize> {
        let leaves: Vec<u32> = (0..self.replicas)
            .map(|r| self.leaf_of_slot(r * self.parts + p).unwrap_or(NONE))
            .collect();
        let mut worst: Option<(usize, f64)> = None;
        for level in 1..DEVICE {
            for (i, &li) in leaves.iter().enumerate() {
                if li == NONE {
                    continue;
                }
                let node = &self.tree.nodes[li as usize];
                if node.target <= 0.0 {
                    continue; // weight 0: the weight phase drains it
                }
                let tier = node.path[level];
                let crowd = leaves
                    .iter()
                    .filter(|&&o| o != NONE && self.tree.nodes[o as usize].path[level] == tier)
                    .count() as u32;
                if crowd > self.tree.nodes[tier as usize].max {
                    let ratio = node.want_ratio();
                    if worst.is_none_or(|(_, w)| ratio < w) {
                        worst = Some((i, ratio));
                    }
                }
            }
            if worst.is_some() {
                break;
            }
        }
        worst.map(|(r, _)| r)
    }

    /// One sweep over the devices above their targets; returns how many replicas moved.
    fn weight_pass(&mut self, pass: u64) -> usize {
        let over: Vec<u32> = self
            .tree
            .leaves
            .iter()
            .copied()
            .filter(|&l| self.node(l).want() < 0.0)
            .collect();
        if over.is_empty() {
            return 0;
        }
        let mut list_of = vec![usize::MAX; self.tree.nodes.len()];
        for (i, &l) in over.iter().enumerate() {
            list_of[l as usize] = i;
        }
        let mut lists: Vec<Vec<(u32, u8)>> = vec![Vec::new(); over.len()];
        for r in 0..self.replicas {
            for p in 0..self.parts {
                if let Some(leaf) = self.leaf_of_slot(r * self.parts + p) {
                    if let Some(list) = lists.get_mut(list_of[leaf as usize]) {
                        list.push((p as u32, r as u8));
                    }
                }
            }
        }

        // Most loaded first, one replica at a time: a max-heap on how far over target.
        let overload = |plan: &Self, leaf: u32| (-plan.node(leaf).want() * 1024.0) as i64;
        let orders: Vec<Permutation> = over
            .iter()
            .zip(&lists)
            .map(|(&leaf, list)| {
                Permutation::new(list.len(), self.seed ^ mix(leaf as u64) ^ mix(pass))
            })
            .collect();
        let mut cursor = vec![0usize; over.len()];
        let mut heap: BinaryHeap<(i64, Reverse<usize>)> = over
            .iter()
            .enumerate()
            .map(|(i, &l)| (overload(self, l), Reverse(i)))
            .collect();
        let mut moved = 0;
        let mut most_wanted = self.most_wanted();
        while let Some((_, Reverse(i))) = heap.pop() {
            let from = over[i];
            if !self.draining(from)
                && (most_wanted <= 0.0 || most_wanted <= self.node(from).want() + 1.0)
            {
                continue;
            }
            let device = self.node(from).device.expect("leaf");
            while cursor[i] < lists[i].len() {
                let (p, r) = lists[i][orders[i].get(cursor[i])];
                cursor[i] += 1;
                let (p, r) = (p as usize, r as usize);
                if self.table[r * self.parts + p] != device || !self.may_move(p) {
                    continue;
                }
                if self.try_move(p, r, from) {
                    moved += 1;
                    most_wanted = self.most_wanted();
                    if self.node(from).want() < 0.0 || self.draining(from) {
                        heap.push((overload(self, from), Reverse(i)));
                    }
                    break;
                }
            }
        }
        moved
    }

    fn try_move(&mut self, p: usize, r: usize, from: u32) -> bool {
        self.count(from, -1);
        let others = self.others(p, r);
        let key = mix(self.seed ^ p as u64);
        let home = self.node(from).path;
        // The neediest place anywhere first; failing that, the neediest place
        // nearer home (same region, zone, host), where a move is always legal:
        // this is what evens out devices within a zone that is itself on target.
        // Of the candidates, the first in the best class (see `move_class`).
        let mut best: Option<(u8, u32)> = None;
        for &subtree in &home[..DEVICE] {
            let Some(to) = self.descend(subtree, &others, key).filter(|&c| c != from) else {
                continue;
            };
            let class = self.move_class(to, from);
            if class > best.map_or(0, |(c, _)| c) {
                best = Some((class, to));
                if class == 3 {
                    break;
                }
            }
        }
        let to = best.map(|(_, to)| to);
        self.scratch = others;
        match to {
            Some(to) => {
                self.assign(p, r, to);
                true
            }
            _ => {
                self.count(from, 1);
                false
            }
        }
    }

    /// How good a move of one replica from `from` (already counted out) to `to`
    /// is. A move must be worth a whole replica on one side, or it is just
    /// trading rounding remainders: 3 if `to` is short by a replica or more
    /// (and `from` was over); 2 if `from` was over by a replica or more (and
    /// `to` is short); 1 if `from` is draining and `to` has less to shed; else 0.
    fn move_class(&self, to: u32, from: u32) -> u8 {
        let (want_to, want_from) = (self.node(to).want(), self.node(from).want());
        if want_to <= want_from {
            0
        } else if want_to >= 1.0 && want_from < 1.0 {
            3
        } else if want_to > 0.0 && want_from < 0.0 {
            2
        } else if self.draining(from) {
            1
        } else {
            0
        }
    }

    /// A device with weight 0 gives up every replica it holds.
    fn draining(&self, leaf: u32) -> bool {
        self.node(leaf).target <= 0.0
    }

    fn node(&self, n: u32) -> &Node {
        &self.tree.nodes[n as usize]
    }

    fn most_wanted(&self) -> f64 {
        self.tree
            .leaves
            .iter()
            .map(|&l| self.node(l))
            .filter(|n| n.target > 0.0)
            .map(|n| n.want())
            .fold(f64::NEG_INFINITY, f64::max)
    }

    fn legal(&self, node: &Node, others: &[u32]) -> bool {
        let (level, idx) = (node.level, node.path[node.level]);
        let crowd = others
            .iter()
            .filter(|&&o| o != NONE && self.node(o).path[level] == idx)
            .count() as u32;
        crowd < node.max
    }

    /// The neediest legal leaf for partition `p`, walking down by relative want.
    fn place(&self, p: usize, others: &[u32]) -> Option<u32> {
        self.descend(0, others, mix(self.seed ^ p as u64))
    }

    fn descend(&self, n: u32, others: &[u32], key: u64) -> Option<u32> {
        let node = self.node(n);
        if node.level == DEVICE {
            return Some(n);
        }
        let mut tried: Vec<u32> = Vec::new();
        loop {
            let mut best: Option<(u32, f64)> = None;
            for &c in &node.children {
                let child = self.node(c);
                if child.target <= 0.0 || !self.legal(child, others) || tried.contains(&c) {
                    continue;
                }
                let jitter = (mix(key ^ c as u64) >> 11) as f64 / (1u64 << 53) as f64;
                let score = child.want_ratio() + jitter * JITTER_REPLICAS / child.target;
                if best.is_none_or(|(_, b)| score > b) {
                    best = Some((c, score));
                }
            }
            let (c, _) = best?;
            if let Some(leaf) = self.descend(c, others, key) {
                return Some(leaf);
            }
            tried.push(c);
        }
    }

    /// When the tiers leave no legal place (replicas stuck by `min_part_hours`
    /// in crowded tiers), any weighted device not already holding the partition.
    fn least_loaded_free(&self, others: &[u32]) -> Option<u32> {
        self.tree
            .leaves
            .iter()
            .copied()
            .filter(|&l| self.node(l).target > 0.0 && !others.contains(&l))
            .max_by(|&a, &b| {
                self.node(a)
                    .want()
                    .total_cmp(&self.node(b).want())
                    .then(b.cmp(&a))
            })
    }
}
