//! The policy chain in memory, without sockets: `policy::pipeline::run` for the policies of
//! `loadtest/scenarios/policies.toml` (API key → JWT → rate limit), each alone and all three
//! together, on a parsed request carrying the scenario's key and token. Prints ns per request;
//! asserts nothing beyond "the chain admits the request" (so a broken fixture cannot pass as fast).
//!
//!   cargo bench --bench policies

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::config::{compile, Compiled};
use ringway::http1;
use ringway::jwt::TokenCache;
use ringway::policy::pipeline::{self, Caller, Effects, Facts};

/// The scenario's fixtures: (keys file, policy config, request headers).
fn fixtures() -> (String, String, Vec<String>) {
    let text = std::fs::read_to_string("loadtest/scenarios/policies.toml").expect("scenario");
    let scn: toml::Table = toml::from_str(&text).expect("scenario toml");
    let ringway = scn["ringway"].as_table().expect("[ringway]");
    let keys = ringway["files"]["keys.toml"]
        .as_str()
        .expect("keys")
        .to_string();
    let config = ringway["config"].as_str().expect("config").to_string();
    let headers = scn["load"]["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| h.as_str().expect("header").to_string())
        .collect();
    (keys, config, headers)
}

fn build(dir: &Path, routes: &str) -> Compiled {
    let (keys, config, _) = fixtures();
    std::fs::write(dir.join("keys.toml"), keys).expect("write keys");
    let src = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\nenabled = false\n{}\n{routes}",
        config.replace("{dir}", &dir.display().to_string())
    );
    let file = dir.join("bench.toml");
    match compile::parse(&src, &file).and_then(|raw| compile::compile(raw, &src, &file, 1)) {
        Ok(c) => c,
        Err(errs) => panic!(
            "{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn policies(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ringway-bench-policies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (_, _, headers) = fixtures();
    let mut req = String::from("GET /item HTTP/1.1\r\nHost: bench\r\nUser-Agent: rwload\r\n");
    for h in &headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let cases: [(&str, &str); 4] = [
        ("api_key", "\"key\""),
        ("jwt_cached", "\"token\""),
        ("rate_limit", "\"limit\""),
        ("all_three", "\"key\", \"token\", \"limit\""),
    ];
    let mut group = c.benchmark_group("policy_chain");
    for (name, list) in cases {
        let routes =
            format!("[[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [{list}]\necho = {{}}\n");
        let cfg = build(&dir, &routes);
        let route = &cfg.routes[0];
        let (head, _) = http1::parse_request_head(req.as_bytes(), &cfg.limits)
            .expect("parses")
            .expect("complete");
        let mut tokens = TokenCache::new(4096);
        let run = |tokens: &mut TokenCache| {
            let facts = Facts {
                head: &head,
                route: &route.name,
                request_id: "bench",
                client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                client_ip_text: "127.0.0.1",
                ipv6_prefix: 64,
                unix_now: ringway::civil::unix_now(),
                mono_now: ringway::ratelimit::now_ns(),
                peer_cert: None,
                body: &[],
                body_complete: true,
                proto: "http",
                path: b"/",
                captures: &[],
            };
            let mut caller = Caller::default();
            let mut fx = Effects::default();
            let res = pipeline::run(
                &cfg.policies,
                &route.policies,
                0,
                &facts,
                &mut caller,
                &mut fx,
                tokens,
            );
            black_box(&fx);
            res
        };
        assert!(
            matches!(run(&mut tokens), Ok(None)),
            "{name}: the fixture request must be admitted"
        );
        group.bench_function(name, |b| b.iter(|| black_box(run(&mut tokens))));
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, policies);
criterion_main!(benches);
