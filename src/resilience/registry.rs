//! The records that survive a reload: one `UpstreamShared` per upstream name and one
//! `TargetHealth` per (upstream, target address), handed out by `Registry` at compile time.
//!
//! A reload that keeps an upstream (by name) and a target (by address) keeps their records, so
//! health, ejections and counters carry over; records no compiled config refers to any more are
//! pruned when the next config is compiled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::active::ActiveHealth;
use super::outlier::OutlierState;

/// Hands out the shared records; locked only while a config compiles.
#[derive(Default)]
pub struct Registry {
    upstreams: Mutex<HashMap<String, Arc<UpstreamShared>>>,
}

impl Registry {
    /// The record of upstream `name`, created on first use.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamShared> {
        let mut map = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        // Records nothing holds any more (a removed upstream) go when the next config compiles.
        map.retain(|_, u| Arc::strong_count(u) > 1);
        map.entry(name.to_string())
            .or_insert_with(|| Arc::new(UpstreamShared::new(name)))
            .clone()
    }
}

/// What every worker shares about one upstream.
#[derive(Debug)]
pub struct UpstreamShared {
    pub name: String,
    /// Connections, pending and active requests, retries in flight and their counters
    /// (`breaker.rs`).
    pub load: Arc<super::breaker::Load>,
    targets: Mutex<HashMap<SocketAddr, Arc<TargetHealth>>>,
    /// Outcomes of requests mirrored to this upstream (`proxy.mirror`).
    pub mirror: super::mirror_stats::MirrorStats,
    /// Bumped on every health change of one of its targets (an active-check transition, an
    /// ejection), so a worker knows when to recount its usable targets (panic mode).
    pub health_epoch: AtomicU64,
    /// Held while a worker decides an ejection, so two workers cannot both eject the last
    /// target `max_ejection_percent` allows.
    pub ejecting: AtomicBool,
}

impl UpstreamShared {
    fn new(name: &str) -> UpstreamShared {
        UpstreamShared {
            name: name.to_string(),
            load: Arc::default(),
            targets: Mutex::new(HashMap::new()),
            mirror: Default::default(),
            health_epoch: AtomicU64::new(0),
            ejecting: AtomicBool::new(false),
        }
    }

    /// The record of target `addr`, created on first use (compile time only).
    pub fn target(&self, addr: SocketAddr) -> Arc<TargetHealth> {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| Arc::strong_count(t) > 1);
        map.entry(addr)
            .or_insert_with(|| Arc::new(TargetHealth::new(addr)))
            .clone()
    }

    /// Notes a health change of one of the upstream's targets.
    pub fn health_changed(&self) {
        self.health_epoch.fetch_add(1, Ordering::Release);
    }
}

/// What every worker shares about one target of one upstream.
#[derive(Debug)]
pub struct TargetHealth {
    pub addr: SocketAddr,
    /// Active-check state (`active.rs`).
    pub active: ActiveHealth,
    /// Passive outlier state (`outlier.rs`).
    pub outlier: OutlierState,
}

impl TargetHealth {
    fn new(addr: SocketAddr) -> TargetHealth {
        TargetHealth {
            addr,
            active: ActiveHealth::default(),
            outlier: OutlierState::default(),
        }
    }

    /// Neither failing active checks (when `checked`) nor ejected at `now_ms` (`mono_ms`).
    #[inline]
    pub fn usable(&self, checked: bool, now_ms: u64) -> bool {
        let down = checked && self.active.is_down();
        !down && !self.outlier.is_ejected(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_shared_while_held_and_pruned_after() {
        let r = Registry::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let u = r.upstream("api");
        let t = u.target(a);
        // A second compile of the same upstream and target gets the same records.
        assert!(Arc::ptr_eq(&u, &r.upstream("api")));
        assert!(Arc::ptr_eq(&t, &u.target(a)));
        drop(t);
        let _b = u.target("127.0.0.1:2".parse().unwrap());
        assert_eq!(
            u.targets.lock().unwrap().len(),
            1,
            "the unheld target was pruned"
        );
        drop(u);
        let _other = r.upstream("other");
        assert_eq!(
            r.upstreams.lock().unwrap().len(),
            1,
            "the unheld upstream was pruned"
        );
    }
}
