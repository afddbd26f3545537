//! Sub-millisecond sleeps for the open-loop schedule. monoio's timer wheel ticks every
//! millisecond, so at 50k req/s it would release each millisecond's 50 requests as one burst
//! and the server would be measured under bursts the schedule never asked for. The pacer keeps
//! one heap of wake-up times per load thread and arms a single timerfd (absolute
//! CLOCK_MONOTONIC, nanoseconds) for the earliest; one task reads the timerfd through io_uring
//! and wakes every sleeper that is due.
//!
//! Invariants: each slot (connection) has at most one sleep pending; a heap entry whose
//! generation no longer matches its slot is stale and ignored. If the timerfd fails, the pacer
//! marks itself broken, wakes everyone and sleepers fall back to monoio's timer.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// One sleeper's state.
#[derive(Default)]
struct Sleeper {
    generation: Cell<u64>,
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// See the module header.
pub struct Pacer {
    file: monoio::fs::File,
    fd: RawFd,
    /// An `Instant` and the CLOCK_MONOTONIC reading taken at the same moment, to convert one
    /// into the other.
    base: (Instant, Duration),
    heap: RefCell<BinaryHeap<Reverse<(Instant, usize, u64)>>>,
    sleepers: Vec<Sleeper>,
    /// When the timerfd is set to fire, if it is.
    armed: Cell<Option<Instant>>,
    broken: Cell<bool>,
    stopped: Cell<bool>,
}

fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live local we pass.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Pacer {
    /// A pacer for `slots` sleepers. Must be created inside an io_uring monoio runtime (the
    /// timerfd is read with io_uring; on the legacy driver that read would block the thread).
    pub fn new(slots: usize) -> std::io::Result<Rc<Pacer>> {
        // SAFETY: timerfd_create has no memory arguments; the result is checked below.
        // Blocking mode: io_uring then waits for readiness instead of returning EAGAIN.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns; the File takes
        // ownership and closes it.
        let std_file = unsafe { std::fs::File::from_raw_fd(fd) };
        let file = monoio::fs::File::from_std(std_file)?;
        Ok(Rc::new(Pacer {
            fd: file.as_raw_fd(),
            file,
            base: (Instant::now(), monotonic_now()),
            heap: RefCell::new(BinaryHeap::new()),
            sleepers: (0..slots).map(|_| Sleeper::default()).collect(),
            armed: Cell::new(None),
            broken: Cell::new(false),
            stopped: Cell::new(false),
        }))
    }

    /// Sets the timerfd to fire at `t`.
    fn arm(&self, t: Instant) {
        let mono = match t.checked_duration_since(self.base.0) {
            Some(d) => self.base.1 + d,
            // Before the base: already due; fire as soon as possible.
            None => self.base.1,
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: mono.as_secs() as libc::time_t,
                tv_nsec: mono.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `self.fd` is the open timerfd owned by `self.file`; `spec` is a valid
        // itimerspec on the stack and the old-value pointer may be null.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd,
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc == 0 {
            self.armed.set(Some(t));
        } else {
            self.break_down();
        }
    }

    /// Gives up on the timerfd: wakes every sleeper; later sleeps use monoio's timer.
    fn break_down(&self) {
        self.broken.set(true);
        self.heap.borrow_mut().clear();
        for s in &self.sleepers {
            s.fired.set(true);
            if let Some(w) = s.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Sleeps until `t` (slot = the caller's connection index).
    pub async fn sleep_until(&self, slot: usize, t: Instant) {
        let Some(sleeper) = self.sleepers.get(slot) else {
            return monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
        };
        if self.broken.get() {
            return monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
        }
        if Instant::now() >= t {
            return;
        }
        let generation = sleeper.generation.get() + 1;
        sleeper.generation.set(generation);
        sleeper.fired.set(false);
        self.heap.borrow_mut().push(Reverse((t, slot, generation)));
        if self.armed.get().is_none_or(|a| t < a) {
            self.arm(t);
        }
        poll_fn(|cx| {
            if sleeper.fired.get() {
                Poll::Ready(())
            } else {
                *sleeper.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    /// Makes `run` return soon.
    pub fn stop(&self) {
        self.stopped.set(true);
        // Fire now so the pending timerfd read completes.
        self.arm(self.base.0);
    }

    /// The task that reads the timerfd and wakes due sleepers; runs until `stop`.
    pub async fn run(self: Rc<Self>) {
        let mut buf = vec![0u8; 8];
        while !self.stopped.get() && !self.broken.get() {
            let (res, b) = self.file.read_at(buf, 0).await;
            buf = b;
            match res {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.break_down();
                    return;
                }
            }
            self.armed.set(None);
            let now = Instant::now();
            let mut heap = self.heap.borrow_mut();
            while let Some(&Reverse((t, slot, generation))) = heap.peek() {
                if t > now {
                    break;
                }
                heap.pop();
                if let Some(s) = self.sleepers.get(slot) {
                    if s.generation.get() == generation {
                        s.fired.set(true);
                        if let Some(w) = s.waker.borrow_mut().take() {
                            w.wake();
                        }
                    }
                }
            }
            let next = heap.peek().map(|r| r.0 .0);
            drop(heap);
            if let Some(t) = next {
                self.arm(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{block_on, DriverKind};

    /// The pacer needs io_uring: without it a test cannot run. Says why, and fails in CI
    /// (env `CI` set), where io_uring must be available.
    fn no_io_uring(test: &str) {
        let why = format!("{test}: io_uring unavailable, the pacer needs it");
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false") {
            panic!("{why} (CI is set: this is a failure, not a skip)");
        }
        eprintln!("SKIPPED: {why}");
    }

    #[test]
    fn sleeps_never_wake_early() {
        let elapsed = block_on("pacer test", |driver| async move {
            if driver != DriverKind::IoUring {
                return None;
            }
            let pacer = Pacer::new(2).expect("timerfd");
            let task = monoio::spawn(pacer.clone().run());
            let start = Instant::now();
            let mut t = start;
            for _ in 0..40 {
                t += Duration::from_micros(100);
                pacer.sleep_until(0, t).await;
                assert!(Instant::now() >= t, "woke early");
            }
            let elapsed = start.elapsed();
            pacer.stop();
            task.await;
            Some(elapsed)
        })
        .expect("runtime");
        match elapsed {
            // 40 sleeps of 100 us take ~4 ms when precise. The old bound (30 ms) was a wall-clock
            // performance check a loaded machine fails; 5x nominal (20 ms) could not separate a
            // precise timer from a 1 ms wheel either (absolute deadlines catch up), so the test
            // keeps what holds under any load: no early wake (asserted above) and every sleep
            // returns. The duration is printed for a human.
            Some(elapsed) => eprintln!("40 pacer sleeps of 100 us took {elapsed:?}"),
            None => no_io_uring("sleeps_never_wake_early"),
        }
    }

    #[test]
    fn concurrent_sleepers_wake_in_deadline_order() {
        let order = block_on("pacer test", |driver| async move {
            if driver != DriverKind::IoUring {
                return Vec::new();
            }
            let pacer = Pacer::new(3).expect("timerfd");
            let task = monoio::spawn(pacer.clone().run());
            let order = Rc::new(RefCell::new(Vec::new()));
            let now = Instant::now();
            let mut sleepers = Vec::new();
            // Deadlines 200 ms apart (not 1 ms): a loaded machine that stalls this thread for a
            // few milliseconds must not make them all due at once.
            for (slot, us) in [(0usize, 600_000u64), (1, 200_000), (2, 400_000)] {
                let (p, o) = (pacer.clone(), order.clone());
                sleepers.push(monoio::spawn(async move {
                    p.sleep_until(slot, now + Duration::from_micros(us)).await;
                    o.borrow_mut().push(slot);
                }));
            }
            for s in sleepers {
                s.await;
            }
            pacer.stop();
            task.await;
            let v = order.borrow().clone();
            v
        })
        .expect("runtime");
        if order.is_empty() {
            no_io_uring("concurrent_sleepers_wake_in_deadline_order");
        } else {
            assert_eq!(order, vec![1, 2, 0]);
        }
    }
}
