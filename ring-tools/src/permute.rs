//! Deterministic pseudo-random visiting orders, shared by handoffs and rebalance.

/// splitmix64: a fixed, well-mixed function of its input.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A permutation of `0..n` chosen by `key`: a full-cycle walk with a stride
/// coprime to `n`. O(1) memory; every index is visited exactly once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Permutation {
    n: usize,
    start: usize,
    stride: usize,
}

impl Permutation {
    pub fn new(n: usize, key: u64) -> Self {
        let h1 = mix(key);
        let h2 = mix(h1);
        let m = n.max(1);
        let mut stride = ((h2 % m as u64) as usize).max(1);
        while gcd(stride, m) != 1 {
            stride = stride % m + 1;
        }
        Permutation {
            n,
            start: (h1 % m as u64) as usize,
            stride,
        }
    }

    /// The `i`th index of the permutation (`i < n`).
    pub fn get(&self, i: usize) -> usize {
        ((self.start as u128 + i as u128 * self.stride as u128) % self.n as u128) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_every_index_once() {
        for n in [1, 2, 3, 10, 64, 97, 1000] {
            for key in 0..20 {
                let p = Permutation::new(n, key);
                let mut seen = vec![false; n];
                for i in 0..n {
                    assert!(!std::mem::replace(&mut seen[p.get(i)], true));
                }
            }
        }
    }
}
