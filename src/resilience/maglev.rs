//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size `M`
//! in which every target owns a share of the slots proportional to its weight, filled from
//! per-target permutations of the slots that depend only on the target's identity (its
//! address). A key hashes to a slot; the slot names its target.
//!
//! Built once per config compile and shared immutable by every worker (`Arc`). Removing a
//! target mostly moves only the keys it owned (plus a small fraction Maglev's table refill
//! shifts, well under 1% of keys at these table sizes); a target that is merely unavailable
//! keeps its slots, and `lookup` walks on to the next slot whose target is available, so only
//! that target's keys go elsewhere and they come back when it does.

/// Table size for up to `SMALL_MAX` targets; larger upstreams use `LARGE`.
const SMALL: usize = 65_537;
const SMALL_MAX: usize = 650;
const LARGE: usize = 655_373;

/// The most targets a hashed upstream may have (slots store target indexes as `u16`).
pub const MAX_TARGETS: usize = 6_500;

/// A Maglev lookup table.
#[derive(Debug)]
pub struct Maglev {
    slots: Box<[u16]>,
    targets: usize,
}

impl Maglev {
    /// The table for targets given as (identity bytes, weight ≥ 1). Identities should be
    /// distinct (the target's address as text). At most `MAX_TARGETS` targets are used.
    pub fn build(targets: &[(&[u8], u32)]) -> Maglev {
        let n = targets.len().min(MAX_TARGETS);
        let m = if n <= SMALL_MAX { SMALL } else { LARGE };
        let mut slots = vec![u16::MAX; m].into_boxed_slice();
        if n == 0 {
            return Maglev { slots, targets: 0 };
        }
        let m64 = m as u64;
        // Each target's permutation: slot(j) = (offset + j * skip) mod M, skip in 1..M (M is
        // prime, so every skip visits every slot).
        let mut pos: Vec<u64> = Vec::with_capacity(n);
        let mut skip: Vec<u64> = Vec::with_capacity(n);
        for (id, _) in &targets[..n] {
            pos.push(super::stable_hash::key_hash_seeded(1, id) % m64);
            skip.push(super::stable_hash::key_hash_seeded(2, id) % (m64 - 1) + 1);
        }
        let weights: Vec<u64> = targets[..n]
            .iter()
            .map(|(_, w)| u64::from((*w).max(1)))
            .collect();
        let max_w = weights.iter().copied().max().unwrap_or(1);
        let mut credit = vec![0u64; n];
        let mut filled = 0usize;
        // Rounds: every target earns its weight; whoever has earned `max_w` takes its next
        // free slot. Equal weights give the paper's round robin.
        while filled < m {
            for i in 0..n {
                credit[i] += weights[i];
                if credit[i] < max_w {
                    continue;
                }
                credit[i] -= max_w;
                loop {
                    let c = pos[i] as usize;
                    pos[i] = (pos[i] + skip[i]) % m64;
                    if slots[c] == u16::MAX {
                        slots[c] = i as u16;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
        }
        Maglev { slots, targets: n }
    }

    /// Number of slots.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The target owning the slot of `hash` (`None` for an empty table).
    pub fn owner(&self, hash: u64) -> Option<usize> {
        let s = *self.slots.get((hash % self.slots.len() as u64) as usize)?;
        (usize::from(s) < self.targets).then_some(usize::from(s))
    }

    /// The target for `hash`: the slot's owner if `available(owner)`, else the owner of the
    /// next slot whose target is available. `None` when no target is available. Each target
    /// is asked at most once (for the first 64 targets; later ones may be asked again).
    pub fn lookup(&self, hash: u64, mut available: impl FnMut(usize) -> bool) -> Option<usize> {
        let m = self.slots.len();
        if self.targets == 0 {
            return None;
        }
        let start = (hash % m as u64) as usize;
        let mut refused = 0u64;
        let mut refused_count = 0usize;
        for step in 0..m {
            let t = usize::from(self.slots[(start + step) % m]);
            if t < 64 {
                if refused & (1 << t) != 0 {
                    continue;
                }
                if available(t) {
                    return Some(t);
                }
                refused |= 1 << t;
                refused_count += 1;
                if refused_count == self.targets {
                    return None;
                }
            } else if t < self.targets && available(t) {
                return Some(t);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
    }

    fn table(names: &[String], weights: &[u32]) -> Maglev {
        let t: Vec<(&[u8], u32)> = names
            .iter()
            .zip(weights)
            .map(|(n, &w)| (n.as_bytes(), w))
            .collect();
        Maglev::build(&t)
    }

    fn shares(m: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in m.slots.iter() {
            c[usize::from(s)] += 1;
        }
        c
    }

    #[test]
    fn sizes_are_prime() {
        for p in [SMALL, LARGE] {
            assert!((2..).take_while(|d| d * d <= p).all(|d| p % d != 0), "{p}");
        }
    }

    #[test]
    fn every_slot_is_filled_and_shares_are_even() {
        for n in [1, 2, 3, 4, 7, 10, 64, 100] {
            let m = table(&names(n), &vec![1; n]);
            let c = shares(&m, n);
            let ideal = m.size() as f64 / n as f64;
            for (i, &k) in c.iter().enumerate() {
                let dev = (k as f64 - ideal).abs() / ideal;
                assert!(dev < 0.01, "n={n} target {i}: {k} slots vs {ideal:.0}");
            }
        }
    }

    #[test]
    fn weights_set_the_shares() {
        let m = table(&names(3), &[1, 2, 5]);
        let c = shares(&m, 3);
        let total = m.size() as f64;
        for (i, want) in [1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0].into_iter().enumerate() {
            let got = c[i] as f64 / total;
            assert!((got - want).abs() < 0.01, "target {i}: {got} vs {want}");
        }
    }

    #[test]
    fn removing_a_target_moves_about_its_share() {
        let all = names(4);
        let before = table(&all, &[1; 4]);
        let rest: Vec<String> = all.iter().filter(|n| *n != &all[2]).cloned().collect();
        let after = table(&rest, &[1; 3]);
        let name_at = |m: &Maglev, ns: &[String], i: usize| ns[usize::from(m.slots[i])].clone();
        let (mut moved, mut moved_kept) = (0, 0);
        for i in 0..before.size() {
            let (a, b) = (name_at(&before, &all, i), name_at(&after, &rest, i));
            if a != b {
                moved += 1;
                if a != all[2] {
                    moved_kept += 1;
                }
            }
        }
        let frac = moved as f64 / before.size() as f64;
        let kept_frac = moved_kept as f64 / before.size() as f64;
        assert!((0.24..0.30).contains(&frac), "moved {frac}");
        assert!(
            kept_frac < 0.03,
            "slots of remaining targets moved: {kept_frac}"
        );
        eprintln!("moved {frac:.4}, of remaining targets {kept_frac:.5}");
    }

    #[test]
    fn lookup_walks_past_unavailable_targets() {
        let m = table(&names(4), &[1; 4]);
        let mut moved = 0;
        for k in 0..2000u64 {
            let h = super::super::stable_hash::key_hash(&k.to_le_bytes());
            let owner = m.owner(h).unwrap();
            let got = m.lookup(h, |t| t != 1).unwrap();
            assert_ne!(got, 1);
            if owner != 1 {
                assert_eq!(got, owner, "a key of an available target stays");
            } else {
                moved += 1;
            }
        }
        assert!((350..650).contains(&moved), "{moved}");
        assert_eq!(m.lookup(7, |_| false), None);
        assert_eq!(Maglev::build(&[]).lookup(7, |_| true), None);
    }
}
