//! The pool's reuse check for plain TCP connections, batched per turn of the worker's loop:
//! every connection taken from a pool in one turn is checked by one zero-timeout `poll(2)`
//! over all of their sockets, instead of one system call each.
//!
//! How a batch forms: a task that asks registers its socket and, if no check is due yet,
//! wakes this worker's checker task (spawned on first use). monoio runs tasks in the order they
//! were woken, so the checker runs after every task woken before it in this turn, which
//! register theirs meanwhile. The checker polls every registered socket at once, records each
//! answer and wakes the askers. A task whose socket is quiet queues its request's write after
//! that, in the same turn. The write reaches the kernel when the turn's submissions go in, as
//! it did when each task checked its own socket, so, measured from the moment the request
//! leaves, a batched check is as fresh as one per task: both look within the turn that sends.
//! The price: the checked writes all go at the end of the turn, which makes io_uring arm more
//! polls for the response reads that follow (measured in loadtest/RESULTS.md, "The reuse check
//! batched per loop turn"; the batch still wins).
//!
//! An asker that is dropped (its exchange cancelled) unregisters before its socket can close,
//! so the poll never looks at a closed or reused descriptor. Slots are reused: after warm-up a
//! check allocates nothing, and the batch never holds more slots than the worker has exchanges
//! taking a pooled connection at once (bounded by its connection caps).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Readable, half-closed or failed: any of these means "do not reuse".
const EVENTS: libc::c_short = libc::POLLIN | libc::POLLRDHUP;

/// Checks that `fd` (an idle pooled socket with no I/O in flight) is quiet: nothing to read,
/// no EOF, no error. Resolves to `true` only then.
pub fn quiet(fd: RawFd) -> Quiet {
    Quiet { fd, ticket: None }
}

/// The future of one check (see `quiet`).
pub struct Quiet {
    fd: RawFd,
    ticket: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Waiting,
    Done(bool),
}

struct Slot {
    fd: RawFd,
    state: State,
    waker: Option<Waker>,
}

/// This worker's checks. Wakers are only ever woken or dropped outside the `RefCell`'s
/// borrow, so a task torn down by a wake cannot find the batch borrowed.
struct Batch {
    inner: RefCell<Inner>,
    /// The checker task's waker while it waits for work.
    checker: Cell<Option<Waker>>,
    /// A checker task exists on this thread.
    spawned: Cell<bool>,
    /// The checker has been woken (or spawned) for the waiting sockets.
    scheduled: Cell<bool>,
}

/// Every slot ever used, the free ones, the ones waiting for the poll.
struct Inner {
    slots: Vec<Slot>,
    free: Vec<usize>,
    waiting: Vec<usize>,
    pollfds: Vec<libc::pollfd>,
    /// The askers to wake after a poll (kept to reuse its allocation).
    woken: Vec<Waker>,
    /// `poll` calls made so far (for the tests: a batch is one call).
    polls: u64,
}

thread_local! {
    static BATCH: Batch = const {
        Batch {
            inner: RefCell::new(Inner {
                slots: Vec::new(),
                free: Vec::new(),
                waiting: Vec::new(),
                pollfds: Vec::new(),
                woken: Vec::new(),
                polls: 0,
            }),
            checker: Cell::new(None),
            spawned: Cell::new(false),
            scheduled: Cell::new(false),
        }
    };
}

impl Batch {
    /// Makes sure a checker will run for the sockets registered so far.
    fn schedule(&self) {
        if self.scheduled.replace(true) {
            return;
        }
        if let Some(w) = self.checker.take() {
            // A checker left by a runtime that has ended may be torn down by this wake; its
            // guard then clears `spawned`, and a new one is started below.
            w.wake();
        }
        if !self.spawned.get() {
            self.spawned.set(true);
            self.scheduled.set(true);
            monoio::spawn(checker());
        }
    }
}

impl Inner {
    fn register(&mut self, fd: RawFd, waker: Waker) -> usize {
        let slot = Slot {
            fd,
            state: State::Waiting,
            waker: Some(waker),
        };
        let t = match self.free.pop() {
            Some(t) => {
                self.slots[t] = slot;
                t
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.waiting.push(t);
        t
    }

    /// Frees slot `t`, handing back its waker to be dropped outside the borrow.
    fn release(&mut self, t: usize) -> Option<Waker> {
        if self.slots[t].state == State::Waiting {
            self.waiting.retain(|&w| w != t);
        }
        self.slots[t].state = State::Free;
        self.free.push(t);
        self.slots[t].waker.take()
    }

    /// One `poll` over every waiting socket; each asker gets its answer, and its waker moves
    /// to `woken`.
    fn run(&mut self) {
        self.pollfds.clear();
        for &t in &self.waiting {
            self.pollfds.push(libc::pollfd {
                fd: self.slots[t].fd,
                events: EVENTS,
                revents: 0,
            });
        }
        // SAFETY: `pollfds` holds `len` initialised entries for sockets whose owners are
        // waiting on this batch (they unregister before closing); a zero timeout never blocks.
        let n = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                0,
            )
        };
        self.polls += 1;
        // A failed poll (EINTR cannot happen with a zero timeout) counts as "not quiet": the
        // connections are dropped, never reused on a guess.
        for (i, &t) in self.waiting.iter().enumerate() {
            let quiet = n >= 0 && self.pollfds[i].revents == 0;
            let slot = &mut self.slots[t];
            slot.state = State::Done(quiet);
            if let Some(w) = slot.waker.take() {
                self.woken.push(w);
            }
        }
        self.waiting.clear();
    }
}

