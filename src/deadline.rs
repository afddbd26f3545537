//! Deadlines for operations that nearly always finish first (socket reads and writes, the
//! upstream exchange, the keep-alive read's grace).
//!
//! A monoio `Sleep` puts a 640-byte entry into the runtime's timer wheel when first polled and
//! takes it out on drop: about 300 instructions for a deadline that, on the fast path, never
//! fires. A [`Deadline`] instead lists its waker in this thread's table of pending deadlines
//! (one slot taken, one given back) and arms a real `Sleep` only when the worker's tick finds it
//! due before the tick after next. So an operation that ends within a tick costs a slot, and
//! one that waits longer still fires at its deadline, to monoio's millisecond.
//!
//! The tick runs while a worker's [`Ticks`] guard lives. A thread without one (tests, helper
//! runtimes) arms every deadline at once, as a plain `Sleep` would.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the tick looks at the pending deadlines. Shorter than the shortest deadline the
/// fast path sets (the 50 ms client watch of an upstream exchange), so that one is listed too.
const TICK: Duration = Duration::from_millis(25);
/// How late a tick may run before a listed deadline could fire late.
const SLACK: Duration = Duration::from_millis(15);
/// Quiet ticks (nothing listed, nothing pending) before the tick parks: a second, so a worker
/// serving a request now and then keeps listing its deadlines instead of arming a timer (a
/// boxed `Sleep`) for each.
const PARK_AFTER: u32 = 40;
/// Slots an empty table keeps; a larger one (a burst of connections going quiet together) is
/// freed once every slot is free again.
const KEEP_SLOTS: usize = 256;

struct Slot {
    /// `None` marks a free slot.
    waker: Option<Waker>,
    at: Instant,
    /// The tick run that listed it: a later runtime on the thread never wakes an earlier
    /// runtime's (leaked) tasks.
    run: u32,
    /// Fires at the first tick at or after `at` instead of arming a timer (see [`coarse`]).
    coarse: bool,
}

struct Thread {
    /// A deadline at or before this instant arms its `Sleep` now. `None` while no tick runs
    /// (or it is parked): every deadline arms at once.
    arm_before: Cell<Option<Instant>>,
    /// When the tick last ran (or resumed): a coarse deadline at or before it has passed.
    ticked: Cell<Option<Instant>>,
    /// The parked tick's waker: the first deadline armed while it sleeps wakes it.
    parked: RefCell<Option<Waker>>,
    /// A deadline was listed since the last tick.
    busy: Cell<bool>,
    /// Counts the tick runs started on this thread.
    run: Cell<u32>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
}

thread_local! {
    static THREAD: Thread = const {
        Thread {
            arm_before: Cell::new(None),
            ticked: Cell::new(None),
            parked: RefCell::new(None),
            busy: Cell::new(false),
            run: Cell::new(0),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        }
    };
}

/// Keeps the tick running on this thread's runtime; dropping it stops the tick, and every later
/// deadline on the thread arms its `Sleep` at once.
pub struct Ticks {
    stop: Rc<Cell<bool>>,
    run: u32,
}

