//! Per-worker upstream state: each upstream's targets with their balancing counters, back-off
//! and connection pools. Balancing lives in `balance.rs`, the HTTP/1.1 keep-alive pool and
//! its reuse check in `pool.rs`, HTTP/2 connections in `h2.rs`.
//!
//! Everything here is `!Send` and owned by one worker (Cell/RefCell, no locks). A new config
//! generation builds fresh `UpstreamState`s but carries idle connections and back-off over by
//! (upstream name, target address), so a reload does not drop warm connections.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::config::{Balance, Upstream, UpstreamProtocol};
use crate::resilience::{TargetHealth, UpstreamShared};
use crate::tls::upstream::UpstreamTls;

pub mod balance;
pub mod checker;
pub mod gate;
pub mod h2;
pub mod health;
pub mod least_request;
pub mod liveness;
pub mod pool;
pub mod report;

use h2::H2Pool;
use pool::IdlePool;
pub use pool::UpConn;

pub struct TargetState {
    pub addr: SocketAddr,
    /// The target as configured (`HOST:PORT`, or `IP:PORT`): the Host header when the
    /// client's is not preserved, so a name-based virtual host upstream sees its own name.
    pub label: String,
    weight: i64,
    current: Cell<i64>,
    down_until: Cell<Option<Instant>>,
    idle: IdlePool,
    /// With TLS: the name verified in this target's certificate and sent as SNI.
    pub server_name: Option<ServerName<'static>>,
    /// HTTP/2 connections (upstreams with `protocol = "http2"`).
    pub h2: H2Pool,
    /// What every worker shares about this target (health, ejection).
    pub health: Arc<TargetHealth>,
    /// Requests in flight on this worker (least-request upstreams; kept across reloads).
    active: Rc<Cell<u32>>,
}

/// An upstream's TLS on this worker: the compiled settings and this worker's client config
/// (its own session store).
pub struct WorkerUpstreamTls {
    pub settings: Arc<UpstreamTls>,
    pub config: Arc<rustls::ClientConfig>,
}

pub struct UpstreamState {
    pub name: String,
    pub targets: Vec<TargetState>,
    max_idle: usize,
    idle_timeout: Duration,
    backoff: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub tls: Option<WorkerUpstreamTls>,
    pub protocol: UpstreamProtocol,
    /// What every worker shares about this upstream.
    pub shared: Arc<UpstreamShared>,
    /// The balancing algorithm (with a hash upstream's shared Maglev table).
    pub balance: Balance,
    /// Retries in flight allowed next to the active requests (`exchange::retry`).
    pub retry_budget: Option<crate::resilience::RetryBudget>,
    /// Circuit-breaker limits (`exchange::retry::admit` and the connect paths).
    pub breaker: crate::resilience::BreakerLimits,
    /// Health checks / outlier ejection settings (`health.rs`); `None`: none configured.
    pub health: Option<gate::HealthGate>,
}

impl UpstreamState {
    /// Builds state for `u`, taking idle connections and back-off from `old` where the
    /// upstream name and target address are unchanged. Idle connections stay only if they
    /// were made under the same TLS settings (plain stays plain; a changed CA, name or client
    /// certificate starts over).
    pub fn new(u: &Upstream, old: Option<&UpstreamState>) -> UpstreamState {
        let same_tls =
            old.is_some_and(|o| tls_identity(&o.tls) == u.tls.as_ref().map(|t| t.identity));
        let same_protocol = old.is_some_and(|o| o.protocol == u.protocol);
        let tls = u.tls.as_ref().map(|t| {
            let prev = old
                .and_then(|o| o.tls.as_ref())
                .map(|w| (&*w.settings, &*w.config));
            WorkerUpstreamTls {
                settings: t.clone(),
                config: t.worker_config(prev),
            }
        });
        let targets = u
            .targets
            .iter()
            .map(|t| {
                let prev = old.and_then(|o| o.targets.iter().find(|p| p.addr == t.addr));
                let server_name = u.tls.as_ref().and_then(|s| s.names.get(t.source).cloned());
                let prev_name = prev.and_then(|p| p.server_name.as_ref());
                // Connections of the other protocol are never carried over: nothing would
                // take them again.
                let keep_idle = same_tls && same_protocol && prev_name == server_name.as_ref();
                let h2 = H2Pool::default();
                let idle = IdlePool::default();
                if let Some(p) = prev.filter(|_| keep_idle) {
                    h2.take_from(&p.h2);
                    idle.take_from(&p.idle);
                }
                TargetState {
                    addr: t.addr,
                    label: t.label.clone(),
                    weight: i64::from(t.weight),
                    current: Cell::new(0),
                    down_until: Cell::new(prev.and_then(|p| p.down_until.get())),
                    idle,
                    server_name,
                    h2,
                    health: t.health.clone(),
                    active: prev.map_or_else(Rc::default, |p| p.active.clone()),
                }
            })
            .collect();
        UpstreamState {
            name: u.name.clone(),
            targets,
            max_idle: u.max_idle,
            idle_timeout: u.idle_timeout,
            backoff: u.backoff,
            connect_timeout: u.connect_timeout,
            response_timeout: u.response_timeout,
            tls,
            protocol: u.protocol,
            shared: u.shared.clone(),
            balance: u.balance.clone(),
            retry_budget: u.retry_budget,
            breaker: u.breaker,
            health: gate::HealthGate::new(u),
        }
    }

