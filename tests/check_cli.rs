//! `ringway check`: exit codes and error positions (file:line:col plus the field) for the
//! config mistakes a user actually makes.
mod common;
use common::*;

/// Exit code `ringway check` documents for config errors.
const EXIT_CONFIG: i32 = 1;

const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n";

/// Asserts `check` rejects `text` with exactly one error at `line:col` naming `field`, and that
/// the message contains every string in `needles`. Returns stderr.
fn expect_error(
    text: &str,
    line: usize,
    col: Option<usize>,
    field: &str,
    needles: &[&str],
) -> String {
    let (code, stdout, stderr) = check_config(text);
    assert_eq!(
        code, EXIT_CONFIG,
        "expected exit {EXIT_CONFIG}; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !stdout.contains(": OK"),
        "a rejected config must not print OK; stdout:\n{stdout}"
    );
    let pos = match col {
        Some(c) => format!("check.toml:{line}:{c}: "),
        None => format!("check.toml:{line}:"),
    };
    let err_line = stderr
        .lines()
        .find(|l| l.contains(&pos))
        .unwrap_or_else(|| panic!("no error at {pos} in stderr:\n{stderr}"));
    assert!(
        err_line.contains(field),
        "error line does not name field {field:?}: {err_line}"
    );
    for n in needles {
        assert!(err_line.contains(n), "error line lacks {n:?}: {err_line}");
    }
    stderr
}

#[test]
fn bundled_config_is_valid_and_summarized() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringway.toml");
    let out = std::process::Command::new(bin())
        .args(["check", "--config", path])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("listeners:"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:8080"), "{stdout}");
    assert!(stdout.contains("routes"), "{stdout}");
    for route in ["welcome", "health", "echo", "moved"] {
        assert!(stdout.contains(route), "route {route} missing:\n{stdout}");
    }
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn summary_lists_every_route_of_a_custom_config() {
    let text = format!(
        "{LISTENER}[upstreams.users]\ntargets = [{{ address = \"127.0.0.1:9001\", weight = 3 }}]\n\
         [[routes]]\nname = \"users-api\"\nprefix = \"/users\"\nproxy = {{ upstream = \"users\" }}\n\
         [[routes]]\nname = \"ping\"\npath = \"/ping\"\nstatic = {{ body = \"pong\" }}\n"
    );
    let (code, stdout, stderr) = check_config(&text);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("users-api"), "{stdout}");
    assert!(stdout.contains("ping"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:9001"), "{stdout}");
    assert!(stdout.contains("weight 3"), "{stdout}");
}

#[test]
fn unknown_field_typo() {
    let text = format!(
        "{LISTENER}\n[[routes]]\nname = \"a\"\npath = \"/\"\necho = {{}}\nmethod = [\"GET\"]\n"
    );
    // line 1-2 listener, 3 blank, 4 [[routes]], 5 name, 6 path, 7 echo, 8 method
    let stderr = expect_error(&text, 8, Some(1), "method", &["unknown field"]);
    // The message should hint at the real name.
    assert!(stderr.contains("methods"), "{stderr}");
}

#[test]
fn unknown_field_in_timeouts() {
    let text = format!("{LISTENER}[timeouts]\nclient_headers = \"5s\"\n");
    expect_error(&text, 4, Some(1), "client_headers", &["unknown field"]);
}

#[test]
fn unknown_upstream_name() {
    let text = format!(
        "{LISTENER}[upstreams.users]\ntargets = [{{ address = \"127.0.0.1:9001\" }}]\n\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\n[routes.proxy]\nupstream = \"userz\"\n"
    );
    // 3 [upstreams.users], 4 targets, 5 blank, 6 [[routes]], 7 name, 8 prefix, 9 [routes.proxy], 10 upstream
    expect_error(
        &text,
        10,
        Some(12),
        "routes[0].proxy.upstream",
        &["userz", "users"],
    );
}

#[test]
fn duplicate_route_name() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"a\"\npath = \"/x\"\necho = {{}}\n\n\
         [[routes]]\nname = \"a\"\npath = \"/y\"\necho = {{}}\n"
    );
    // 3 [[routes]], 4 name, 5 path, 6 echo, 7 blank, 8 [[routes]], 9 name = "a"
    expect_error(
        &text,
        9,
        Some(8),
        "routes[1].name",
        &["duplicate route name"],
    );
}

