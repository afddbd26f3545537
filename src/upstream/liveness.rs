//! The pool's reuse check for plain TCP connections: one zero-timeout `poll(2)` sweeps a
//! pool's idle sockets, and what it finds is trusted until the end of the worker's current
//! turn, then forgotten.
//!
//! How a turn is bounded: the first sweep of a turn opens it and wakes this worker's marker
//! task (spawned on first use). monoio runs woken tasks in the order they were woken, so the
//! marker runs after every task already queued in this turn, and closes it. A task that takes
//! a connection before then uses the sweep's answer and queues its request's write at once;
//! the write reaches the kernel when the turn's submissions go in. A task that runs after the
//! marker finds the turn closed and sweeps again. So a connection is trusted only from a look
//! taken in the turn that sends on it: the same freshness as one check per reuse, judged from
//! the moment the request leaves. What is swept and found readable, half-closed or failed is
//! dropped from the pool on the spot.
//!
//! The sweep is synchronous (no task waits for it), so writes are not held back to the end of
//! the turn. An earlier design did hold them: every asker registered its socket and waited for
//! a checker task's batched poll. That made io_uring arm many more polls for the response
//! reads that followed (loadtest/RESULTS.md, "The reuse check batched per loop turn" and "One
//! sweep per turn").
//!
//! Everything here is per thread and allocation-free after warm-up (one scratch array, bounded
//! by `SWEEP_MAX`).

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::task::Poll;

/// Readable, half-closed or failed: any of these means "do not reuse".
const EVENTS: libc::c_short = libc::POLLIN | libc::POLLRDHUP;

/// Most sockets one sweep looks at (the newest idle ones, which are taken first).
const SWEEP_MAX: usize = 64;

/// What the last sweep said of one idle connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not swept since it went idle.
    Unchecked,
    /// Quiet when swept in the given turn.
    Quiet(u64),
    /// Readable, half-closed or failed: never to carry a request.
    Busy,
}

impl Seen {
    /// Whether a connection stamped `self` may be handed out now: quiet in the turn that is
    /// still open. A yes is counted as a take (for `sweep_size`).
    pub fn claim(self) -> bool {
        let Seen::Quiet(t) = self else {
            return false;
        };
        let ok = open_turn_number() == Some(t);
        if ok {
            count_take();
        }
        ok
    }
}

/// The turn now open on this thread (a sweep opened it and the marker has not closed it yet):
/// a connection stamped `Seen::Quiet` with this number may be handed out.
pub fn open_turn_number() -> Option<u64> {
    TURN.with(|s| s.open.get().then(|| s.number.get()))
}

/// Counts a connection handed out on a stamp of the open turn (for `sweep_size`).
pub fn count_take() {
    TURN.with(|s| s.taken.set(s.taken.get().saturating_add(1)));
}

/// This worker's turn bookkeeping. `Cell`s, except the scratch array, which only `sweep`
/// borrows (and wakes nothing meanwhile): a marker torn down while being woken (its runtime
/// has ended) can run its guard at any point without finding anything borrowed.
struct Turn {
    /// The current (or last) turn's number.
    number: Cell<u64>,
    /// A sweep has run in this turn and the marker has not closed it yet.
    open: Cell<bool>,
    /// The marker task's waker while it waits for the next turn.
    marker: Cell<Option<std::task::Waker>>,
    /// A marker task exists on this thread.
    spawned: Cell<bool>,
    /// Connections handed out on a sweep's word in this turn, and in the two turns before
    /// it that swept: a sweep looks at about as many sockets as a turn takes (`sweep_size`).
    taken: Cell<u32>,
    last_taken: Cell<u32>,
    before_last_taken: Cell<u32>,
    /// `poll` calls made so far (for the tests: a sweep is one call).
    polls: Cell<u64>,
    /// The pollfd array of a sweep, kept for its allocation.
    scratch: RefCell<Vec<libc::pollfd>>,
}

thread_local! {
    static TURN: Turn = const {
        Turn {
            number: Cell::new(0),
            open: Cell::new(false),
            marker: Cell::new(None),
            spawned: Cell::new(false),
            taken: Cell::new(0),
            last_taken: Cell::new(0),
            before_last_taken: Cell::new(0),
            polls: Cell::new(0),
            scratch: RefCell::new(Vec::new()),
        }
    };
}

