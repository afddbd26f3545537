//! `rwload`: ringway's bundled load tool. `run` generates HTTP/1.1 load (closed or open loop)
//! and reports latency percentiles, throughput and errors (a table, or one JSON object with
//! `--json`); `upstream` is a fast origin server to put behind the gateway. This file is only
//! the command line; see `client.rs` and `upstream.rs`.
//!
//! Exit codes: 0 run finished (the report says how it went), 1 setup failure (cannot start
//! threads, cannot listen), 2 bad command line.

mod body;
mod client;
mod conn;
mod json_body;
mod pacer;
mod recvbuf;
mod request;
mod response;
mod runtime;
mod stats;
mod tls;
mod units;
mod upstream;
mod zipf;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::units::{parse_cpus, parse_duration, parse_size, CpuList};

#[derive(Parser, Debug)]
#[command(
    name = "rwload",
    version,
    about = "HTTP/1.1 load generator and test upstream for ringway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate load against a URL and report throughput, latency and errors.
    Run(RunArgs),
    /// Serve fixed 200 responses, fast, for use as a load-test origin.
    Upstream(UpstreamArgs),
}

#[derive(Parser, Debug)]
struct RunArgs {
    /// Target, `http[s]://HOST[:PORT][/PATH][?QUERY]`.
    #[arg(long)]
    url: String,
    /// https://: trust the certificates in this PEM file.
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
    /// https://: accept any certificate (the handshake signature is still verified).
    #[arg(long)]
    insecure: bool,
    /// https://: TLS server name (SNI and certificate check) [default: the URL's host].
    #[arg(long)]
    server_name: Option<String>,
    /// https://: only this TLS version, `1.2` or `1.3` [default: both, 1.3 preferred].
    #[arg(long, value_parser = ["1.2", "1.3"])]
    tls_version: Option<String>,
    /// One request per connection: each request opens a new connection (and TLS handshake).
    #[arg(long)]
    new_conn: bool,
    /// https://: keep TLS sessions and resume them on new connections (with --new-conn:
    /// every handshake after the first few is a resumption).
    #[arg(long)]
    resume: bool,
    /// Load threads, each with its own io_uring runtime.
    #[arg(long, short = 't', default_value_t = 1)]
    threads: usize,
    /// Pin load threads to these CPUs (`1`, `0,2`, `2-3`); thread i uses the i-th (wrapping).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// Keep-alive connections in total, spread over the threads.
    #[arg(long, short = 'c', default_value_t = 10)]
    connections: usize,
    /// Length of the measured window (`10s`, `500ms`, `2m`); with --requests, a cap.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the measured window, not recorded [default: 1s, 0 with --requests].
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    warmup: Option<Duration>,
    /// Send exactly this many requests, then stop (no warmup).
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Open loop: total requests per second, spread evenly over the connections.
    #[arg(long, short = 'R')]
    rate: Option<f64>,
    /// Request method.
    #[arg(long, short = 'm', default_value = "GET")]
    method: String,
    /// Request body of this many bytes (sent with Content-Length).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    body_size: usize,
    /// The request body is a JSON order document of about `--body-size` bytes (and
    /// `Content-Type: application/json` is sent), for gateways that validate bodies.
    #[arg(long)]
    body_json: bool,
    /// Extra request header, `Name: value` (repeatable).
    /// Spread requests over N keys with a Zipf distribution (exponent S, default 1.0): the
    /// URL's `{k}` becomes the key (0 = most requested). Keep-alive connections only.
    #[arg(long, value_parser = zipf::parse, value_name = "N[:S]")]
    zipf: Option<(usize, f64)>,
    #[arg(long = "header", short = 'H', value_parser = request::parse_header)]
    headers: Vec<(String, String)>,
    /// A request with no complete response after this long is a timeout error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Parser, Debug)]
struct UpstreamArgs {
    /// Address to listen on (port 0 picks a free port; it is printed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Server threads, each with its own SO_REUSEPORT listener.
    #[arg(long, short = 't', default_value_t = 1)]
    threads: usize,
    /// Pin server threads to these CPUs (`0`, `0,1`, `0-1`).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// Response body size in bytes (`20`, `1KiB`).
    #[arg(long, default_value = "20", value_parser = parse_size)]
    body_size: usize,
    /// Answer with a JSON document of about `--body-size` bytes (`application/json`, varied
    /// text like a real API answer) instead of `a` repeated.
    #[arg(long)]
    json: bool,
    /// Answer with exactly this text as `application/json` (overrides `--body-size` and
    /// `--json`): a fixed document such as an OAuth2 introspection answer.
    #[arg(long)]
    body_text: Option<String>,
    /// Hold each response this long before sending it (`50ms`).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    delay: Duration,
    /// Exit by itself after this long (default: run until SIGTERM/SIGINT).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

fn main() {
    let cli = Cli::parse();
    let fd_limit = runtime::raise_fd_limit();
    if let (Command::Run(args), Some(limit)) = (&cli.command, fd_limit) {
        if args.connections as libc::rlim_t + 64 > limit {
            eprintln!(
                "rwload: warning: {} connections but only {limit} open files allowed (ulimit -n)",
                args.connections
            );
        }
    }
    let code = match cli.command {
        Command::Run(args) => run(args),
        Command::Upstream(args) => upstream(args),
    };
    std::process::exit(code);
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("rwload: {msg}");
    2
}

fn run(args: RunArgs) -> i32 {
    let target = match request::parse_url(&args.url) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let method = args.method.to_ascii_uppercase();
    let mut headers = args.headers.clone();
    let body = if args.body_json {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        json_body::json_body(args.body_size)
    } else {
        vec![b'x'; args.body_size]
    };
    let request = match request::build_request_with(&method, &target, &headers, &body) {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    let zipf = match args.zipf {
        None => None,
        Some(_) if !target.path.contains("{k}") => {
            return usage_error("--zipf needs `{k}` in the URL's path or query")
        }
        Some(_) if args.new_conn => return usage_error("--zipf works on keep-alive connections"),
        Some((n, exp)) => {
            let built = zipf::ZipfRequests::new(n, exp, |k| {
                let mut t = target.clone();
                t.path = t.path.replace("{k}", &k.to_string());
                request::build_request_with(&method, &t, &headers, &body)
            });
            match built {
                Ok(z) => Some(std::sync::Arc::new(z)),
                Err(e) => return usage_error(&e),
            }
        }
    };
    if args.connections == 0 {
        return usage_error("--connections must be at least 1");
    }
    if args.threads == 0 {
        return usage_error("--threads must be at least 1");
    }
    if args.duration.is_zero() {
        return usage_error("--duration must be more than 0");
    }
    if args.timeout.is_zero() {
        return usage_error("--timeout must be more than 0");
    }
    if args.requests == Some(0) {
        return usage_error("--requests must be at least 1");
    }
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            return usage_error("--rate must be a positive number of requests per second");
        }
    }
    let tls_flags = args.cacert.is_some()
        || args.insecure
        || args.server_name.is_some()
        || args.tls_version.is_some()
        || args.resume;
    if tls_flags && !target.tls {
        return usage_error(
            "--cacert, --insecure, --server-name, --tls-version and --resume need an https:// URL",
        );
    }
    if target.tls && args.cacert.is_none() && !args.insecure {
        return usage_error("https:// needs --cacert FILE (PEM) or --insecure");
    }
    let tls = target.tls.then(|| tls::TlsOptions {
        cacert: args.cacert.clone(),
        insecure: args.insecure,
        server_name: args
            .server_name
            .clone()
            .unwrap_or_else(|| target.host.clone()),
        version: match args.tls_version.as_deref() {
            Some("1.2") => Some(12),
            Some("1.3") => Some(13),
            _ => None,
        },
        resume: args.resume,
    });
    if let Some(o) = &tls {
        // Fail on a bad --cacert or server name now, with a usage error, not in a thread.
        if let Err(e) = tls::TlsClient::new(o) {
            return usage_error(&e);
        }
    }
    let warmup = match args.requests {
        Some(_) => Duration::ZERO,
        None => args.warmup.unwrap_or(Duration::from_secs(1)),
    };
    let cfg = client::RunConfig {
        url: args.url,
        target,
        method,
        request,
        threads: args.threads,
        cpus: args.cpus.map(|c| c.0).unwrap_or_default(),
        connections: args.connections,
        duration: args.duration,
        warmup,
        rate: args.rate,
        requests: args.requests,
        timeout: args.timeout,
        progress: !args.quiet && warmup + args.duration > Duration::from_secs(3),
        tls,
        new_conn: args.new_conn,
        zipf,
    };
    if !args.quiet {
        let mode = match cfg.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_string(),
        };
        let length = match cfg.requests {
            Some(n) => format!("{n} requests (cap {:?})", cfg.duration),
            None => format!("{:?} after {:?} warmup", cfg.duration, cfg.warmup),
        };
        let conns = if cfg.new_conn {
            "one-request connections"
        } else {
            "connections"
        };
        eprintln!(
            "rwload: {} {} -> {}: {mode}, {} {conns} on {} thread(s), {length}",
            cfg.method,
            cfg.url,
            cfg.target.addr,
            cfg.connections,
            cfg.threads.min(cfg.connections)
        );
    }
    match client::run(cfg) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            0
        }
        Err(e) => {
            eprintln!("rwload: {e}");
            1
        }
    }
}

fn upstream(args: UpstreamArgs) -> i32 {
    if args.threads == 0 {
        return usage_error("--threads must be at least 1");
    }
    let cfg = upstream::UpstreamConfig {
        listen: args.listen,
        threads: args.threads,
        cpus: args.cpus.map(|c| c.0).unwrap_or_default(),
        body_size: args.body_size,
        json: args.json,
        body_text: args.body_text,
        delay: args.delay,
        duration: args.duration,
    };
    match upstream::serve(cfg) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("rwload upstream: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_arguments_parse() {
        let cli = Cli::try_parse_from([
            "rwload",
            "run",
            "--url",
            "http://127.0.0.1:1/",
            "--cpus",
            "0-1",
            "-H",
            "A: b",
            "-H",
            "C: d",
            "--rate",
            "100",
            "--body-size",
            "1KiB",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.cpus, Some(CpuList(vec![0, 1])));
        assert_eq!(a.headers.len(), 2);
        assert_eq!(a.body_size, 1024);
        assert!(
            Cli::try_parse_from(["rwload", "run", "--url", "x", "-n", "5", "--warmup", "1s"])
                .is_err()
        );
    }
}