#[test]
fn bad_duration() {
    let text =
        format!("{LISTENER}\n[timeouts]\nclient_header = \"5s\"\nkeepalive = \"10 parsecs\"\n");
    // 3 blank, 4 [timeouts], 5 client_header, 6 keepalive
    expect_error(&text, 6, Some(13), "timeouts.keepalive", &["10 parsecs"]);
}

#[test]
fn zero_duration_is_rejected() {
    let text =
        format!("{LISTENER}[server]\ndrain_timeout = \"5s\"\n[timeouts]\nupstream_idle = \"0s\"\n");
    expect_error(
        &text,
        6,
        None,
        "timeouts.upstream_idle",
        &["greater than zero"],
    );
}

/// A limit the limiter cannot compute exactly (its span past 2^60 ns, about 36 years) is an
/// error, not silently clamped into a stricter or looser one than written.
#[test]
fn a_limit_past_what_the_limiter_computes_is_an_error() {
    for limit in [
        "requests = 1, per = \"10000d\", burst = 1",
        "requests = 1, per = \"1d\", burst = 100000",
    ] {
        let text = format!(
            "{LISTENER}[policies.rl]\nrate_limit = {{ key = \"ip\", limits = [{{ {limit} }}] }}\n\
             [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"rl\"]\nstatic = {{ body = \"ok\" }}\n"
        );
        expect_error(&text, 4, None, "limits[0].per", &["36 years"]);
    }
}

#[test]
fn bad_listener_address() {
    let text = "version = 1\n\n[[listeners]]\nname = \"pub\"\naddress = \"localhost:80\"\n";
    expect_error(text, 5, Some(11), "listeners[0].address", &["localhost:80"]);
    let text = "[[listeners]]\naddress = \"127.0.0.1\"\n";
    expect_error(text, 2, Some(11), "listeners[0].address", &["127.0.0.1"]);
}

#[test]
fn conflicting_routes() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"first\"\npath = \"/x\"\necho = {{}}\n\
         [[routes]]\nname = \"second\"\npath = \"/x\"\necho = {{}}\n"
    );
    // 7 [[routes]], 8 name = "second"
    expect_error(
        &text,
        8,
        Some(8),
        "routes[1]",
        &["conflicts", "first", "second"],
    );
}

#[test]
fn conflicting_routes_resolved_by_methods_is_fine() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"r\"\npath = \"/x\"\nmethods = [\"GET\"]\necho = {{}}\n\
         [[routes]]\nname = \"w\"\npath = \"/x\"\nmethods = [\"POST\"]\necho = {{}}\n"
    );
    let (code, stdout, stderr) = check_config(&text);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn bad_path_template() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"files\"\npath = \"/u/{{id}}/x{{name}}\"\necho = {{}}\n"
    );
    expect_error(&text, 5, Some(8), "routes[0].path", &["template"]);
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"files\"\npath = \"/u/{{id}}/{{id}}\"\necho = {{}}\n"
    );
    expect_error(
        &text,
        5,
        Some(8),
        "routes[0].path",
        &["duplicate parameter"],
    );
    let text =
        format!("{LISTENER}[[routes]]\nname = \"files\"\npath = \"/u/{{*rest}}/x\"\necho = {{}}\n");
    expect_error(&text, 5, Some(8), "routes[0].path", &["last segment"]);
}

#[test]
fn toml_syntax_error() {
    let text = format!("{LISTENER}[[routes]]\nname = \"a\"\npath = \"/x\necho = {{}}\n");
    // unterminated string on line 5
    expect_error(&text, 5, None, "routes", &[]);
    let text = format!("{LISTENER}[limits\nmax_headers = 10\n");
    expect_error(&text, 3, None, "limits", &[]);
}

#[test]
fn multiple_errors_are_all_reported() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"a\"\npath = \"/a\"\nproxy = {{ upstream = \"nope\" }}\n\
         [[routes]]\nname = \"b\"\npath = \"/b\"\nredirect = {{ location = \"/x\", status = 299 }}\n"
    );
    let (code, _stdout, stderr) = check_config(&text);
    assert_eq!(code, EXIT_CONFIG, "{stderr}");
    assert!(stderr.contains("check.toml:6:"), "{stderr}");
    assert!(stderr.contains("routes[0].proxy.upstream"), "{stderr}");
    assert!(stderr.contains("check.toml:10:"), "{stderr}");
    assert!(stderr.contains("routes[1].redirect.status"), "{stderr}");
    assert!(stderr.contains("2 errors"), "{stderr}");
}

