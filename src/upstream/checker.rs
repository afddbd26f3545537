//! The active health checker: one scheduler thread per process (never per worker) that probes
//! every target of every upstream with a `health_check`, off the request path.
//!
//! The scheduler follows the published config (it notices a new generation within
//! `RELOAD_POLL`), keeps each target's schedule across reloads by (upstream, address), and
//! starts each due probe on a short-lived thread of its own (`resilience::probe`, blocking
//! sockets bounded by the check's timeout), so a target that hangs never delays another's
//! probe. A target whose previous probe is still running skips that turn. Every interval is
//! jittered by ±10 % (random per probe) so gateways started together do not probe in step.
//!
//! Results go to the target's shared `ActiveHealth` atomics; a transition bumps the upstream's
//! health epoch and is logged. Workers read those atomics at their next pick.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Compiled, Upstream};
use crate::resilience::active::{ActiveCheck, ProbeResult};
use crate::resilience::probe::{probe, ProbeTls};
use crate::resilience::{TargetHealth, UpstreamShared};
use crate::shared::Shared;

/// How often the scheduler looks for a new config generation when no probe is due sooner.
const RELOAD_POLL: Duration = Duration::from_millis(100);
/// Stack of a probe thread (a blocking connect, a TLS handshake, a 4 KiB read).
const PROBE_STACK: usize = 256 * 1024;

/// One target's probe schedule.
struct Job {
    upstream: String,
    addr: SocketAddr,
    check: Arc<ActiveCheck>,
    shared: Arc<UpstreamShared>,
    health: Arc<TargetHealth>,
    /// Host header of an HTTP check.
    host: Arc<str>,
    tls: Option<Arc<ProbeTls>>,
    next: Instant,
    /// A probe of this target is running.
    busy: Arc<AtomicBool>,
}

/// Starts the checker thread.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringway-health".into())
        .spawn(move || run(&shared))
}

