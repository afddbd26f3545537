//! ringway command line: `ringway [--config FILE] [--workers N]` runs the gateway,
//! `ringway check --config FILE` validates a config (`--system`: plus kernel tuning advice), `ringway keys ...` manages API keys,
//! `ringway purge url|prefix|tag|all ...` purges the response cache through the admin API,
//! `ringway man` / `ringway completions SHELL` print the man page and shell completions.
//! See README.md for exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringway::{admin, config, control, handover, log, privileges, shared, sysinfo, worker};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = "config/ringway.toml";

/// Exit codes (documented in README.md).
const EXIT_CONFIG: u8 = 1;
const EXIT_STARTUP: u8 = 3;
/// A command-line argument is malformed (clap's own code for usage errors).
const EXIT_USAGE: u8 = 2;

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
    /// Manage API keys: the keys file named by `[api_keys]` (reload with SIGHUP), or the Redis
    /// key store with `store = "redis"` (every instance syncs within 2 s).
    Keys {
        #[command(subcommand)]
        cmd: ringway::apikey::cli::KeysCmd,
    },
    /// Export `[usage]` totals per day, consumer, route and status class from Redis.
    Usage {
        /// First day (YYYY-MM-DD, UTC).
        #[arg(long)]
        from: String,
        /// Last day (YYYY-MM-DD, UTC), included.
        #[arg(long)]
        to: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: UsageFormat,
    },
    /// Purge the response cache through the admin API (every worker; with `[redis]`, every
    /// instance). The admin address and token come from the config file unless given.
    Purge {
        #[command(subcommand)]
        what: PurgeWhat,
        /// Admin API address (default: `[admin] address` of --config).
        #[arg(long, global = true)]
        admin: Option<String>,
        /// Admin token (default: $RINGWAY_ADMIN_TOKEN, then `[admin] token` of --config).
        #[arg(long, global = true)]
        token: Option<String>,
    },
    /// Config file tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Print the ringway(8) man page (roff) on stdout.
    Man,
    /// Print a shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum UsageFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum PurgeWhat {
    /// One resource: `host/path?query` (every variant and consumer of it).
    Url { url: String },
    /// Every resource starting with `host/path-prefix`.
    Prefix { prefix: String },
    /// Every object the upstream tagged with this surrogate key.
    Tag { tag: String },
    /// Everything.
    All,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the config file's JSON Schema (for editors: Taplo, Even Better TOML).
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Check { system }) => check(&cli.config, system.then_some(cli.workers)),
        Some(Cmd::Keys { cmd }) => ringway::apikey::cli::run(&cmd, &cli.config),
        Some(Cmd::Usage { from, to, format }) => usage(&cli.config, &from, &to, format),
        Some(Cmd::Purge { what, admin, token }) => purge(&cli.config, &what, admin, token),
        Some(Cmd::Config {
            cmd: ConfigCmd::Schema,
        }) => write_out(&config::schema::json_schema()),
        Some(Cmd::Man) => man_page(),
        Some(Cmd::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "ringway", &mut script);
            write_out(&String::from_utf8_lossy(&script))
        }
        Some(Cmd::Run) | None => run(&cli.config, cli.workers),
    }
}

