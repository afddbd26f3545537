//! Building a monoio runtime for one load or upstream thread: io_uring first, the legacy
//! epoll driver (with a warning) only when io_uring is unavailable or `RWLOAD_FORCE_EPOLL` is
//! set, so numbers are never silently measured on the wrong driver. Rings are set up with
//! COOP_TASKRUN and SINGLE_ISSUER (plain rings on kernels that refuse them);
//! `RWLOAD_URING_FLAGS=coop,single,defer|none` overrides that for experiments.

use std::future::Future;

/// Submission queue size: enough for thousands of connections with one op in flight each.
const RING_ENTRIES: u32 = 4096;

/// Which I/O driver a runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Legacy,
}

impl DriverKind {
    /// Name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Legacy => "epoll (legacy)",
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so thousands of connections do not
/// fail with EMFILE. Returns the limit now in force.
pub fn raise_fd_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the plain struct we pass; no other memory.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// io_uring setup flags used unless `RWLOAD_URING_FLAGS` says otherwise: cooperative task
/// running (completions are handled at the next kernel entry instead of by interrupting the
/// thread) and single issuer (only the owning thread submits). On this kernel COOP_TASKRUN made
/// the upstream serve 30-40% more requests per second under wrk than the default setup.
const DEFAULT_URING_FLAGS: &str = "coop,single";

/// Builds an io_uring builder from a comma-separated flag list: `coop` (COOP_TASKRUN),
/// `single` (SINGLE_ISSUER), `defer` (DEFER_TASKRUN, needs `single`), `none`.
fn uring_builder(flags: &str) -> Result<io_uring::Builder, String> {
    let mut urb = io_uring::IoUring::builder();
    for f in flags.split(',').map(str::trim) {
        match f {
            "coop" => {
                urb.setup_coop_taskrun();
            }
            "single" => {
                urb.setup_single_issuer();
            }
            "defer" => {
                urb.setup_defer_taskrun();
            }
            "none" | "" => {}
            other => {
                return Err(format!(
                    "unknown io_uring flag `{other}` in RWLOAD_URING_FLAGS"
                ))
            }
        }
    }
    Ok(urb)
}

fn build_uring(
    flags: &str,
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let urb = uring_builder(flags).map_err(std::io::Error::other)?;
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .uring_builder(urb)
        .with_entries(RING_ENTRIES)
        .enable_timer()
        .build()
}

/// Runs the future produced by `make` to completion on a fresh runtime of the current thread.
/// `make` receives the driver that was chosen.
pub fn block_on<F, M>(thread: &str, make: M) -> Result<F::Output, String>
where
    M: FnOnce(DriverKind) -> F,
    F: Future,
{
    let forced = std::env::var_os("RWLOAD_FORCE_EPOLL").is_some();
    let uring = if forced {
        Err(std::io::Error::other("RWLOAD_FORCE_EPOLL is set"))
    } else {
        match std::env::var("RWLOAD_URING_FLAGS") {
            Ok(flags) => build_uring(&flags),
            // Older kernels reject the setup flags: fall back to a plain ring.
            Err(_) => build_uring(DEFAULT_URING_FLAGS).or_else(|_| build_uring("none")),
        }
    };
    match uring {
        Ok(mut rt) => Ok(rt.block_on(make(DriverKind::IoUring))),
        Err(e) => {
            if !forced {
                eprintln!(
                    "rwload: {thread}: io_uring unavailable ({e}); using the legacy epoll driver"
                );
            }
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .map_err(|e| format!("{thread}: cannot build a runtime: {e}"))?;
            Ok(rt.block_on(make(DriverKind::Legacy)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uring_flag_lists() {
        assert!(uring_builder("coop,single").is_ok());
        assert!(uring_builder("none").is_ok());
        assert!(uring_builder("").is_ok());
        assert!(uring_builder("turbo").is_err());
    }
}