    /// The upstream's `max_idle` (HTTP/2: the cap on connections per target).
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// How long an idle connection is kept.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A pooled connection to `target` fit to carry a request (`pool.rs`: checked before reuse).
    pub fn take_idle(&self, target: usize, now: Instant) -> Option<UpConn> {
        self.targets.get(target)?.idle.take(now, self.idle_timeout)
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn put_idle(&self, conn: UpConn, now: Instant) {
        if let Some(t) = self.targets.get(conn.target) {
            t.idle.put(conn, now, self.max_idle);
        }
    }

    /// Frees the read buffers of every idle pooled connection (see `IdlePool::release_buffers`).
    pub fn release_idle_buffers(&self) {
        for t in &self.targets {
            t.idle.release_buffers();
        }
    }

    /// Drops every idle connection to `target` (after one turned out to be stale, its
    /// siblings probably are too: the upstream likely restarted).
    pub fn drop_idle(&self, target: usize) {
        if let Some(t) = self.targets.get(target) {
            t.idle.clear();
        }
    }
}

fn tls_identity(t: &Option<WorkerUpstreamTls>) -> Option<u64> {
    t.as_ref().map(|w| w.settings.identity)
}

/// Test fixtures shared by this module's and its children's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::time::Duration;

    use crate::config::{Target, Upstream};

    /// An upstream of loopback targets with these weights and nothing else configured.
    pub fn upstream(weights: &[u32]) -> Upstream {
        let shared = crate::resilience::Registry::default().upstream("u");
        Upstream {
            name: "u".into(),
            targets: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                    Target {
                        addr,
                        label: String::new(),
                        weight: w,
                        source: i,
                        health: shared.target(addr),
                    }
                })
                .collect(),
            max_idle: 4,
            idle_timeout: Duration::from_secs(60),
            backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            tls: None,
            protocol: Default::default(),
            shared,
            balance: Default::default(),
            retry_budget: None,
            breaker: Default::default(),
            health: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::upstream;
    use super::*;

    #[test]
    fn round_robin_is_even() {
        let s = UpstreamState::new(&upstream(&[1, 1, 1]), None);
        let now = Instant::now();
        let picks: Vec<_> = (0..6).map(|_| s.pick(now, 0, None).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_round_robin_is_smooth_and_proportional() {
        let s = UpstreamState::new(&upstream(&[5, 1, 1]), None);
        let now = Instant::now();
        let picks: Vec<_> = (0..7).map(|_| s.pick(now, 0, None).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 5);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn backoff_skips_then_recovers() {
        let s = UpstreamState::new(&upstream(&[1, 1]), None);
        let now = Instant::now();
        s.mark_down(0, now);
        for _ in 0..4 {
            assert_eq!(s.pick(now, 0, None), Some(1));
        }
        assert_eq!(s.pick(now, 0b10, None), None);
        let later = now + Duration::from_secs(6);
        let picks: Vec<_> = (0..4).map(|_| s.pick(later, 0, None).unwrap()).collect();
        assert!(picks.contains(&0));
    }

    #[test]
    fn least_request_prefers_the_idle_target_and_the_guard_releases() {
        let mut u = upstream(&[1, 1]);
        u.balance = Balance::LeastRequest;
        let s = UpstreamState::new(&u, None);
        let now = Instant::now();
        let busy: Vec<_> = (0..3).filter_map(|_| s.track(0)).collect();
        assert_eq!(s.in_flight(0), 3);
        for _ in 0..20 {
            assert_eq!(
                s.pick(now, 0, None),
                Some(1),
                "two choices of two: the idle one"
            );
        }
        assert_eq!(s.pick(now, 0b10, None), Some(0), "the only one left");
        drop(busy);
        assert_eq!(s.in_flight(0), 0);
        // Carried over a reload for a target that stays.
        let _g = s.track(1);
        let s2 = UpstreamState::new(&u, Some(&s));
        assert_eq!(s2.in_flight(1), 1);
        // Round robin upstreams count nothing.
        let rr = UpstreamState::new(&upstream(&[1]), None);
        assert!(rr.track(0).is_none());
    }

    #[test]
    fn hash_pick_is_stable_and_walks_past_a_down_target() {
        let mut u = upstream(&[1, 1, 1]);
        let ids: Vec<String> = u.targets.iter().map(|t| t.addr.to_string()).collect();
        let weighted: Vec<(&[u8], u32)> = ids.iter().map(|i| (i.as_bytes(), 1)).collect();
        u.balance = Balance::Hash {
            on: crate::config::KeySource::Path,
            table: Arc::new(crate::resilience::maglev::Maglev::build(&weighted)),
        };
        let s = UpstreamState::new(&u, None);
        let now = Instant::now();
        let key = |k: u32| Some(crate::resilience::stable_hash::key_hash(&k.to_le_bytes()));
        let before: Vec<_> = (0..300).map(|k| s.pick(now, 0, key(k)).unwrap()).collect();
        assert!((0..3).all(|t| before.contains(&t)));
        s.mark_down(1, now);
        for (k, &b) in before.iter().enumerate() {
            let got = s.pick(now, 0, key(k as u32)).unwrap();
            assert_ne!(got, 1);
            if b != 1 {
                assert_eq!(got, b, "key {k} of a healthy target moved");
            }
        }
        // No key: round robin.
        assert!(s.pick(now, 0, None).is_some());
    }
}