/// Starts the tick on the current monoio runtime (a worker's): call once, keep the guard for
/// as long as the runtime runs. The tick parks after a second in which nothing was listed, so
/// an idle worker is not woken for it.
pub fn start_ticks() -> Ticks {
    let stop = Rc::new(Cell::new(false));
    let run = THREAD.with(|t| {
        let now = Instant::now();
        t.run.set(t.run.get().wrapping_add(1));
        t.ticked.set(Some(now));
        t.arm_before.set(Some(now + TICK + SLACK));
        t.run.get()
    });
    let stopped = stop.clone();
    monoio::spawn(async move {
        let mut quiet = 0u32;
        loop {
            monoio::time::sleep(TICK).await;
            if stopped.get() {
                return;
            }
            if tick(Instant::now(), run) {
                quiet = 0;
                continue;
            }
            quiet += 1;
            if quiet < PARK_AFTER {
                continue;
            }
            quiet = 0;
            // Nothing listed for PARK_AFTER ticks and nothing pending: sleep until a deadline
            // is armed without us (it wakes this task), then tick again.
            THREAD.with(|t| t.arm_before.set(None));
            let mut parked = false;
            std::future::poll_fn(|cx| {
                if parked {
                    return Poll::Ready(());
                }
                parked = true;
                THREAD.with(|t| *t.parked.borrow_mut() = Some(cx.waker().clone()));
                Poll::Pending
            })
            .await;
            if stopped.get() {
                return;
            }
            THREAD.with(|t| {
                let now = Instant::now();
                t.ticked.set(Some(now));
                t.arm_before.set(Some(now + TICK + SLACK));
            });
        }
    });
    Ticks { stop, run }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        self.stop.set(true);
        let _ = THREAD.try_with(|t| {
            t.arm_before.set(None);
            if let Some(w) = t.parked.borrow_mut().take() {
                w.wake();
            }
            // Listed deadlines arm their own `Sleep` when next polled.
            if let Ok(slots) = t.slots.try_borrow() {
                for s in slots.iter().filter(|s| s.run == self.run) {
                    if let Some(w) = &s.waker {
                        w.wake_by_ref();
                    }
                }
            }
        });
    }
}

/// Moves the horizon one tick on and wakes every listed deadline now inside it, so each arms
/// its `Sleep` before it is due, and every coarse one now passed. False when the tick can
/// park: nothing was listed since the last tick and nothing is pending.
fn tick(now: Instant, run: u32) -> bool {
    let horizon = now + TICK + SLACK;
    THREAD.with(|t| {
        t.ticked.set(Some(now));
        t.arm_before.set(Some(horizon));
        let (mut pending, mut live) = (false, false);
        for s in t.slots.borrow().iter() {
            if let Some(w) = &s.waker {
                live = true;
                if s.run == run {
                    pending = true;
                    if s.at <= if s.coarse { now } else { horizon } {
                        w.wake_by_ref();
                    }
                }
            }
        }
        if !live {
            // Every slot is free: start over, and give a burst's table back.
            let (mut slots, mut free) = (t.slots.borrow_mut(), t.free.borrow_mut());
            slots.clear();
            free.clear();
            if slots.capacity() > KEEP_SLOTS {
                *slots = Vec::new();
                *free = Vec::new();
            }
        }
        t.busy.replace(false) || pending
    })
}

fn list(t: &Thread, at: Instant, coarse: bool, waker: &Waker) -> u32 {
    t.busy.set(true);
    let slot = Slot {
        waker: Some(waker.clone()),
        at,
        run: t.run.get(),
        coarse,
    };
    let mut slots = t.slots.borrow_mut();
    match t.free.borrow_mut().pop() {
        Some(i) => {
            slots[i as usize] = slot;
            i
        }
        None => {
            slots.push(slot);
            (slots.len() - 1) as u32
        }
    }
}

fn unlist(i: u32) {
    let _ = THREAD.try_with(|t| {
        if let Some(s) = t.slots.borrow_mut().get_mut(i as usize) {
            s.waker = None;
            t.free.borrow_mut().push(i);
        }
    });
}

enum State {
    Fresh,
    Listed(u32),
    Armed(Pin<Box<monoio::time::Sleep>>),
}

/// Completes at `at` (like `monoio::time::sleep_until`), cheaply while it is far off.
pub struct Deadline {
    at: Instant,
    coarse: bool,
    state: State,
}

/// A deadline at `at`.
pub fn at(at: Instant) -> Deadline {
    Deadline {
        at,
        coarse: false,
        state: State::Fresh,
    }
}

