//! Route lookup cost for tables of 10, 1 000 and 10 000 routes.
//!
//! Each table mixes exact paths, templates and prefixes over several host tiers (exact hosts,
//! a wildcard, any-host). Measured: an exact-path hit declared near the end, a template hit
//! (with a capture) and a miss that falls through every tier.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringway::http1::Method;
use ringway::route::*;

struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

fn host_for(i: usize) -> Vec<HostPattern> {
    match i % 4 {
        0 => vec![HostPattern::Exact("api.example.com".into())],
        1 => vec![HostPattern::Exact("admin.example.com".into())],
        2 => vec![HostPattern::Wildcard(".example.com".into())],
        _ => Vec::new(),
    }
}

fn host_name(i: usize) -> &'static str {
    match i % 4 {
        0 => "api.example.com",
        1 => "admin.example.com",
        2 => "www.example.com",
        _ => "other.org",
    }
}

/// Route `i`: exact path, template or prefix depending on `i % 3`, unique per `i`.
fn build(n: usize) -> RouteTable {
    let specs: Vec<RouteSpec> = (0..n)
        .map(|i| {
            let path = match i % 3 {
                0 => PathPattern::Exact(format!("/svc{i}/health")),
                1 => PathPattern::Template(format!("/svc{i}/users/{{id}}")),
                _ => PathPattern::Prefix(format!("/svc{i}/static")),
            };
            RouteSpec {
                id: RouteId(i as u32),
                hosts: host_for(i),
                path,
                methods: if i % 2 == 0 { Method::Get.bit() } else { 0 },
                headers: Vec::new(),
                cookies: Vec::new(),
                query: Vec::new(),
                case_insensitive: false,
            }
        })
        .collect();
    match RouteTable::build(&specs) {
        Ok(t) => t,
        Err(e) => panic!("bench table has conflicts: {e:?}"),
    }
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [10usize, 1_000, 10_000] {
        let table = build(n);
        // Last exact-path route and last template route in declaration order.
        let exact_i = (0..n).rev().find(|i| i % 3 == 0).unwrap_or(0);
        let tmpl_i = (0..n).rev().find(|i| i % 3 == 1).unwrap_or(1);
        let exact_path = format!("/svc{exact_i}/health");
        let tmpl_path = format!("/svc{tmpl_i}/users/12345");
        let cases: [(&str, &str, &[u8]); 3] = [
            ("exact_hit_last", host_name(exact_i), exact_path.as_bytes()),
            ("template_hit", host_name(tmpl_i), tmpl_path.as_bytes()),
            ("miss", "www.example.com", b"/nope/users/1"),
        ];
        for (name, host, path) in cases {
            let req = RouteRequest {
                host,
                method: Method::Get,
                path,
                query: Some(b"a=1&b=2"),
            };
            let expect_hit = name != "miss";
            let got = table.lookup(&req, &NoHeaders);
            assert_eq!(
                matches!(got, Lookup::Found { .. }),
                expect_hit,
                "{name} n={n}: {got:?}"
            );
            group.bench_with_input(BenchmarkId::new(name, n), &req, |b, req| {
                b.iter(|| table.lookup(black_box(req), &NoHeaders))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
