//! The control thread: owns signal handling and config reloads.
//!
//! SIGHUP re-reads the config file, compiles it and, only if that succeeds, publishes it to the
//! workers with one atomic swap; on failure the errors are logged and the old generation keeps
//! serving. SIGTERM/SIGINT start a graceful drain (stop accepting, finish in-flight requests,
//! bounded by `server.drain_timeout`); a second SIGTERM/SIGINT exits at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config;
use crate::worker::Shared;

/// Registers the signals the control thread handles. Call before workers start so an early
/// SIGHUP cannot kill the process with the default action.
pub fn register_signals() -> std::io::Result<Signals> {
    Signals::new([SIGHUP, SIGTERM, SIGINT])
}

/// Reloads the config file; returns the new generation or the error text. Reloads are
/// serialized (SIGHUP and the admin API may ask at the same time).
pub fn reload(shared: &Shared, path: &Path) -> Result<u64, String> {
    let mut status = shared
        .reload_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let current = shared.config.load();
    let next = current.generation + 1;
    match config::load(path, next) {
        Ok(cfg) => {
            if cfg.listeners != current.listeners {
                crate::log::warn(
                    "listener changes take effect on restart; keeping the current listeners",
                );
            }
            let routes = cfg.routes.len();
            if cfg.admin != current.admin {
                crate::log::warn("admin listener changes take effect on restart");
            }
            shared.publish(cfg);
            status.loaded_at = crate::worker::unix_now();
            status.last_error = None;
            crate::log::info(&format!(
                "config reloaded from {}: generation {next}, {routes} routes",
                path.display()
            ));
            Ok(next)
        }
        Err(errs) => {
            let text = errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            for e in &errs {
                crate::log::error(&format!("reload rejected: {e}"));
            }
            crate::log::error(&format!(
                "reload failed; generation {} keeps serving",
                current.generation
            ));
            status.last_error = Some(text.clone());
            Err(text)
        }
    }
}

/// Runs the control loop until the workers have drained. Returns the process exit code.
pub fn run(
    shared: Arc<Shared>,
    config_path: PathBuf,
    mut signals: Signals,
    workers: Vec<std::thread::JoinHandle<()>>,
) -> i32 {
    let n = workers.len();
    let mut draining_since: Option<Instant> = None;
    loop {
        for sig in signals.pending() {
            match sig {
                SIGHUP => {
                    crate::log::info("SIGHUP: reloading config");
                    let _ = reload(&shared, &config_path);
                }
                SIGTERM | SIGINT => {
                    if draining_since.is_some() {
                        crate::log::warn("second stop signal: exiting now");
                        return 1;
                    }
                    let timeout = shared.config.load().drain_timeout;
                    crate::log::info(&format!(
                        "draining: no new connections, finishing in-flight requests (up to {}s)",
                        timeout.as_secs_f64()
                    ));
                    draining_since = Some(Instant::now());
                    shared.start_drain();
                }
                _ => {}
            }
        }
        if shared.workers_done.load(Ordering::SeqCst) >= n {
            break;
        }
        if let Some(t) = draining_since {
            // Workers enforce the drain timeout themselves; this is a backstop.
            if t.elapsed() > shared.config.load().drain_timeout + Duration::from_secs(5) {
                crate::log::warn("drain backstop reached: exiting");
                return 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for w in workers {
        let _ = w.join();
    }
    crate::log::info("all workers stopped; bye");
    0
}
