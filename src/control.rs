//! The control thread: owns signal handling and config reloads.
//!
//! SIGHUP re-reads the config file, compiles it and, only if that succeeds, publishes it to the
//! workers with one atomic swap; on failure the errors are logged and the old generation keeps
//! serving. SIGTERM/SIGINT start a graceful drain (stop accepting, finish in-flight requests,
//! bounded by `server.drain_timeout`); a second SIGTERM/SIGINT exits at once. SIGUSR1 reopens
//! the access log. SIGUSR2 upgrades the binary (see `handover.rs`): the successor inherits the
//! listening sockets and, once it reports that it accepts, this process drains and exits.
//!
//! With `NOTIFY_SOCKET` set (systemd `Type=notify`), the state changes are announced: `READY=1`
//! once every worker accepts, `RELOADING=1` then `READY=1` around a reload, `STOPPING=1` on a
//! drain, `MAINPID=` when a successor takes over.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::config;
use crate::shared::Shared;

/// Registers the signals the control thread handles. Call before workers start so an early
/// SIGHUP cannot kill the process with the default action.
pub fn register_signals() -> std::io::Result<Signals> {
    Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2])
}

/// Starts (or re-targets) the access-log writer and the span exporter a config asks for.
/// Runs before the config is published, so workers never see a config whose sinks are
/// missing; an access-log file that cannot be opened fails the load.
pub fn prepare_sinks(shared: &Shared, cfg: &config::Compiled) -> Result<(), String> {
    use crate::accesslog::{AccessLog, LogTarget};
    if let Some(a) = &cfg.telemetry.access_log {
        let target = match &a.path {
            Some(p) => {
                crate::accesslog::open_append(p)
                    .map_err(|e| format!("access_log.path {}: cannot open: {e}", p.display()))?;
                LogTarget::File(p.clone())
            }
            None => LogTarget::Stdout,
        };
        match shared.access_log.get() {
            Some(log) => log.set_target(target),
            None => {
                let log = AccessLog::start(target, ACCESS_LOG_QUEUE)
                    .map_err(|e| format!("cannot start the access log: {e}"))?;
                let _ = shared.access_log.set(log);
            }
        }
    }
    if let Some(o) = &cfg.telemetry.tracing.otlp {
        let otlp = crate::trace::OtlpConfig {
            endpoint: o.endpoint.clone(),
            service_name: o.service_name.clone(),
            batch_size: o.batch_size,
            flush_interval: o.flush_interval,
            timeout: o.timeout,
            queue: SPAN_QUEUE,
        };
        match shared.span_exporter.get() {
            Some(exp) => exp.set_config(otlp)?,
            None => {
                let exp = crate::trace::SpanExporter::start(otlp)
                    .map_err(|e| format!("cannot start the OTLP exporter: {e}"))?;
                let _ = shared.span_exporter.set(exp);
            }
        }
    }
    Ok(())
}

/// Batches of access-log lines that may wait for the writer before workers drop new ones.
const ACCESS_LOG_QUEUE: usize = 256;
/// Batches of spans that may wait for the exporter.
const SPAN_QUEUE: usize = 64;

/// Reloads the config file; returns the new generation or the error text. Reloads are
/// serialized (SIGHUP and the admin API may ask at the same time).
pub fn reload(shared: &Shared, path: &Path) -> Result<u64, String> {
    reload_from(shared, path, None)
}

/// Re-compiles the serving generation's own text (not the file on disk, which may hold an edit
/// nobody asked to load) because a host name's addresses changed. `Ok(None)`: nothing to do.
pub fn refresh_addresses(shared: &Shared) -> Result<u64, String> {
    recompile_current(shared, "upstream addresses changed")
}

/// Re-compiles the serving generation's own text because state it is built from changed
/// (`why` goes to the log): DNS answers, the API-key set synced from Redis.
pub fn recompile_current(shared: &Shared, why: &str) -> Result<u64, String> {
    let current = shared.config.load();
    let again = Again {
        text: current.source_text.clone(),
        files: current.source_files.clone(),
        why,
    };
    let path = current.source.clone();
    drop(current);
    reload_from(shared, &path, Some(again))
}