/// This thread's checker: runs one batch each time it is woken.
async fn checker() {
    let _guard = CheckerGuard;
    std::future::poll_fn(|cx| {
        BATCH.with(|b| {
            let mut woken = {
                let mut inner = b.inner.borrow_mut();
                if !inner.waiting.is_empty() {
                    inner.run();
                }
                std::mem::take(&mut inner.woken)
            };
            b.scheduled.set(false);
            b.checker.set(Some(cx.waker().clone()));
            for w in woken.drain(..) {
                w.wake();
            }
            // Back for the next batch, with its capacity (nothing ran in between to refill it).
            b.inner.borrow_mut().woken = woken;
        });
        Poll::<()>::Pending
    })
    .await
}

/// Lets a new checker be spawned if this one's task is dropped (its runtime ended).
struct CheckerGuard;

impl Drop for CheckerGuard {
    fn drop(&mut self) {
        let _ = BATCH.try_with(|b| {
            b.spawned.set(false);
            b.scheduled.set(false);
            drop(b.checker.take());
        });
    }
}

impl Future for Quiet {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        BATCH.with(|b| {
            let Some(t) = self.ticket else {
                let t = b.inner.borrow_mut().register(self.fd, cx.waker().clone());
                self.ticket = Some(t);
                b.schedule();
                return Poll::Pending;
            };
            let mut inner = b.inner.borrow_mut();
            match inner.slots[t].state {
                State::Done(quiet) => {
                    let old = inner.release(t);
                    drop(inner);
                    drop(old);
                    self.ticket = None;
                    Poll::Ready(quiet)
                }
                _ => {
                    let slot = &mut inner.slots[t];
                    if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        let old = slot.waker.replace(cx.waker().clone());
                        drop(inner);
                        drop(old);
                    }
                    Poll::Pending
                }
            }
        })
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let Some(t) = self.ticket else {
            return;
        };
        // `try_with`: a thread tearing down its locals drops nothing that could still be polled.
        let _ = BATCH.try_with(|b| {
            let old = b.inner.borrow_mut().release(t);
            drop(old);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn rt() -> monoio::Runtime<monoio::LegacyDriver> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
    }

    /// Three checks started in one turn: one quiet socket, one holding a byte, one whose peer
    /// closed. Each gets its own answer, from one poll.
    #[test]
    fn one_batch_answers_each_socket() {
        let (quiet_a, _quiet_b) = pair();
        let (data_a, mut data_b) = pair();
        let (eof_a, eof_b) = pair();
        data_b.write_all(b"x").unwrap();
        drop(eof_b);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = BATCH.with(|b| b.inner.borrow().polls);
        let got = rt().block_on(async {
            let q = monoio::spawn(quiet(quiet_a.as_raw_fd()));
            let d = monoio::spawn(quiet(data_a.as_raw_fd()));
            let e = monoio::spawn(quiet(eof_a.as_raw_fd()));
            (q.await, d.await, e.await)
        });
        assert_eq!(got, (true, false, false));
        assert_eq!(
            BATCH.with(|b| b.inner.borrow().polls) - before,
            1,
            "one poll for the three"
        );
    }

    /// An asker dropped before the checker ran is taken out of the batch: the other asker
    /// still gets its answer, and every slot is free afterwards.
    #[test]
    fn a_dropped_asker_leaves_the_batch() {
        let (a, _a2) = pair();
        let (b, mut b2) = pair();
        b2.write_all(b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let got = rt().block_on(async {
            let mut first = Box::pin(quiet(a.as_raw_fd()));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(first.as_mut().poll(&mut cx).is_pending());
            let other = monoio::spawn(quiet(b.as_raw_fd()));
            drop(first);
            other.await
        });
        assert!(!got, "the other asker's socket holds a byte");
        BATCH.with(|b| {
            let b = b.inner.borrow();
            assert!(b.waiting.is_empty());
            assert_eq!(b.free.len(), b.slots.len());
        });
    }

    /// A thread that runs one runtime after another (a test harness, a restarted worker)
    /// still gets answers in the second.
    #[test]
    fn checks_work_in_a_later_runtime_on_the_same_thread() {
        let (a, _a2) = pair();
        assert!(rt().block_on(quiet(a.as_raw_fd())));
        let (b, mut b2) = pair();
        b2.write_all(b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!rt().block_on(quiet(b.as_raw_fd())));
        assert!(rt().block_on(quiet(a.as_raw_fd())));
    }
}
