//! The shipped Grafana dashboard (`deploy/grafana/ringway.json`) and Prometheus alert rules
//! (`deploy/prometheus/alerts.yml`) stay true to what the gateway exports: every metric they
//! query is a family a live gateway's `/metrics` declares (`# TYPE`), every panel has a title,
//! a datasource and a query, every alert has `expr`, `for`, a severity and a summary, and
//! `promtool` accepts the rules, passes their unit tests (`alerts_test.yml`: each alert fires on
//! the series it is for, not on healthy ones) and parses every dashboard query (required under
//! `CI`).
mod common;
use common::tls::{client_config, Ca, ClientOpts, TlsConn};
use common::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/ringway.json")).expect("dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and template-variable queries.
fn dashboard_exprs(d: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.extend(t["expr"].as_str().map(str::to_string));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        out.extend(v["definition"].as_str().map(str::to_string));
    }
    out
}

/// The `ringway_*` metric names in `text`, histogram series suffixes folded into the family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    for (at, _) in text.match_indices("ringway_") {
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[at..];
        let name = &rest[..rest.find(|c| !is_name(c)).unwrap_or(rest.len())];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_string());
    }
    names
}

/// Families a Prometheus text exposition declares with `# TYPE`.
fn declared_families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Names used by `text` that `declared` lacks.
fn undeclared(text: &str, declared: &BTreeSet<String>) -> Vec<String> {
    metric_names(text)
        .into_iter()
        .filter(|n| !declared.contains(n))
        .collect()
}

/// The alert rules as (name, the rule's lines), found by a line check of the YAML structure.
fn alert_rules(yaml: &str) -> Vec<(String, Vec<String>)> {
    let mut rules: Vec<(String, Vec<String>)> = Vec::new();
    for line in yaml.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some(name) = line.trim_start().strip_prefix("- alert:") {
            rules.push((name.trim().to_string(), Vec::new()));
        } else if let Some((_, lines)) = rules.last_mut() {
            lines.push(line.to_string());
        }
    }
    rules
}

/// The value of the first `key:` line (trimmed) among `lines`.
fn field<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .map(str::trim)
}

/// A gateway with a TLS listener (its certificate 10 days from expiry), a rate-limited route
/// to an upstream and a route to a dead upstream, after a few requests; returns its exposition.
fn live_exposition() -> String {
    let up = Upstream::echo();
    let dead = refused_port();
    let ca = Ca::new("ringway deploy test CA");
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.server_until(dir.path(), "api", &["localhost"], 10 * 86_400);
    let gw = Gateway::start(&format!(
        "[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\n\
         [policies.limit]\nrate_limit = {{ key = \"ip\", limits = [{{ requests = 3, per = \"1h\" }}] }}\n\n\
         {}\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\npolicies = [\"limit\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"down\"\nprefix = \"/down\"\nproxy = {{ upstream = \"gone\" }}\n",
        cert.cert_path.display(),
        cert.key_path.display(),
        upstream_toml("app", &[up.addr]),
        upstream_toml("gone", &[format!("127.0.0.1:{dead}").parse().unwrap()]),
    ));
    let client = client_config(&ClientOpts {
        ca_pem: &ca.pem,
        alpn: &[b"http/1.1"],
        ..ClientOpts::default()
    });
    let mut c = TlsConn::open(gw.addr, "localhost", &client).expect("handshake");
    let statuses: Vec<u16> = (0..5)
        .map(|i| {
            c.request("GET", &format!("/api/{i}"), &[], b"")
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429],
        "3 allowed, then limited"
    );
    assert_eq!(c.request("GET", "/down", &[], b"").unwrap().status, 502);
    // Metrics are recorded just after the response is written.
    scrape_until(
        gw.admin,
        "ringway_http_requests_total",
        &[("route", "down")],
        1.0,
    );
    let r = request(gw.admin, "GET", "/metrics", &[("Connection", "close")], b"");
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn every_metric_the_dashboard_and_alerts_query_is_exported_by_a_live_gateway() {
    let text = live_exposition();
    let declared = declared_families(&text);
    let d = dashboard();
    let exprs = dashboard_exprs(&d).join("\n");
    let used = metric_names(&exprs);
    assert!(used.len() >= 25, "dashboard covers the families: {used:?}");
    assert_eq!(
        undeclared(&exprs, &declared),
        Vec::<String>::new(),
        "dashboard"
    );
    let alerts = read("deploy/prometheus/alerts.yml");
    assert!(metric_names(&alerts).len() >= 8);
    assert_eq!(
        undeclared(&alerts, &declared),
        Vec::<String>::new(),
        "alerts.yml"
    );
    // The checker is not vacuous: a misspelt or removed family is reported.
    let typo = "rate(ringway_http_request_total[5m]) + ringway_http_request_duration_seconds_count";
    assert_eq!(undeclared(typo, &declared), ["ringway_http_request_total"]);

    // What the panels and alerts show is really there: traffic, refusals, the upstream
    // failing, and a certificate the 14-day alert fires for.
    let s = parse_prometheus(&text);
    let v = |name: &str, labels: &[(&str, &str)]| metric(&s, name, labels);
    assert_eq!(
        v(
            "ringway_ratelimit_decisions_total",
            &[("decision", "limited")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v(
            "ringway_http_requests_total",
            &[("route", "down"), ("status", "502")]
        ),
        Some(1.0)
    );
    assert!(
        v(
            "ringway_upstream_connect_errors_total",
            &[("upstream", "gone")]
        ) >= Some(1.0)
    );
    assert!(v("ringway_tls_handshakes_total", &[("kind", "full")]) >= Some(1.0));
    let expiry = v("ringway_tls_certificate_expiry_seconds", &[]).expect("expiry gauge");
    assert!(
        expiry > 9.0 * 86_400.0 && expiry < 14.0 * 86_400.0,
        "{expiry}"
    );
}

#[test]
fn dashboard_panels_have_a_title_a_datasource_and_queries() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64() >= Some(36), "schemaVersion");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["DS_PROMETHEUS", "job", "instance"]);
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 12);
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id in {title}"
        );
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(expr.contains("ringway_"), "{title}: {expr}");
            assert!(
                expr.contains("job=~\"$job\",instance=~\"$instance\""),
                "{title}: {expr}"
            );
        }
    }
    let exprs = dashboard_exprs(&d).join("\n");
    for q in ["0.5", "0.95", "0.99"] {
        let want = format!("histogram_quantile({q}, sum by (le) (rate(ringway_http_request_duration_seconds_bucket");
        assert!(exprs.contains(&want), "missing p{q}");
    }
}