fn run(shared: &Shared) {
    let mut rng = Jitter::new();
    let mut generation = u64::MAX;
    let mut jobs: Vec<Job> = Vec::new();
    while !shared.draining.load(Ordering::Relaxed) {
        let g = shared.generation.load(Ordering::Acquire);
        if g != generation {
            generation = g;
            jobs = rebuild(&shared.config.load(), jobs, &mut rng);
        }
        let now = Instant::now();
        for j in jobs.iter_mut().filter(|j| j.next <= now) {
            j.next = now + rng.around(j.check.interval);
            if !j.busy.swap(true, Ordering::AcqRel) {
                start_probe(j);
            }
        }
        let wake = jobs
            .iter()
            .map(|j| j.next)
            .min()
            .unwrap_or(now + RELOAD_POLL)
            .min(now + RELOAD_POLL);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
}

/// The jobs of `cfg`, keeping the schedule (and in-flight flag) of targets already probed
/// under the same check; targets no longer checked forget their active state.
fn rebuild(cfg: &Compiled, old: Vec<Job>, rng: &mut Jitter) -> Vec<Job> {
    let mut old: HashMap<(String, SocketAddr), Job> = old
        .into_iter()
        .map(|j| ((j.upstream.clone(), j.addr), j))
        .collect();
    let mut jobs = Vec::new();
    for u in &cfg.upstreams {
        let Some(check) = &u.health.check else {
            continue;
        };
        let tls = probe_tls(u);
        for (i, t) in u.targets.iter().enumerate() {
            let prev = old.remove(&(u.name.clone(), t.addr));
            let (next, busy) = match prev {
                Some(p) if *p.check == **check => (p.next, p.busy),
                _ => (
                    Instant::now() + rng.below(check.interval / 10),
                    Arc::new(AtomicBool::new(false)),
                ),
            };
            let host = match &check.kind {
                crate::resilience::active::CheckKind::Http { host: Some(h), .. } => h.as_str(),
                _ => t.label.as_str(),
            };
            jobs.push(Job {
                upstream: u.name.clone(),
                addr: t.addr,
                check: check.clone(),
                shared: u.shared.clone(),
                health: t.health.clone(),
                host: Arc::from(host),
                tls: tls.as_ref().and_then(|(cfg, names)| {
                    let name = names.get(i)?.clone();
                    Some(Arc::new(ProbeTls {
                        config: cfg.clone(),
                        name,
                    }))
                }),
                next,
                busy,
            });
        }
    }
    for gone in old.into_values() {
        // Checks removed (or the target left): a later check starts from healthy.
        if gone.health.active.is_down() {
            gone.shared.health_changed();
        }
        gone.health.active.reset();
    }
    jobs
}

type Tls = (
    Arc<rustls::ClientConfig>,
    Vec<rustls::pki_types::ServerName<'static>>,
);

/// The upstream's TLS client config for probes: no session resumption, so every probe
/// verifies the target's certificate as a fresh connection would.
fn probe_tls(u: &Upstream) -> Option<Tls> {
    let t = u.tls.as_ref()?;
    let mut cfg = (*t.client).clone();
    cfg.resumption = rustls::client::Resumption::disabled();
    Some((Arc::new(cfg), t.names.clone()))
}

/// Runs one probe on its own thread and applies the result.
fn start_probe(j: &Job) {
    let check = j.check.clone();
    let (addr, host, tls) = (j.addr, j.host.clone(), j.tls.clone());
    let (health, shared, busy) = (j.health.clone(), j.shared.clone(), j.busy.clone());
    let spawned = std::thread::Builder::new()
        .name("ringway-probe".into())
        .stack_size(PROBE_STACK)
        .spawn(move || {
            let r = probe(&check, addr, &host, tls.as_deref());
            apply(&shared, &health, &check, r);
            busy.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        crate::log::warn(&format!(
            "health check of {}: cannot start a probe: {e}",
            j.addr
        ));
        j.busy.store(false, Ordering::Release);
    }
}

/// Applies a probe result; a transition is logged and bumps the upstream's health epoch.
fn apply(shared: &UpstreamShared, health: &TargetHealth, check: &ActiveCheck, r: ProbeResult) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let Some(down) = health.active.apply(r, check, now_ms) else {
        return;
    };
    shared.health_changed();
    let detail = match r {
        ProbeResult::Status(s) => format!("status {s}"),
        other => other.label().replace('_', " "),
    };
    if down {
        crate::log::warn(&format!(
            "upstream {} target {}: unhealthy after {} failed health checks (last: {detail})",
            shared.name, health.addr, check.unhealthy_threshold
        ));
    } else {
        crate::log::info(&format!(
            "upstream {} target {}: healthy again after {} passing health checks",
            shared.name, health.addr, check.healthy_threshold
        ));
    }
}

/// Random jitter for probe times (`resilience::rng`, this thread's generator).
struct Jitter;

impl Jitter {
    fn new() -> Jitter {
        Jitter
    }

    /// `d` ± 10 %.
    fn around(&mut self, d: Duration) -> Duration {
        d.mul_f64(0.9 + 0.2 * crate::resilience::rng::unit())
    }

    /// A random duration in [0, d).
    fn below(&mut self, d: Duration) -> Duration {
        d.mul_f64(crate::resilience::rng::unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut j = Jitter::new();
        let d = Duration::from_millis(1000);
        let draws: Vec<Duration> = (0..200).map(|_| j.around(d)).collect();
        assert!(draws
            .iter()
            .all(|x| *x >= Duration::from_millis(900) && *x <= Duration::from_millis(1100)));
        let min = draws.iter().min().copied().unwrap_or_default();
        let max = draws.iter().max().copied().unwrap_or_default();
        assert!(max - min > Duration::from_millis(100), "{min:?}..{max:?}");
        assert!(j.below(d) < d);
    }
}