/// A deadline that completes at the first tick at or after `at` (up to one tick, 25 ms, late)
/// and never arms a timer while the tick runs: for waits whose end only needs to be roughly
/// on time, such as the grace after which a quiet keep-alive connection gives back its read
/// buffer. Thousands of connections going quiet together then allocate no timers at all.
pub fn coarse(at: Instant) -> Deadline {
    Deadline {
        at,
        coarse: true,
        state: State::Fresh,
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let State::Armed(s) = &mut this.state {
            return s.as_mut().poll(cx);
        }
        let listed = THREAD.with(|t| {
            let horizon = t.arm_before.get();
            if this.coarse && horizon.is_some() && t.ticked.get().is_some_and(|n| this.at <= n) {
                return None;
            }
            if horizon.is_some_and(|h| this.at > h || this.coarse) {
                match this.state {
                    State::Listed(i) => {
                        if let Some(Slot { waker: Some(w), .. }) =
                            t.slots.borrow_mut().get_mut(i as usize)
                        {
                            if !w.will_wake(cx.waker()) {
                                *w = cx.waker().clone();
                            }
                        }
                    }
                    _ => {
                        let i = list(t, this.at, this.coarse, cx.waker());
                        this.state = State::Listed(i);
                    }
                }
                return Some(true);
            }
            if horizon.is_none() {
                if let Some(w) = t.parked.borrow_mut().take() {
                    w.wake();
                }
            }
            Some(false)
        });
        if listed == Some(true) {
            return Poll::Pending;
        }
        if let State::Listed(i) = this.state {
            unlist(i);
            this.state = State::Fresh;
        }
        if listed.is_none() {
            return Poll::Ready(());
        }
        let mut s = Box::pin(monoio::time::sleep_until(this.at.into()));
        let r = s.as_mut().poll(cx);
        this.state = State::Armed(s);
        r
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let State::Listed(i) = self.state {
            unlist(i);
        }
    }
}

/// `fut` ended by `at`: `Err(Elapsed)` if the deadline came first (and `fut` was dropped).
pub fn within<F: Future>(at: Instant, fut: F) -> Within<F> {
    Within {
        fut,
        deadline: self::at(at),
    }
}

/// The future of [`within`]: a struct rather than an `async fn`, so the operation's future is
/// moved into it once instead of again when first polled.
pub struct Within<F> {
    fut: F,
    deadline: Deadline,
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: only `fut` is pinned structurally, and `Within` never moves it out (no `Drop`
        // of its own, no method hands it out); `Within` is `Unpin` only when `F` is.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `this` stays pinned, so its `fut` does too (see above).
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        if let Poll::Ready(v) = fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(&mut this.deadline).poll(cx).map(|()| Err(Elapsed))
    }
}