#[test]
fn alert_rules_have_expr_for_severity_and_summary() {
    let rules = alert_rules(&read("deploy/prometheus/alerts.yml"));
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "RingwayDown",
        "RingwayHighErrorRatio",
        "RingwayHighLatencyP99",
        "RingwayUpstreamConnectErrors",
        "RingwayConfigReloadFailed",
        "RingwayCertificateExpiringSoon",
        "RingwayAccessLogDrops",
        "RingwayRateLimiterEvictions",
        "RingwayHTTP2FloodCloses",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for (name, lines) in &rules {
        assert!(
            field(lines, "expr:").is_some_and(|e| !e.is_empty()),
            "{name}: expr"
        );
        assert!(
            field(lines, "for:").is_some_and(|f| f.ends_with('m') || f.ends_with('h')),
            "{name}: for"
        );
        let severity = field(lines, "severity:").unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        assert!(
            field(lines, "summary:").is_some_and(|s| s.len() > 10),
            "{name}: summary"
        );
        assert!(
            field(lines, "description:").is_some_and(|s| s.len() > 10),
            "{name}: description"
        );
    }
}

/// `promtool`, or None (with a message) when it is missing outside CI; fails under `CI`.
fn promtool() -> Option<&'static str> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool missing under CI (scripts/test.sh installs it)"
    );
    eprintln!("skipping: promtool not installed (apt-get install prometheus)");
    None
}

fn promtool_check_rules(promtool: &str, file: &Path) -> (bool, String) {
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_the_rules_their_unit_tests_and_every_dashboard_query() {
    let Some(promtool) = promtool() else { return };
    let (ok, out) = promtool_check_rules(promtool, &repo_path("deploy/prometheus/alerts.yml"));
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    // The unit tests: each alert fires on the series it is for (after its `for:`), with its
    // labels and annotations, and not on healthy ones (a 1 % 5xx route, a far certificate).
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(repo_path("deploy/prometheus/alerts_test.yml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("SUCCESS"), "{text}");

    // Each dashboard query, Grafana's variables given values, as a recording rule (a JSON
    // rule file is YAML), so promtool parses every expression.
    let rules: Vec<serde_json::Value> = dashboard_exprs(&dashboard())
        .iter()
        .filter(|e| !e.starts_with("label_values("))
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": e })
        })
        .collect();
    let n = rules.len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.json");
    let doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, doc.to_string()).unwrap();
    let (ok, out) = promtool_check_rules(promtool, &file);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{n} rules found")), "{out}");

    // Abuse: a broken expression is refused, so the checks above can fail.
    std::fs::write(
        &file,
        r#"{"groups":[{"name":"x","rules":[{"alert":"A","expr":"sum(rate(x[5m])"}]}]}"#,
    )
    .unwrap();
    assert!(!promtool_check_rules(promtool, &file).0);
}