/// Opens a turn if none is open (waking the marker that will close it) and returns its number.
fn open_turn() -> u64 {
    TURN.with(|s| {
        if !s.open.get() {
            if let Some(w) = s.marker.take() {
                // A marker left by a runtime that has ended may be torn down by this wake; its
                // guard then clears `spawned`, and a new one is started below.
                w.wake();
            }
            if !s.spawned.get() {
                s.spawned.set(true);
                monoio::spawn(marker());
            }
            s.number.set(s.number.get() + 1);
            s.open.set(true);
            s.before_last_taken.set(s.last_taken.get());
            s.last_taken.set(s.taken.replace(0));
        }
        s.number.get()
    })
}

/// What one sweep found.
pub struct Answers {
    /// The turn the answers hold for.
    pub turn: u64,
    quiet: [bool; SWEEP_MAX],
    len: usize,
}

impl Answers {
    /// One answer per socket, in the order they were listed: `true` if quiet.
    pub fn quiet(&self) -> &[bool] {
        &self.quiet[..self.len]
    }
}

/// How many sockets a sweep should look at: as many as the larger of the last two turns took
/// (under load, turns that mostly start requests alternate with turns that mostly finish
/// them), and twice what this turn has taken so far when it sweeps again, at least one, at
/// most `SWEEP_MAX`. Looking at every idle socket costs the kernel a socket poll each (most of
/// which the turn will not take); looking at too few costs a system call per take: after a
/// turn that took one, a turn taking 26 made 26 one-socket sweeps. Doubling within the turn
/// bounds that to a few calls, none looking at more than twice what the turn has taken.
fn sweep_size(s: &Turn) -> usize {
    let recent = s.last_taken.get().max(s.before_last_taken.get());
    let growing = s.taken.get().saturating_mul(2);
    (recent.max(growing) as usize).clamp(1, SWEEP_MAX)
}

/// Sweeps sockets in one `poll`: `fill` lists them, given how many to list (`sweep_size`;
/// only that many count) and the turn, now open, whose stamps need no new look. A failed
/// poll answers "not quiet" for all (the connections are dropped, never reused on a guess).
pub fn sweep(fill: impl FnOnce(&mut Vec<libc::pollfd>, usize, u64)) -> Answers {
    let turn = open_turn();
    TURN.with(|s| {
        let mut fds = s.scratch.borrow_mut();
        fds.clear();
        let size = sweep_size(s);
        fill(&mut fds, size, turn);
        fds.truncate(size);
        // SAFETY: `fds` holds `len` initialised entries for sockets the caller owns and keeps
        // open for the call; a zero timeout never blocks.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        s.polls.set(s.polls.get() + 1);
        // EINTR cannot happen with a zero timeout.
        let mut quiet = [false; SWEEP_MAX];
        for (a, p) in quiet.iter_mut().zip(fds.iter()) {
            *a = n >= 0 && p.revents == 0;
        }
        Answers {
            turn,
            quiet,
            len: fds.len(),
        }
    })
}

/// The pollfd for one socket of a sweep.
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: EVENTS,
        revents: 0,
    }
}

/// This thread's marker: closes the open turn each time it runs.
async fn marker() {
    let _guard = MarkerGuard;
    std::future::poll_fn(|cx| {
        TURN.with(|s| {
            s.open.set(false);
            s.marker.set(Some(cx.waker().clone()));
        });
        Poll::<()>::Pending
    })
    .await
}

/// Lets a new marker be spawned if this one's task is dropped (its runtime ended), and closes
/// the turn it would have closed.
struct MarkerGuard;

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        let _ = TURN.try_with(|s| {
            s.spawned.set(false);
            s.open.set(false);
            drop(s.marker.take());
        });
    }
}

/// `poll` calls made on this thread so far.
#[cfg(test)]
pub fn polls() -> u64 {
    TURN.with(|s| s.polls.get())
}

/// A turn is open on this thread.
#[cfg(test)]
pub fn turn_open() -> bool {
    TURN.with(|s| s.open.get())
}