/// The serving generation's own text and files, compiled again, and why.
struct Again<'a> {
    text: Arc<str>,
    files: Arc<crate::bounded_file::FileSet>,
    why: &'a str,
}

fn reload_from(shared: &Shared, path: &Path, again: Option<Again<'_>>) -> Result<u64, String> {
    let mut status = shared
        .reload_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let current = shared.config.load();
    let next = current.generation + 1;
    let compiled = match &again {
        None => config::load_with(path, next, &shared.runtime),
        Some(a) => config::recompile(path, &a.text, Some(a.files.clone()), next, &shared.runtime),
    };
    let loaded = compiled.and_then(|cfg| match prepare_sinks(shared, &cfg) {
        Ok(()) => Ok(cfg),
        Err(message) => Err(vec![config::ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            field: String::new(),
            message,
        }]),
    });
    match loaded {
        Ok(cfg) => {
            if !config::same_listeners(&cfg.listeners, &current.listeners) {
                crate::log::warn(
                    "listener changes take effect on restart; keeping the current listeners",
                );
            }
            let routes = cfg.routes.len();
            if cfg.admin != current.admin {
                crate::log::warn("admin listener changes take effect on restart");
            }
            if cfg.run_as != current.run_as {
                crate::log::warn("server.user/group changes take effect on restart");
            }
            // Only a published config decides which limiters stay: a rejected reload must not
            // make the registry forget limiters the serving generation still uses.
            shared
                .runtime
                .limiters
                .retain(&cfg.policies.limiter_identities);
            shared
                .runtime
                .dns
                .retain(&config::upstreams::host_names(&cfg.upstreams));
            shared.publish(cfg);
            status.loaded_at = crate::civil::unix_now();
            shared.reloads_ok.fetch_add(1, Ordering::Relaxed);
            status.last_error = None;
            let what = match &again {
                Some(a) => format!("{}; config re-compiled", a.why),
                None => "config reloaded".to_string(),
            };
            crate::log::info(&format!(
                "{what} from {}: generation {next}, {routes} routes",
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
            shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
            Err(text)
        }
    }
}

/// What the control loop needs besides the shared state: the sockets to hand to a successor,
/// and, in a process started by an upgrade, the pipe to report readiness on.
pub struct Process {
    pub handover: crate::handover::Handover,
    pub ready_pipe: Option<std::os::fd::OwnedFd>,
}

/// The control loop's own state between signals.
struct Loop {
    n: usize,
    draining_since: Option<Instant>,
    announced: bool,
    /// SIGUSR2 arrived before every worker accepted: upgrade once they do.
    upgrade_wanted: bool,
    upgrade: Option<crate::handover::Pending>,
}

/// Runs the control loop until the workers have drained. Returns the process exit code.
pub fn run(
    shared: Arc<Shared>,
    config_path: PathBuf,
    mut signals: Signals,
    workers: Vec<std::thread::JoinHandle<()>>,
    mut process: Process,
) -> i32 {
    let mut st = Loop {
        n: workers.len(),
        draining_since: None,
        announced: false,
        upgrade_wanted: false,
        upgrade: None,
    };
    loop {
        if !st.announced && shared.workers_accepting.load(Ordering::SeqCst) >= st.n {
            st.announced = true;
            announce_ready(&mut process);
        }
        for sig in signals.pending() {
            if let Some(code) = on_signal(sig, &shared, &config_path, &mut st, &process) {
                return code;
            }
        }
        if st.upgrade_wanted && st.announced {
            st.upgrade_wanted = false;
            start_upgrade(&mut st, &process);
        }
        watch_upgrade(&shared, &mut st);
        if shared.workers_done.load(Ordering::SeqCst) >= st.n {
            break;
        }
        if let Some(t) = st.draining_since {
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
    // The last usage counts reach Redis before the process goes.
    crate::redis_sync::finish(&shared, Duration::from_secs(3));
    // Workers flushed their buffers on the way out; let the writer threads finish.
    if let Some(log) = shared.access_log.get() {
        log.flush_blocking(Duration::from_secs(2));
    }
    if let Some(exp) = shared.span_exporter.get() {
        exp.flush_blocking(Duration::from_secs(2));
    }
    crate::log::info("all workers stopped; bye");
    0
}

/// Handles one signal; `Some(code)` ends the process at once.
fn on_signal(sig: i32, shared: &Shared, path: &Path, st: &mut Loop, p: &Process) -> Option<i32> {
    match sig {
        SIGHUP => {
            crate::log::info("SIGHUP: reloading config");
            crate::notify::tell(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}",
                crate::notify::monotonic_usec()
            ));
            let status = match reload(shared, path) {
                Ok(g) => format!("serving generation {g}"),
                Err(_) => "reload failed; serving the previous generation".to_string(),
            };
            crate::notify::tell(&format!("READY=1\nSTATUS={status}"));
        }
        SIGUSR1 => match shared.access_log.get() {
            Some(log) => {
                crate::log::info("SIGUSR1: reopening the access log");
                log.reopen();
            }
            None => crate::log::info("SIGUSR1: no access log to reopen"),
        },
        SIGUSR2 => start_upgrade(st, p),
        SIGTERM | SIGINT => {
            if st.draining_since.is_some() {
                crate::log::warn("second stop signal: exiting now");
                return Some(1);
            }
            if let Some(mut successor) = st.upgrade.take() {
                crate::log::warn("stop signal during an upgrade: stopping the new process too");
                let _ = successor.child.kill();
                let _ = successor.child.wait();
            }
            crate::notify::tell("STOPPING=1");
            drain(shared, st);
        }
        _ => {}
    }
    None
}

fn drain(shared: &Shared, st: &mut Loop) {
    let timeout = shared.config.load().drain_timeout;
    crate::log::info(&format!(
        "draining: no new connections, finishing in-flight requests (up to {}s)",
        timeout.as_secs_f64()
    ));
    st.draining_since = Some(Instant::now());
    shared.start_drain();
}

/// Every worker accepts: tell the predecessor (after an upgrade) or the service manager.
fn announce_ready(p: &mut Process) {
    match p.ready_pipe.take() {
        Some(fd) => match crate::handover::report_ready(fd) {
            Ok(()) => crate::log::info("every worker accepts; told the old process to drain"),
            Err(e) => {
                crate::log::error(&format!("cannot report readiness to the old process: {e}"))
            }
        },
        None => crate::notify::tell("READY=1\nSTATUS=serving"),
    }
}

/// SIGUSR2: start the successor unless an upgrade or a drain is already under way.
fn start_upgrade(st: &mut Loop, p: &Process) {
    if st.upgrade.is_some() || st.draining_since.is_some() {
        crate::log::warn("SIGUSR2: an upgrade or a drain is already under way; ignored");
        return;
    }
    if !st.announced {
        crate::log::info("SIGUSR2: upgrading once every worker accepts");
        st.upgrade_wanted = true;
        return;
    }
    crate::log::info(&format!(
        "SIGUSR2: upgrading: starting {} with this process's listening sockets",
        p.handover.exe.display()
    ));
    match crate::handover::start(&p.handover) {
        Ok(pending) => {
            crate::log::info(&format!(
                "upgrade: new process {} started; waiting until it accepts",
                pending.child.id()
            ));
            st.upgrade = Some(pending);
        }
        Err(e) => crate::log::error(&format!("upgrade failed: {e}; this process keeps serving")),
    }
}

/// Drains once the successor serves; forgets a failed one (this process keeps serving).
fn watch_upgrade(shared: &Shared, st: &mut Loop) {
    use crate::handover::Progress;
    let Some(pending) = st.upgrade.as_mut() else {
        return;
    };
    match pending.progress() {
        Progress::Waiting => {}
        Progress::Ready(pid) => {
            st.upgrade = None;
            crate::log::info(&format!(
                "upgrade: new process {pid} is ready; this process stops accepting and drains"
            ));
            crate::notify::tell(&format!("MAINPID={pid}\nREADY=1\nSTATUS=upgraded"));
            shared.handed_over.store(true, Ordering::SeqCst);
            drain(shared, st);
        }
        Progress::Failed(why) => {
            st.upgrade = None;
            crate::log::error(&format!(
                "upgrade failed: {why}; this process keeps serving"
            ));
        }
    }
}
