//! Connection admission: the process-wide cap on open client connections and the per-client-IP
//! cap, checked once per accepted connection (never per request).
//!
//! Workers share nothing else, so this is the one place they coordinate, with atomics only:
//! - `open` counts every admitted connection of every worker (one `fetch_add` per accept).
//! - Per-IP counts live in a count-min sketch: two rows of atomic counters, each indexed by an
//!   independent half of a keyed (per-process random) hash of the client's address (IPv4, or the
//!   IPv6 prefix). A connection increments one counter per row; the IP's count is the smaller of
//!   the two. Colliding addresses can only make a count *larger*, never smaller, so a flood from
//!   one address is always capped, whichever workers its connections land on. An innocent
//!   address is refused only if it collides with heavy users in *both* rows, which an attacker
//!   cannot aim for (the hash key is secret) and which is negligible at normal loads (thousands
//!   of counters per row, a cap in the hundreds).
//!
//! Invariants: every `Permit` handed out is released exactly once (on drop), so the counters
//! return to zero when connections close; a refused attempt leaves every counter unchanged.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::config::ConnLimits;

/// Counters per sketch row (a power of two).
const ROW: usize = 1 << 15;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The process holds `limits.max_connections` client connections.
    MaxConnections,
    /// The client's address holds `limits.max_connections_per_ip`.
    PerIp,
}

/// Process-wide connection counts (lives in `shared::Shared`).
pub struct Admission {
    open: AtomicUsize,
    rows: Box<[[AtomicU32; 2]]>,
    hasher: ahash::RandomState,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new()
    }
}

/// An admitted connection's share of the counts; released on drop.
pub struct Permit<'a> {
    adm: &'a Admission,
    /// Sketch counters this connection incremented (`None` when no per-IP cap applied).
    slots: Option<(usize, usize)>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.adm.release(self.slots);
    }
}

/// The slot indexes a permit holds, for holders that cannot borrow `Admission` (an `Rc` task).
#[derive(Clone, Copy, Debug)]
pub struct Held(Option<(usize, usize)>);

impl Admission {
    pub fn new() -> Admission {
        Admission {
            open: AtomicUsize::new(0),
            rows: (0..ROW)
                .map(|_| [AtomicU32::new(0), AtomicU32::new(0)])
                .collect(),
            hasher: ahash::RandomState::new(),
        }
    }

    /// Client connections currently admitted, across all workers.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip` under `limits`, or says why not.
    pub fn admit(&self, ip: IpAddr, limits: &ConnLimits) -> Result<Permit<'_>, Refusal> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if limits.max > 0 && before >= limits.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::MaxConnections);
        }
        if limits.per_ip == 0 {
            return Ok(Permit {
                adm: self,
                slots: None,
            });
        }
        let h = self.hasher.hash_one(group_key(ip, limits.ipv6_prefix));
        let (a, b) = ((h as usize) & (ROW - 1), ((h >> 32) as usize) & (ROW - 1));
        let ca = self.rows[a][0].fetch_add(1, Ordering::Relaxed);
        let cb = self.rows[b][1].fetch_add(1, Ordering::Relaxed);
        if ca.min(cb) >= limits.per_ip {
            self.release(Some((a, b)));
            return Err(Refusal::PerIp);
        }
        Ok(Permit {
            adm: self,
            slots: Some((a, b)),
        })
    }

    fn release(&self, slots: Option<(usize, usize)>) {
        if let Some((a, b)) = slots {
            self.rows[a][0].fetch_sub(1, Ordering::Relaxed);
            self.rows[b][1].fetch_sub(1, Ordering::Relaxed);
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Releases a permit that was turned into `Held` (see `Permit::into_held`).
    pub fn release_held(&self, held: Held) {
        self.release(held.0);
    }
}

impl Permit<'_> {
    /// Detaches the permit from its borrow; the caller must pass it to `release_held` once.
    pub fn into_held(self) -> Held {
        let held = Held(self.slots);
        std::mem::forget(self);
        held
    }
}

/// The address a per-IP count is kept under: an IPv4 address (also IPv4-mapped IPv6) as is, an
/// IPv6 address cut to its first `prefix` bits.
pub fn group_key(ip: IpAddr, prefix: u8) -> (u8, u128) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            let prefix = u32::from(prefix.clamp(1, 128));
            (6, u128::from(v6) & (u128::MAX << (128 - prefix)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_ip: u32) -> ConnLimits {
        ConnLimits {
            max,
            per_ip,
            ipv6_prefix: 64,
        }
    }

    #[test]
    fn per_ip_cap_and_release() {
        let a = Admission::new();
        let l = limits(0, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| a.admit(ip, &l).unwrap()).collect();
        assert_eq!(a.admit(ip, &l).err(), Some(Refusal::PerIp));
        // Another address is unaffected.
        let other = a.admit("10.0.0.2".parse().unwrap(), &l).unwrap();
        assert_eq!(a.open(), 4);
        drop(held);
        drop(other);
        assert_eq!(a.open(), 0);
        assert!(a
            .rows
            .iter()
            .all(|r| r[0].load(Ordering::Relaxed) == 0 && r[1].load(Ordering::Relaxed) == 0));
        assert!(a.admit(ip, &l).is_ok());
    }

    #[test]
    fn global_cap() {
        let a = Admission::new();
        let l = limits(2, 0);
        let p1 = a.admit("10.0.0.1".parse().unwrap(), &l).unwrap();
        let p2 = a.admit("10.0.0.2".parse().unwrap(), &l).unwrap();
        assert_eq!(
            a.admit("10.0.0.3".parse().unwrap(), &l).err(),
            Some(Refusal::MaxConnections)
        );
        let held = p1.into_held();
        a.release_held(held);
        drop(p2);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn ipv6_grouped_by_prefix() {
        let a = Admission::new();
        let l = limits(0, 2);
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _p = (a.admit(x, &l).unwrap(), a.admit(y, &l).unwrap());
        assert_eq!(a.admit(x, &l).err(), Some(Refusal::PerIp), "same /64");
        assert!(a.admit(z, &l).is_ok(), "other /64");
        let exact: std::net::Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        assert_eq!(group_key(x, 128), (6, u128::from(exact)));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            group_key(mapped, 64),
            group_key("10.0.0.1".parse().unwrap(), 64)
        );
    }
}