/// `ringway usage`: reads the config's `[redis]`, prints the totals of days `from..=to`.
fn usage(path: &Path, from: &str, to: &str, format: UsageFormat) -> ExitCode {
    use ringway::usage::export;
    let cfg = match config::load(path, 1) {
        Ok(c) => c,
        Err(errs) => {
            errs.iter().for_each(|e| eprintln!("error: {e}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(redis) = cfg.redis.clone() else {
        eprintln!(
            "error: {}: no [redis] table: usage is kept in Redis",
            path.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let (Some(a), Some(b)) = (export::parse_day(from), export::parse_day(to)) else {
        eprintln!("error: --from and --to take a date as YYYY-MM-DD");
        return ExitCode::from(EXIT_USAGE);
    };
    if b < a || b - a >= export::MAX_DAYS {
        eprintln!(
            "error: --to must not be before --from, nor {} days after",
            export::MAX_DAYS
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let client = ringway::redis::Client::new(redis.clone());
    // A day at a time, written as it comes: memory holds one day's cells, whatever the range.
    let streamed = ringway::redis::block_on(async {
        let json = matches!(format, UsageFormat::Json);
        let mut text = String::from(if json { "[" } else { export::CSV_HEADER });
        let mut first = true;
        for day in a..=b {
            let rows = export::read_day(&client, &redis, day).await.map_err(|e| {
                eprintln!("error: reading usage from Redis: {e:?}");
                ExitCode::from(EXIT_STARTUP)
            })?;
            if json {
                export::json_objects(&rows, &mut first, &mut text);
            } else {
                export::csv_rows(&rows, &mut text);
            }
            write_chunk(&text)?;
            text.clear();
        }
        if json {
            text.push_str("]\n");
        }
        write_chunk(&text)
    });
    match streamed {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// `write_out` for one piece of a longer output: `Err` with the exit code once reported.
fn write_chunk(text: &str) -> Result<(), ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            eprintln!("ringway: cannot write the output: {e}");
            ExitCode::from(EXIT_STARTUP)
        })
}

/// How long `ringway purge` waits for the admin API (connect, write, answer).
const PURGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `ringway purge`: `POST /cache/purge` on the admin API; prints its JSON answer.
fn purge(path: &Path, what: &PurgeWhat, admin: Option<String>, token: Option<String>) -> ExitCode {
    use std::io::{Read, Write};
    let body = {
        let mut b = Vec::new();
        let (key, value) = match what {
            PurgeWhat::Url { url } => ("url", Some(url)),
            PurgeWhat::Prefix { prefix } => ("prefix", Some(prefix)),
            PurgeWhat::Tag { tag } => ("tag", Some(tag)),
            PurgeWhat::All => ("all", None),
        };
        b.push(b'{');
        ringway::json::string_into(&mut b, key.as_bytes());
        b.push(b':');
        match value {
            Some(v) => ringway::json::string_into(&mut b, v.as_bytes()),
            None => b.extend_from_slice(b"true"),
        }
        b.push(b'}');
        b
    };
    let token = token.or_else(|| std::env::var("RINGWAY_ADMIN_TOKEN").ok());
    let (addr, token) = match (admin, token) {
        (Some(a), t) => (a, t),
        (None, t) => match config::load(path, 1) {
            Ok(cfg) => match &cfg.admin {
                Some(a) => (a.addr.to_string(), t.or_else(|| a.token.clone())),
                None => {
                    eprintln!(
                        "error: {}: no [admin] table; pass --admin ADDR",
                        path.display()
                    );
                    return ExitCode::from(EXIT_CONFIG);
                }
            },
            Err(errs) => {
                errs.iter().for_each(|e| eprintln!("error: {e}"));
                eprintln!("(or pass --admin ADDR to skip reading the config)");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
        eprintln!("error: --admin {addr:?}: expected IP:PORT");
        return ExitCode::from(EXIT_USAGE);
    };
    let mut req = format!(
        "POST /cache/purge HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(t) = &token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let mut answer = Vec::new();
    let sent = std::net::TcpStream::connect_timeout(&sock, PURGE_TIMEOUT).and_then(|mut s| {
        s.set_read_timeout(Some(PURGE_TIMEOUT))?;
        s.set_write_timeout(Some(PURGE_TIMEOUT))?;
        s.write_all(req.as_bytes())?;
        s.write_all(&body)?;
        s.read_to_end(&mut answer)
    });
    if let Err(e) = sent {
        eprintln!("error: admin API at {addr}: {e}");
        return ExitCode::from(EXIT_STARTUP);
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(0);
    let reply = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if status == 200 {
        write_out(&format!("{reply}\n"))
    } else {
        eprintln!("error: admin API answered {status}: {reply}");
        ExitCode::from(EXIT_CONFIG)
    }
}

/// `ringway man`: the man page, generated from the CLI definition plus a section on signals.
fn man_page() -> ExitCode {
    use clap::CommandFactory;
    let cmd = Cli::command().long_about(
        "Thread-per-core io_uring API gateway. Configuration: /etc/ringway/ringway.toml (TOML); \
         see README.md for every key.",
    );
    let man = clap_mangen::Man::new(cmd).section("8");
    let mut out = Vec::new();
    let rendered = man.render_title(&mut out).and_then(|()| {
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        man.render_options_section(&mut out)?;
        man.render_subcommands_section(&mut out)?;
        out.extend_from_slice(MAN_SIGNALS.as_bytes());
        man.render_version_section(&mut out)
    });
    match rendered.and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringway man: {e}");
            ExitCode::from(EXIT_STARTUP)
        }
    }
}

const MAN_SIGNALS: &str = r#".SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the configuration file; a configuration with errors is rejected and the running one keeps serving.
.TP
\fBSIGUSR1\fR
Reopen the access log (after log rotation).
.TP
\fBSIGUSR2\fR
Upgrade the binary without dropping connections: the program at the path ringway was started from takes over the listening sockets; once it accepts, the old process drains and exits.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Drain: stop accepting, finish in-flight requests within server.drain_timeout, exit. A second signal exits at once.
.SH FILES
.TP
\fI/etc/ringway/ringway.toml\fR
The configuration (package default).
.SH EXIT STATUS
0 after a drain, 1 for configuration errors, 3 when startup fails (address in use, handover or privilege errors).
"#;

/// Writes a command's whole output to stdout. A stdout that cannot take it (a full disk, a
/// closed pipe: `| head`) is reported on stderr with exit 3, not a panic and its backtrace.
fn write_out(text: &str) -> ExitCode {
    match write_chunk(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// `system`: `Some(--workers flag)` when `--system` asks for kernel advice after the check.
fn check(path: &Path, system: Option<Option<usize>>) -> ExitCode {
    match config::load(path, 1) {
        Ok(cfg) => {
            let mut text = config::summary::render(&cfg);
            text.push_str(&format!("{}: OK\n", path.display()));
            if let Some(flag) = system {
                let n = worker_count(&cfg, flag);
                let needs = sysinfo::needs(&cfg, n);
                text.push_str(&format!(
                    "\nkernel settings for {n} workers, {} client connections, {} pooled upstream connections:\n",
                    needs.connections, needs.upstream_conns
                ));
                text.push_str(&sysinfo::render(&sysinfo::advise(
                    &needs,
                    &sysinfo::read_system(),
                )));
            }
            write_out(&text)
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
    // Before anything else (and before any thread): sockets handed over by an upgrade.
    let mut inherited = match handover::Inherited::from_env() {
        Ok(i) => i,
        Err(e) => {
            log::error(&format!("upgrade handover: {e}"));
            return ExitCode::from(EXIT_STARTUP);
        }
    };
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
    log::info(&format!(
        "ringway {} starting: config {} (generation 1, {} routes, {} upstreams), {n} workers on {cores} available cores{}",
        env!("CARGO_PKG_VERSION"),
        path.display(),
        cfg.routes.len(),
        cfg.upstreams.len(),
        if inherited.is_upgrade() { ", taking over the listening sockets of the old process" } else { "" },
    ));
    worker::raise_fd_limit();
    let signals = match control::register_signals() {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!("cannot install signal handlers: {e}"));
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    // Everything that may need root happens here, before the privileges go.
    let admin = match bind_admin(&cfg, &mut inherited) {
        Ok(a) => a,
        Err(e) => {
            log::error(&e);
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    let bound = match worker::bind_listeners(&cfg, n, &mut inherited) {
        Ok(b) => b,
        Err(e) => {
            log::error(&e.to_string());
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    let ready_pipe = inherited.take_ready();
    for a in inherited.unused() {
        log::warn(&format!(
            "inherited listening socket {a} is not in the config any more; closing it"
        ));
    }
    drop(inherited);
    if let Some(who) = &cfg.run_as {
        if let Err(e) = drop_privileges(who) {
            log::error(&e);
            return ExitCode::from(EXIT_STARTUP);
        }
    }
    serve(path, (cfg, runtime), signals, admin, bound, ready_pipe)
}

/// The admin socket: inherited from an upgrade, or bound now.
fn bind_admin(
    cfg: &config::Compiled,
    inherited: &mut handover::Inherited,
) -> Result<Option<(std::net::TcpListener, std::net::SocketAddr)>, String> {
    let Some(a) = &cfg.admin else {
        return Ok(None);
    };
    if let Some(l) = inherited.take_admin(a.addr) {
        return Ok(Some((l, a.addr)));
    }
    admin::bind(a.addr)
        .map(|l| Some((l, a.addr)))
        .map_err(|e| format!("cannot listen on admin address {}: {e}", a.addr))
}

/// `[server] user`: switch to it if started as root (after binding, before serving).
fn drop_privileges(who: &privileges::RunAs) -> Result<(), String> {
    use privileges::Dropped;
    match privileges::drop_to(who) {
        Ok(Dropped::Switched) => log::info(&format!(
            "listeners bound; now running as user {} ({}), group {} ({})",
            who.user, who.uid, who.group, who.gid
        )),
        Ok(Dropped::AlreadyThatUser) => {}
        Ok(Dropped::NotRoot { uid }) => log::warn(&format!(
            "server.user = {:?}: not started as root (uid {uid}), so staying this user",
            who.user
        )),
        Err(e) => return Err(format!("cannot drop privileges to {}: {e}", who.user)),
    }
    Ok(())
}

/// Starts the sinks, workers and admin thread (privileges already dropped), then runs the
/// control loop until the process drains.
fn serve(
    path: &Path,
    (cfg, runtime): (config::Compiled, config::Runtime),
    signals: signal_hook::iterator::Signals,
    admin: Option<(std::net::TcpListener, std::net::SocketAddr)>,
    bound: worker::Bound,
    ready_pipe: Option<std::os::fd::OwnedFd>,
) -> ExitCode {
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
    let n = bound.per_worker.len();
    let shared = shared::Shared::new(cfg, n, runtime);
    if let Err(e) = control::prepare_sinks(&shared, &shared.config.load()) {
        log::error(&e);
        return ExitCode::from(EXIT_STARTUP);
    }
    let handles = match worker::spawn_workers(&shared, bound.per_worker) {
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
    ringway::key_sync::set_recompile(ringway::control::recompile_current);
    if let Err(e) = ringway::redis_sync::spawn(shared.clone()) {
        log::warn(&format!(
            "cannot start the Redis background thread ({e}): usage and key sync stop"
        ));
    }
    let mut sockets = handover::Sockets {
        listeners: bound.handover,
        admin: None,
    };
    if let Some((listener, addr)) = admin {
        sockets.admin = listener.try_clone().ok().map(|l| (addr, l.into()));
        if let Err(e) = admin::spawn(shared.clone(), path.to_path_buf(), listener, n) {
            log::error(&format!("cannot start the admin thread: {e}"));
            return ExitCode::from(EXIT_STARTUP);
        }
        log::info(&format!(
            "admin API on http://{addr} (/health /ready /metrics /stats /config /routes /upstreams /cache, POST /reload /cache/purge)"
        ));
    }
    log::info(&format!(
        "pid {}; SIGHUP reloads, SIGUSR1 reopens the access log, SIGUSR2 upgrades the binary, SIGTERM drains",
        std::process::id()
    ));
    let process = control::Process {
        handover: handover::Handover::new(sockets),
        ready_pipe,
    };
    let code = control::run(shared, path.to_path_buf(), signals, handles, process);
    ExitCode::from(code as u8)
}
