//! ringway command line: `ringway [--config FILE] [--workers N]` runs the gateway,
//! `ringway check --config FILE` validates a config (`--system`: plus kernel tuning advice), `ringway keys ...` manages API keys.
//! See README.md for exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringway::{admin, config, control, log, shared, sysinfo, worker};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = "config/ringway.toml";

/// Exit codes (documented in README.md).
const EXIT_CONFIG: u8 = 1;
const EXIT_STARTUP: u8 = 3;

#[derive(Parser)]
#[command(
    name = "ringway",
    version,
    about = "Thread-per-core io_uring API gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Config file (TOML).
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Worker threads (default: server.workers, or one per available core).
    #[arg(long, short)]
    workers: Option<usize>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (the default).
    Run,
    /// Validate a config file and print a summary; non-zero exit on error.
    Check {
        /// Also compare the kernel's network and file limits with what this config needs
        /// (advice only: warnings do not change the exit code).
        #[arg(long)]
        system: bool,
    },
    /// Manage API keys in the keys file named by the config's `[api_keys]` (reload with SIGHUP).
    Keys {
        #[command(subcommand)]
        cmd: ringway::apikey::cli::KeysCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Check { system }) => check(&cli.config, system.then_some(cli.workers)),
        Some(Cmd::Keys { cmd }) => ringway::apikey::cli::run(&cmd, &cli.config),
        Some(Cmd::Run) | None => run(&cli.config, cli.workers),
    }
}

/// `system`: `Some(--workers flag)` when `--system` asks for kernel advice after the check.
fn check(path: &Path, system: Option<Option<usize>>) -> ExitCode {
    match config::load(path, 1) {
        Ok(cfg) => {
            print!("{}", config::summary::render(&cfg));
            println!("{}: OK", path.display());
            if let Some(flag) = system {
                let n = worker_count(&cfg, flag);
                let needs = sysinfo::needs(&cfg, n);
                println!(
                    "\nkernel settings for {n} workers, {} client connections, {} pooled upstream connections:",
                    needs.connections, needs.upstream_conns
                );
                print!(
                    "{}",
                    sysinfo::render(&sysinfo::advise(&needs, &sysinfo::read_system()))
                );
            }
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{}: {} error{}",
                path.display(),
                errs.len(),
                if errs.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Workers to run: the `--workers` flag, else `server.workers`, else one per available core.
fn worker_count(cfg: &config::Compiled, workers_flag: Option<usize>) -> usize {
    match workers_flag.filter(|&w| w > 0) {
        Some(w) => w,
        None if cfg.workers > 0 => cfg.workers,
        None => worker::allowed_cpus().len().max(1),
    }
}

fn run(path: &Path, workers_flag: Option<usize>) -> ExitCode {
    let runtime = config::Runtime::default();
    let cfg = match config::load_with(path, 1, &runtime) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs {
                log::error(&format!("config: {e}"));
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let cores = worker::allowed_cpus().len().max(1);
    let n = worker_count(&cfg, workers_flag);
    let listeners: Vec<String> = cfg
        .listeners
        .iter()
        .map(|l| {
            let scheme = if l.tls.is_some() { "https" } else { "http" };
            let also = match l.redirect_https {
                Some(port) => format!(", redirecting every request to https port {port}"),
                None => String::new(),
            };
            format!("{scheme}://{} ({}){also}", l.addr, l.name)
        })
        .collect();
    log::info(&format!(
        "ringway {} starting: config {} (generation 1, {} routes, {} upstreams), {n} workers on {cores} available cores",
        env!("CARGO_PKG_VERSION"),
        path.display(),
        cfg.routes.len(),
        cfg.upstreams.len(),
    ));
    worker::raise_fd_limit();
    let signals = match control::register_signals() {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!("cannot install signal handlers: {e}"));
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    let admin = match &cfg.admin {
        Some(a) => match admin::bind(a.addr) {
            Ok(l) => Some((l, a.addr)),
            Err(e) => {
                log::error(&format!("cannot listen on admin address {}: {e}", a.addr));
                return ExitCode::from(EXIT_STARTUP);
            }
        },
        None => None,
    };
    let shared = shared::Shared::new(cfg, n, runtime);
    if let Err(e) = control::prepare_sinks(&shared, &shared.config.load()) {
        log::error(&e);
        return ExitCode::from(EXIT_STARTUP);
    }
    let handles = match worker::spawn_workers(&shared, n) {
        Ok(h) => h,
        Err(e) => {
            log::error(&e.to_string());
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    if let Err(e) = ringway::upstream::checker::spawn(shared.clone()) {
        log::error(&format!("cannot start the health checker: {e}"));
        return ExitCode::from(EXIT_STARTUP);
    }
    for l in &listeners {
        log::info(&format!("listening on {l}"));
    }
    if let Err(e) = ringway::dns_refresh::spawn(shared.clone()) {
        log::warn(&format!(
            "cannot start the DNS refresh thread ({e}): host names stay as first resolved"
        ));
    }
    if let Some((listener, addr)) = admin {
        if let Err(e) = admin::spawn(shared.clone(), path.to_path_buf(), listener, n) {
            log::error(&format!("cannot start the admin thread: {e}"));
            return ExitCode::from(EXIT_STARTUP);
        }
        log::info(&format!(
            "admin API on http://{addr} (/health /ready /metrics /stats /config /routes /upstreams, POST /reload)"
        ));
    }
    log::info(&format!(
        "pid {}; SIGHUP reloads, SIGUSR1 reopens the access log, SIGTERM drains",
        std::process::id()
    ));
    let code = control::run(shared, path.to_path_buf(), signals, handles);
    ExitCode::from(code as u8)
}
