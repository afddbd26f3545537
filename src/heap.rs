//! The allocator's side of a worker (the process allocator is mimalloc, set in `main.rs`):
//! giving memory that a burst freed back to the OS once the worker has gone quiet.
//!
//! mimalloc returns free pages to the OS only after a purge delay and only from inside its own
//! calls; a worker that serves a burst and then only holds idle connections makes no calls,
//! so what the burst freed (request-path futures, read buffers) would stay resident for good.
//! `give_back` runs a forced collection on the calling thread's heap; the worker calls it once
//! per quiet period (`ConnRegistry::quiet_after_parking`), never on the request path.
//!
//! Transparent huge pages are turned off for the process (`configure`): mimalloc asks for them
//! on its arenas, and a 2 MiB page is resident as soon as one byte of it is touched, so a
//! gateway whose heap is tens of MiB paid 11 MiB more at start and 0.4 KiB more per idle
//! connection (loadtest/RESULTS.md). `MIMALLOC_ALLOW_THP` in the environment keeps
//! mimalloc's own choice.

// Links mimalloc even into binaries that do not install it as the global allocator (the lib's
// tests): `mi_collect` is then a no-op on an unused heap.
extern crate mimalloc as _;

extern "C" {
    /// mimalloc: collect the calling thread's heap; `force` also purges free pages at once.
    fn mi_collect(force: bool);
}

/// Runs `configure` before `main` (and before Rust's runtime allocates), as an ELF
/// constructor: by `main`, the first arena pages would already be faulted in as huge pages.
#[used]
#[link_section = ".init_array"]
static CONFIGURE_EARLY: extern "C" fn() = configure_early;

extern "C" fn configure_early() {
    configure();
}

/// Turns transparent huge pages off for this process (see the module header), unless
/// `MIMALLOC_ALLOW_THP` is set. Runs before `main` (`CONFIGURE_EARLY`); calling it again does
/// nothing new.
pub fn configure() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes no memory; a kernel
    // without it returns an error, which leaves things as they were.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Returns the calling thread's free allocator pages to the OS.
pub fn give_back() {
    // SAFETY: mi_collect takes no pointers and only touches the calling thread's heap and the
    // allocator's own bookkeeping; it is safe to call at any time from any thread.
    unsafe { mi_collect(true) }
}
