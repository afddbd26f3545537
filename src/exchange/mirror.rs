//! Request mirroring (`proxy.mirror`): a sampled copy of the request goes to a shadow upstream
//! as a detached task on this worker's runtime, fire and forget.
//!
//! The copy is prepared synchronously (the same upstream head the real request gets, written
//! for the shadow's target with its own Host handling, plus `x-ringway-mirror: 1`, and the
//! body) and handed to `monoio::spawn`; nothing is awaited, so the real request never waits
//! for, or fails with, the shadow. Only bodies already buffered and at most `max_body` long
//! are copied (others are skipped and counted); at most `max_in_flight` copies to one shadow
//! upstream run per worker (more are dropped and counted; a hung shadow never stops the
//! copies to another). The task is bounded by the shadow's connect plus response
//! timeout; it reads the response head, discards a small body and pools the connection when
//! it can. Outcomes go to `ringway_upstream_mirror_total` (`resilience::mirror_stats`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use crate::config::Mirror;
use crate::core::Generation;
use crate::http1::{BodyFraming, Method};
use crate::io::{read_some, write_all};
use crate::resilience::mirror_stats::MirrorOutcome;
use crate::resilience::rng;
use crate::upstream::{UpConn, UpstreamState};

use super::model::Exchange;
use super::wire::Downstream;

/// The marker line every mirrored request carries (a client's own copy never passes:
/// `upstream_head::MIRROR_MARKER` is a header the gateway owns).
const MARKER: &[u8] = b"x-ringway-mirror: 1\r\n";

/// Largest shadow response body read (and discarded) so its connection can be pooled; larger
/// or chunked bodies close the connection instead.
const DRAIN_MAX: u64 = 64 * 1024;

thread_local! {
    /// Mirrored requests in flight on this worker, per shadow upstream (keyed by its shared
    /// record's address): a shadow that hangs fills its own cap, never another shadow's.
    static IN_FLIGHT: RefCell<Vec<(usize, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Counts one mirror in flight to one shadow on this worker while alive.
struct Slot(usize);

impl Slot {
    fn take(shadow: usize, max: u32) -> Option<Slot> {
        IN_FLIGHT.with(|m| {
            let mut m = m.borrow_mut();
            let at = match m.iter().position(|(k, _)| *k == shadow) {
                Some(at) => at,
                None => {
                    m.push((shadow, 0));
                    m.len() - 1
                }
            };
            let n = &mut m[at].1;
            if *n >= max {
                if *n == 0 {
                    m.swap_remove(at);
                }
                return None;
            }
            *n += 1;
            Some(Slot(shadow))
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.with(|m| {
            let mut m = m.borrow_mut();
            if let Some(at) = m.iter().position(|(k, _)| *k == self.0) {
                m[at].1 = m[at].1.saturating_sub(1);
                if m[at].1 == 0 {
                    m.swap_remove(at);
                }
            }
        });
    }
}

/// Samples the request and, if chosen, starts its copy to `m.upstream` (never awaited).
/// `buffered_body` is the forward phase's: `Some(n)` when the whole body is here.
pub fn start<D: Downstream>(
    gen: &Rc<Generation>,
    m: &Mirror,
    ex: &Exchange<'_>,
    down: &D,
    buffered_body: Option<usize>,
    tunnel: bool,
    write_head: &impl Fn(&str, &Exchange<'_>, &mut Vec<u8>),
) {
    if m.per_million < 1_000_000 && rng::below(1_000_000) >= u64::from(m.per_million) {
        return;
    }
    let Some(us) = gen.upstreams.get(m.upstream.0 as usize) else {
        return;
    };
    let stats = &us.shared.mirror;
    let body_len = buffered_body.filter(|&n| n as u64 <= m.max_body && !tunnel);
    let Some(n) = body_len else {
        stats.count(MirrorOutcome::Skipped);
        return;
    };
    let shadow = std::sync::Arc::as_ptr(&us.shared) as usize;
    let Some(slot) = Slot::take(shadow, m.max_in_flight) else {
        stats.count(MirrorOutcome::Dropped);
        return;
    };
    let key = super::traffic::balance_key(us, ex);
    let Some(target) = us.pick(Instant::now(), 0, key) else {
        stats.count(MirrorOutcome::Failed);
        return;
    };
    let label = us.targets.get(target).map_or("", |t| t.label.as_str());
    let mut wire = Vec::with_capacity(1024 + n);
    write_head(label, ex, &mut wire);
    if wire.ends_with(b"\r\n\r\n") {
        let at = wire.len() - 2;
        wire.splice(at..at, MARKER.iter().copied());
    }
    if n > 0 {
        match down.buffered_body(ex.head, n) {
            Some(b) => wire.extend_from_slice(&b[..n.min(b.len())]),
            None => {
                stats.count(MirrorOutcome::Skipped);
                return;
            }
        }
    }
    let copy = Copy {
        gen: gen.clone(),
        upstream: m.upstream.0 as usize,
        target,
        method: ex.head.method,
        wire,
    };
    monoio::spawn(async move {
        let _slot = slot;
        copy.run().await;
    });
}

/// One mirrored request, owned by its task.
struct Copy {
    gen: Rc<Generation>,
    upstream: usize,
    target: usize,
    method: Method,
    wire: Vec<u8>,
}

impl Copy {
    async fn run(mut self) {
        let gen = self.gen.clone();
        let Some(us) = gen.upstreams.get(self.upstream) else {
            return;
        };
        let deadline = Instant::now() + us.connect_timeout + us.response_timeout;
        let sent = monoio::time::timeout_at(deadline.into(), self.exchange(us, deadline)).await;
        let outcome = match sent {
            Ok(true) => MirrorOutcome::Sent,
            _ => MirrorOutcome::Failed,
        };
        us.shared.mirror.count(outcome);
    }

    /// Sends the copy and reads the answer's head (and a small body, to pool the connection).
    async fn exchange(&mut self, us: &UpstreamState, deadline: Instant) -> bool {
        let mut up = match us.take_idle(self.target, Instant::now()) {
            Some(c) => c,
            None => match super::send::connect_one(us, self.target).await {
                Ok(c) => c,
                Err(_) => return false,
            },
        };
        if write_all(&mut up.stream, &mut self.wire, deadline)
            .await
            .is_err()
        {
            return false;
        }
        let limits = &self.gen.cfg.limits;
        let Ok(resp) = super::send::read_response_head(us, &mut up, limits, self.method).await
        else {
            return false;
        };
        if !resp.close && drain(&mut up, resp.body).await {
            up.reused = false;
            us.put_idle(up, Instant::now());
        }
        true
    }
}

/// Reads and drops a `Content-Length` body of at most `DRAIN_MAX` bytes; `true` when the
/// connection is clean afterwards (nothing else arrived).
async fn drain(up: &mut UpConn, body: BodyFraming) -> bool {
    let want = match body {
        BodyFraming::None => 0,
        BodyFraming::Length(n) if n <= DRAIN_MAX => n,
        _ => return false,
    } as usize;
    while up.buf.len() < want {
        if read_some(&mut up.stream, &mut up.buf, want.max(4096))
            .await
            .is_err()
        {
            return false;
        }
    }
    let clean = up.buf.len() == want;
    up.buf.clear();
    clean
}