#[test]
fn missing_file_is_a_config_error() {
    let out = std::process::Command::new(bin())
        .args([
            "check",
            "--config",
            "/nonexistent/ringway-test/missing.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

/// Every documented example under config/examples passes `check`, and the summary lists the
/// routes in match order (exact host before wildcard, more conditions first).
#[test]
fn documented_examples_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let out = std::process::Command::new(bin())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        if path.ends_with("hosts.toml") {
            // The exact route lines in match order (a name elsewhere in the output, e.g. the
            // upstream list, cannot satisfy this, and a missing route fails it).
            let routes: Vec<&str> = stdout
                .lines()
                .skip_while(|l| *l != "routes (match order):")
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                .map(str::trim_end)
                .collect();
            assert_eq!(
                routes,
                [
                    "    1. admin            admin.example.com ANY        ^ /                      -> proxy admin",
                    "    2. tenant           *.example.com  ANY        ^ /                      -> proxy tenants",
                    "    3. status-canary    *              ANY        = /status                header:x-beta=1 query:canary -> static 200",
                    "    4. status           *              ANY        = /status                -> static 200",
                    "    5. legacy           *              ANY        ^ /old                   -> redirect 308 https://www.example.com",
                ],
                "{stdout}"
            );
        }
    }
    assert!(seen >= 2, "expected documented examples in {dir}");
}

#[test]
fn short_hmac_secret_is_rejected() {
    let text = format!("{LISTENER}[policies.j.jwt]\nsecret = \"only-20-bytes-secret\"\n");
    expect_error(
        &text,
        4,
        Some(10),
        "policies.j.jwt.secret",
        &["20 bytes", "at least 32"],
    );
    // 32 bytes pass.
    let ok = format!(
        "{LISTENER}[policies.j.jwt]\nsecret = \"{}\"\n",
        "k".repeat(32)
    );
    let (code, _, stderr) = check_config(&ok);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn plain_http_jwks_url_needs_a_loopback_host() {
    let text = format!(
        "{LISTENER}[policies.j.jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"http://idp.example.com/jwks.json\"\n"
    );
    expect_error(
        &text,
        5,
        Some(12),
        "policies.j.jwt.jwks_url",
        &["https://", "loopback"],
    );
}

#[test]
fn credentialed_cors_wildcard_over_a_public_suffix_is_rejected() {
    for origin in ["https://*.com", "https://*.co.uk"] {
        let text = format!(
            "{LISTENER}[policies.c.cors]\ncredentials = true\norigins = [\"https://app.example.com\", \"{origin}\"]\n"
        );
        expect_error(
            &text,
            5,
            None,
            "policies.c.cors.origins[1]",
            &["public suffix"],
        );
    }
    let ok = format!(
        "{LISTENER}[policies.c.cors]\ncredentials = true\norigins = [\"https://*.example.co.uk\"]\n"
    );
    let (code, _, stderr) = check_config(&ok);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn consumer_metadata_with_a_control_character_is_rejected() {
    let text = format!(
        "{LISTENER}[consumers.alice]\nmetadata = {{ tier = \"gold\\r\\nX-Injected: 1\" }}\n"
    );
    expect_error(
        &text,
        3,
        None,
        "consumers.alice.metadata.tier",
        &["not a safe header value"],
    );
}

#[test]
fn http2_limits_are_checked_and_summarized() {
    // 1 [[listeners]], 2 address, 3 h2c, 4 [listeners.http2], 5 max_frame_size
    let text = "[[listeners]]\naddress = \"127.0.0.1:8080\"\nh2c = true\n\
                [listeners.http2]\nmax_frame_size = 1024\n";
    expect_error(
        text,
        5,
        Some(18),
        "listeners[0].http2.max_frame_size",
        &["16384"],
    );
    let text = "[[listeners]]\naddress = \"127.0.0.1:8080\"\nh2c = true\n\
                [listeners.http2]\nmax_pings_per_second = 0\n";
    expect_error(
        text,
        5,
        None,
        "listeners[0].http2.max_pings_per_second",
        &["between 1 and"],
    );
    let text = "[[listeners]]\naddress = \"127.0.0.1:8080\"\nh2c = true\n\
                [listeners.http2]\nmax_streams = 10\n";
    expect_error(text, 5, None, "max_streams", &["unknown field"]);

    let ok = "[[listeners]]\naddress = \"127.0.0.1:8080\"\nh2c = true\n\
              [listeners.http2]\nmax_concurrent_streams = 32\nidle_timeout = \"15s\"\n";
    let (code, stdout, stderr) = check_config(ok);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("(HTTP/1.1 and h2c)"), "{stdout}");
    assert!(stdout.contains("http2: 32 streams"), "{stdout}");
    assert!(stdout.contains("idle 15s"), "{stdout}");
}

/// Runs `ringway [pre...] check --system --config <text in a file>`.
fn check_system(pre: &[&str], text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("check.toml");
    std::fs::write(&p, text).unwrap();
    let out = std::process::Command::new(bin())
        .args(pre)
        .args(["check", "--system", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_system_prints_kernel_advice_for_this_config_and_exits_0() {
    let text = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n\
                [limits]\nmax_connections = 5000\n\
                [upstreams.be]\nmax_idle = 10\n\
                targets = [{ address = \"127.0.0.1:9\" }, { address = \"127.0.0.1:10\" }]\n\
                [[routes]]\nname = \"api\"\nprefix = \"/\"\nproxy = { upstream = \"be\" }\n";
    let (code, stdout, stderr) = check_system(&["--workers", "3"], text);
    assert_eq!(code, 0, "warnings are advice only\n{stdout}\n{stderr}");
    assert!(stdout.contains("check.toml: OK"), "{stdout}");
    // 2 targets x max_idle 10 x 3 workers; 5000 x 2 + 60 + 1024 descriptors.
    assert!(
        stdout.contains("3 workers, 5000 client connections, 60 pooled upstream connections"),
        "{stdout}"
    );
    for setting in [
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_tw_reuse",
        "fs.file-max",
        "fs.nr_open",
        "RLIMIT_NOFILE",
        "RLIMIT_MEMLOCK",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!(" {setting}")))
            .unwrap_or_else(|| panic!("no line for {setting}:\n{stdout}"));
        assert!(
            line.starts_with("OK ") || line.starts_with("WARN "),
            "{line}"
        );
        let current = line
            .split("current ")
            .nth(1)
            .and_then(|r| r.split(", recommended ").next())
            .unwrap_or_else(|| panic!("no current value: {line}"));
        // Every /proc/sys file and rlimit here is readable on Linux.
        assert!(!current.is_empty() && current != "unreadable", "{line}");
    }
    assert!(
        stdout.contains("recommended >= 4096"),
        "somaxconn vs the 4096 listen backlog: {stdout}"
    );
    assert!(stdout.contains("recommended hard >= 11084"), "{stdout}");
    assert!(stdout.contains("recommended >= 28000 ports"), "{stdout}");
    // The kernel's own view matches what the advice printed for somaxconn.
    let somax = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    assert!(
        stdout.contains(&format!("somaxconn: current {}, ", somax.trim())),
        "{stdout}"
    );
}

#[test]
fn check_system_still_fails_on_config_errors_without_advice() {
    let text = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[limits]\nmax_connections = -5\n";
    let (code, stdout, stderr) = check_system(&[], text);
    assert_eq!(code, EXIT_CONFIG, "{stdout}\n{stderr}");
    assert!(stderr.contains("check.toml:4:"), "{stderr}");
    assert!(stderr.contains("limits.max_connections"), "{stderr}");
    assert!(
        !stdout.contains("somaxconn"),
        "no advice for a broken config: {stdout}"
    );
    // Plain `check` is unchanged: no kernel advice.
    let (code, stdout, _) = check_config("[[listeners]]\naddress = \"127.0.0.1:8080\"\n");
    assert_eq!(code, 0);
    assert!(!stdout.contains("somaxconn"), "{stdout}");
}

/// `check` on a config that names a FIFO or a device (`/dev/zero`) where a file belongs: an
/// error naming the file, at once. Reading them would wait for a writer forever, or without
/// end; a reload doing the same would hold the control thread (and SIGTERM) hostage.
#[test]
fn a_fifo_or_device_named_as_a_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("spec.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("key.pem")).unwrap();
    let run = |config: &std::path::Path| {
        let mut child = std::process::Command::new(bin())
            .args(["check", "--config"])
            .arg(config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("check still running after 20 s on {}", config.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases = [
        (
            "[[openapi]]\nspec = \"spec.fifo\"\nname = \"a\"\nupstream = \"u\"\nprefix = \"/a\"\n",
            "spec.fifo",
        ),
        (
            "[policies.j]\njwt = { algorithms = [\"RS256\"], public_key_file = \"key.pem\" }\n",
            "key.pem",
        ),
    ];
    for (block, file) in cases {
        let p = dir.path().join("check.toml");
        std::fs::write(
            &p,
            format!(
                "{LISTENER}[upstreams.u]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n{block}\
                 [[routes]]\nname = \"r\"\npath = \"/\"\necho = {{}}\n"
            ),
        )
        .unwrap();
        let (code, stderr) = run(&p);
        assert_eq!(code, Some(EXIT_CONFIG), "{stderr}");
        assert!(
            stderr.contains(file) && stderr.contains("not a regular file"),
            "{stderr}"
        );
    }
    // The config file itself.
    let (code, stderr) = run(&fifo);
    assert_eq!(code, Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

/// A transform after an authenticating policy (on the route, or with the policy from a
/// `[[defaults]]` entry, which always runs first) that renames a client's field onto a header
/// the policy asserts, or adds one beside it, would put the client's value next to the
/// gateway's upstream: `x-mail: ceo@corp` renamed onto the verified `x-user-email`. That
/// order is a config error naming the route's policy entry; before the policy, or as `set`,
/// it is fine.
#[test]
fn a_transform_cannot_join_a_header_an_earlier_auth_policy_asserts() {
    let base = format!(
        "{LISTENER}[upstreams.u]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n\
         [policies.jwt]\njwt = {{ secret = \"{}\", algorithms = [\"HS256\"], \
         claims_to_headers = {{ email = \"x-user-email\" }} }}\n\
         [policies.legacy]\ntransform = {{ request_headers = {{ rename = {{ \"x-mail\" = \"X-User-Email\" }} }} }}\n\
         [policies.extra]\ntransform = {{ request_headers = {{ add = {{ \"x-consumer\" = \"${{header.x-who}}\" }} }} }}\n\
         [policies.fine]\ntransform = {{ request_headers = {{ set = {{ \"x-consumer\" = \"${{consumer}}\" }} }} }}\n",
        "k".repeat(32)
    );
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (policies, op, header) in [
        ("[\"jwt\", \"legacy\"]", "renames", "x-user-email"),
        ("[\"jwt\", \"extra\"]", "adds", "x-consumer"),
    ] {
        let text = format!(
            "{base}[[routes]]\nname = \"c\"\nprefix = \"/c\"\npolicies = {policies}\nproxy = {{ upstream = \"u\" }}\n"
        );
        let line = line_of(&text, "policies = [");
        expect_error(&text, line, None, "policies[1]", &[op, header, "\"jwt\""]);
    }
    // From a [[defaults]] entry: the default's policies run first.
    let text = format!(
        "{base}[[defaults]]\nprefix = \"/c\"\npolicies = [\"jwt\"]\n\
         [[routes]]\nname = \"c\"\nprefix = \"/c\"\npolicies = [\"legacy\"]\nproxy = {{ upstream = \"u\" }}\n"
    );
    let line = line_of(&text, "policies = [\"legacy\"]");
    expect_error(&text, line, None, "policies", &["renames", "x-user-email"]);
    // Before the policy (its removal then covers the renamed field), or as `set`: valid.
    let ok = format!(
        "{base}[[routes]]\nname = \"c\"\nprefix = \"/c\"\npolicies = [\"legacy\", \"extra\", \"jwt\", \"fine\"]\n\
         proxy = {{ upstream = \"u\" }}\n"
    );
    let (code, _, stderr) = check_config(&ok);
    assert_eq!(code, 0, "{stderr}");
}

/// A rewrite is written into the upstream request line: CR/LF there would split it into two
/// requests (the second one's answer going to the client), a space would end it early, and a
/// leading `//` reads as a host to many servers. Route paths that could never match a request
/// path (a query, a fragment, a control character) are refused as well.
#[test]
fn rewrites_and_route_paths_that_could_split_or_redirect_the_upstream_request_are_rejected() {
    let up = "[upstreams.app]\ntargets = [{ address = \"127.0.0.1:9\" }]\n\n";
    let route = |lines: &str| format!("{LISTENER}{up}[[routes]]\nname = \"r\"\n{lines}");
    let cases: [(&str, usize, &str, &str); 7] = [
        (
            "prefix = \"/a\"\nproxy = { upstream = \"app\", replace_prefix = \"/v2 HTTP/1.1\\r\\nX-Evil: 1\\r\\n\\r\\nGET /x\" }\n",
            9,
            "routes[0].proxy.replace_prefix",
            "control character",
        ),
        (
            "path = \"/a/{id}\"\nproxy = { upstream = \"app\", path = \"/v2\\r\\nX-Evil: 1/{id}\" }\n",
            9,
            "routes[0].proxy.path",
            "control character",
        ),
        (
            "prefix = \"/a\"\nproxy = { upstream = \"app\", replace_prefix = \"//evil.example/x\" }\n",
            9,
            "routes[0].proxy.replace_prefix",
            "\"//\"",
        ),
        (
            "path = \"/a/{id}\"\nproxy = { upstream = \"app\", path = \"/v2?admin=1/{id}\" }\n",
            9,
            "routes[0].proxy.path",
            "'?'",
        ),
        (
            "prefix = \"/a\\r\\nb\"\nproxy = { upstream = \"app\" }\n",
            8,
            "routes[0].prefix",
            "control character",
        ),
        (
            "path = \"/a b\"\nproxy = { upstream = \"app\" }\n",
            8,
            "routes[0].path",
            "space",
        ),
        (
            "path = \"/a#frag\"\nproxy = { upstream = \"app\" }\n",
            8,
            "routes[0].path",
            "'#'",
        ),
    ];
    for (lines, line, field, needle) in cases {
        expect_error(&route(lines), line, None, field, &[needle]);
    }
    // A transform of a header the gateway writes itself would be silently overwritten.
    let text = format!(
        "{LISTENER}{up}[policies.shape]\ntransform = {{ request_headers = {{ set = {{ \"x-forwarded-for\" = \"1.2.3.4\" }} }} }}\n\n\
         [[routes]]\nname = \"r\"\nprefix = \"/a\"\npolicies = [\"shape\"]\nproxy = {{ upstream = \"app\" }}\n"
    );
    expect_error(
        &text,
        7,
        None,
        "request_headers.set.x-forwarded-for",
        &["written by the gateway"],
    );
    // The same fields with plain values are fine.
    let ok = route("prefix = \"/a\"\nproxy = { upstream = \"app\", replace_prefix = \"/v2\" }\n");
    let (code, stdout, stderr) = check_config(&ok);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// A route name is printed in logs, metrics and this very listing: a newline, an escape
/// sequence or a bidi override in one could forge a route line or hide one from the operator
/// reviewing it. Such names are refused, in TOML and as an OpenAPI operationId.
#[test]
fn route_names_that_could_forge_listing_lines_are_rejected() {
    for name in [
        "a\\n    9. admin  *  ANY = /admin -> static 200",
        "a\\u001b[2Kb",
        "a\\u202eb",
        "a\\tb",
    ] {
        let text = format!("{LISTENER}[[routes]]\nname = \"{name}\"\npath = \"/x\"\necho = {{}}\n");
        expect_error(&text, 4, None, "routes[0].name", &["control, tab or bidi"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/p":{"get":{"operationId":"p\n    9. admin","responses":{"200":{"description":"ok"}}}}}}"#,
    )
    .unwrap();
    let text = format!(
        "{LISTENER}[upstreams.app]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n\n\
         [[openapi]]\nspec = \"{}\"\nupstream = \"app\"\n",
        spec.display()
    );
    let (code, stdout, stderr) = check_config(&text);
    assert_eq!(code, EXIT_CONFIG, "{stdout}{stderr}");
    assert!(
        stderr.contains("/operationId") && stderr.contains("control, tab or bidi"),
        "{stderr}"
    );
    assert!(!stdout.contains("9. admin"), "{stdout}");
}

/// A stdout that cannot take the output (a full disk here; a closed pipe behaves the same) is
/// an error message and exit 3, never a panic with a backtrace.
#[test]
fn an_unwritable_stdout_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("check.toml");
    std::fs::write(
        &cfg,
        format!("{LISTENER}[[routes]]\nname = \"a\"\npath = \"/x\"\necho = {{}}\n"),
    )
    .unwrap();
    for args in [
        vec!["config", "schema"],
        vec!["completions", "bash"],
        vec!["check", "--config", cfg.to_str().unwrap()],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = std::process::Command::new(bin())
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains("cannot write the output"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Parsing TOML takes many times the file's size in memory (a 27 MB file of empty arrays
/// took 2.2 GB), so a config past 16 MiB is refused before it is parsed, at once.
#[test]
fn a_config_past_the_size_bound_is_refused_before_parsing() {
    let mut text = String::from(LISTENER);
    let line = format!("# {}\n", "x".repeat(1000));
    while text.len() <= 16 << 20 {
        text.push_str(&line);
    }
    let started = std::time::Instant::now();
    let (code, _, stderr) = check_config(&text);
    assert_eq!(code, EXIT_CONFIG, "{stderr}");
    assert!(stderr.contains("larger than 16777216 bytes"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