/// The deadline of [`within`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Pending deadlines listed on this thread (for tests).
pub fn listed() -> usize {
    THREAD.with(|t| {
        t.slots
            .borrow()
            .iter()
            .filter(|s| s.waker.is_some())
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    /// `fut`, failing the test (instead of hanging it) if it has not ended within 3 s.
    async fn bounded<F: Future>(fut: F) -> F::Output {
        monoio::time::timeout(Duration::from_secs(3), fut)
            .await
            .expect("the deadline never fired")
    }

    /// Asserts a wait that was due after `due` ended no earlier, and not grossly later (the
    /// bound leaves room for a loaded test machine; it catches a deadline never armed).
    fn assert_ended_after(took: Duration, due: Duration, room: Duration) {
        assert!(
            took >= due && took < due + room,
            "a wait due after {due:?} ended after {took:?}"
        );
    }

    /// Waits on a deadline `ms` from now with nothing to race it; how long that took.
    async fn lone_deadline(ms: u64) -> Duration {
        let start = Instant::now();
        let r = bounded(within(
            start + Duration::from_millis(ms),
            std::future::pending::<()>(),
        ))
        .await;
        assert_eq!(r, Err(Elapsed));
        start.elapsed()
    }

    /// Runs `f` as a spawned task, as a connection runs: `block_on` polls its own future on
    /// every turn of the loop, which would re-poll a listed deadline the tick never woke.
    fn run<F: Future<Output = ()> + 'static>(f: F) {
        rt().block_on(async { monoio::spawn(f).await });
    }

    /// A far deadline costs a slot, not a timer, and gives it back when the operation wins.
    #[test]
    fn a_far_deadline_is_listed_and_unlisted_when_the_operation_wins() {
        run(async {
            let _ticks = start_ticks();
            let before = listed();
            let r = within(Instant::now() + Duration::from_secs(5), async {
                monoio::time::sleep(Duration::from_millis(5)).await;
                7
            })
            .await;
            assert_eq!(r, Ok(7));
            assert_eq!(listed(), before);
        });
    }

    /// A far deadline still fires, never early: the tick arms it before it is due. (The upper
    /// bounds leave room for a loaded test machine; they catch a deadline that is never armed.)
    #[test]
    fn a_listed_deadline_fires_at_its_time() {
        run(async {
            let _ticks = start_ticks();
            let start = Instant::now();
            let waits = [30u64, 180, 420].map(|ms| {
                monoio::spawn(async move {
                    let at = start + Duration::from_millis(ms);
                    let r = bounded(within(at, std::future::pending::<()>())).await;
                    (ms, r, start.elapsed())
                })
            });
            monoio::time::sleep(Duration::from_millis(2)).await;
            assert_eq!(
                listed(),
                2,
                "the two far deadlines should be listed, not armed"
            );
            for w in waits {
                let (ms, r, took) = w.await;
                assert_eq!(r, Err(Elapsed));
                assert_ended_after(took, Duration::from_millis(ms), Duration::from_millis(250));
            }
            assert_eq!(listed(), 0);
        });
    }

    /// A coarse deadline ends at the first tick at or after it, never before it, and arms no
    /// timer on the way: it stays listed until then.
    #[test]
    fn a_coarse_deadline_ends_at_a_tick_without_a_timer() {
        run(async {
            let _ticks = start_ticks();
            let start = Instant::now();
            let end = start + Duration::from_millis(10);
            let wait = monoio::spawn(async move {
                bounded(coarse(end)).await;
                start.elapsed()
            });
            monoio::time::sleep(Duration::from_millis(2)).await;
            assert_eq!(
                listed(),
                1,
                "a coarse deadline should be listed even when near"
            );
            let took = wait.await;
            assert_ended_after(took, Duration::from_millis(10), TICK * 10);
            assert_eq!(listed(), 0);
        });
    }

    /// An idle worker's tick parks; the next deadline wakes it, and later far deadlines are
    /// listed again and still fire on time.
    #[test]
    fn an_idle_tick_parks_and_the_next_deadline_wakes_it() {
        run(async {
            let _ticks = start_ticks();
            // It parks after PARK_AFTER quiet ticks; a loaded machine may stretch them.
            monoio::time::sleep(TICK * PARK_AFTER).await;
            let mut waited = Duration::ZERO;
            while THREAD.with(|t| t.arm_before.get().is_some()) {
                assert!(waited < Duration::from_secs(5), "the tick did not park");
                monoio::time::sleep(TICK).await;
                waited += TICK;
            }
            assert_ended_after(
                lone_deadline(5).await,
                Duration::from_millis(5),
                Duration::from_millis(250),
            );
            assert!(
                THREAD.with(|t| t.arm_before.get().is_some()),
                "the tick did not resume"
            );
            let start = Instant::now();
            let far = within(
                start + Duration::from_millis(200),
                std::future::pending::<()>(),
            );
            let mut far = std::pin::pin!(far);
            let polled = std::future::poll_fn(|cx| Poll::Ready(far.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            assert_eq!(listed(), 1, "a far deadline should be listed, not armed");
            assert_eq!(bounded(far).await, Err(Elapsed));
            let took = start.elapsed();
            assert_ended_after(took, Duration::from_millis(200), Duration::from_millis(250));
            assert_eq!(listed(), 0);
        });
    }

    /// Without a tick on the thread (the guard dropped, or a later runtime), a deadline arms its
    /// timer at once instead of waiting for a tick that never comes.
    #[test]
    fn without_a_tick_a_deadline_still_fires() {
        rt().block_on(async {
            drop(start_ticks());
        });
        run(async {
            assert_ended_after(
                lone_deadline(300).await,
                Duration::from_millis(300),
                Duration::from_millis(250),
            );
        });
    }
}
