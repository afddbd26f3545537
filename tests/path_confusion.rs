//! Path confusion: every spelling of a protected path that nginx, Express, Spring or Tomcat
//! would serve as the same resource is either refused (400) or routed to the protected route;
//! none reaches the unauthenticated catch-all upstream. Also: the normalized path is what goes
//! upstream, and the `[paths]` options change the rules as documented.
mod common;
use common::*;

/// Status and body of a one-shot request whose target is sent verbatim.
fn fetch(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let bytes = raw(addr, req.as_bytes());
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (first_status(&bytes), body)
}

fn config(up: std::net::SocketAddr, extra: &str, case_insensitive: bool) -> String {
    format!(
        "{extra}\n{}\n\
         [[routes]]\nname = \"admin\"\nprefix = \"/admin\"\ncase_insensitive = {case_insensitive}\n\
         static = {{ status = 403, body = \"protected\" }}\n\n\
         [[routes]]\nname = \"catch-all\"\nprefix = \"/\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up])
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// The protected route answered (403 "protected").
    Protected,
    /// Refused with 400 before routing.
    Refused,
}

#[test]
fn every_spelling_of_a_protected_path_is_refused_or_protected() {
    use Want::*;
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, "", true));
    let table: &[(&str, Want)] = &[
        ("/admin", Protected),
        ("/admin/", Protected),
        ("/admin/x", Protected),
        ("//admin", Protected),
        ("///admin//x", Protected),
        ("//ADMIN//", Protected),
        ("/admin;x", Protected),
        ("/admin;jsessionid=1/x", Protected),
        ("/;/admin", Protected),
        ("/;x/admin", Protected),
        ("/public/..;/admin", Protected),
        ("/..;/admin", Protected),
        ("/%61dmin", Protected),
        ("/%41DMIN", Protected),
        ("/ADMIN", Protected),
        ("/Admin/x", Protected),
        ("/./admin", Protected),
        ("/x/../admin", Protected),
        ("/x/y/../../admin", Protected),
        ("/admin?q=1", Protected),
        ("/admin%2Fx", Refused),
        ("/admin%2fx", Refused),
        ("/%2Fadmin", Refused),
        ("/x%2F..%2Fadmin", Refused),
        ("/admin%5Cx", Refused),
        ("/admin%5cx", Refused),
        ("/admin\\x", Refused),
        ("/x\\..\\admin", Refused),
        ("/admin%00", Refused),
        ("/admin%00/x", Refused),
        ("/%2e%2e/admin", Refused),
        ("/x/%2e%2e/admin", Refused),
        ("/x/.%2E/admin", Refused),
    ];
    let mut wrong = Vec::new();
    for &(target, want) in table {
        let (status, body) = fetch(gw.addr, target);
        let got = match status {
            403 if body.contains("protected") => Some(Protected),
            400 => Some(Refused),
            _ => None,
        };
        if got != Some(want) {
            wrong.push(format!("{target}: want {want:?}, got {status} {body:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        up.count(),
        0,
        "the catch-all upstream received: {:?}",
        up.requests()
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>()
    );

    // Control: other paths reach the catch-all, with the normalized path.
    assert_eq!(fetch(gw.addr, "/public").0, 200);
    assert_eq!(up.last().target, "/public");
    assert_eq!(fetch(gw.addr, "/public//a;v=1/../b?q=%2F").0, 200);
    assert_eq!(
        up.last().target,
        "/public/b?q=%2F",
        "normalized path upstream"
    );
    assert_eq!(fetch(gw.addr, "/%70ublic/adminx").0, 200);
    assert_eq!(up.last().target, "/public/adminx");
    assert_eq!(up.count(), 3);
}

#[test]
fn a_case_sensitive_route_protects_only_its_exact_case() {
    // Documented: paths are case-sensitive unless the route says otherwise, so a backend that
    // ignores case needs `case_insensitive = true` on the protecting route.
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, "", false));
    assert_eq!(fetch(gw.addr, "//admin;x").0, 403);
    assert_eq!(up.count(), 0);
    assert_eq!(fetch(gw.addr, "/ADMIN").0, 200);
    assert_eq!(up.last().target, "/ADMIN");
}

#[test]
fn path_options_change_the_rules() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(
        up.addr,
        "[paths]\nescaped_slashes = \"unescape\"\npath_params = \"reject\"\n",
        true,
    ));
    for target in ["/admin%2Fx", "/x%2F..%2Fadmin", "/admin%5Cx", "/admin\\x"] {
        let (status, body) = fetch(gw.addr, target);
        assert!(
            status == 400 || (status == 403 && body.contains("protected")),
            "{target}: {status} {body}"
        );
    }
    assert_eq!(fetch(gw.addr, "/admin;x").0, 400);
    assert_eq!(fetch(gw.addr, "/public;x").0, 400);
    assert_eq!(fetch(gw.addr, "/public%2Fx").0, 200);
    assert_eq!(up.last().target, "/public/x");
    assert_eq!(up.count(), 1);

    // `keep` and `merge_slashes = false` hand the spellings to the upstream as they are.
    let up2 = Upstream::echo();
    let gw2 = Gateway::start(&config(
        up2.addr,
        "[paths]\nescaped_slashes = \"keep\"\npath_params = \"keep\"\nmerge_slashes = false\n",
        true,
    ));
    assert_eq!(fetch(gw2.addr, "/public%2Fx;y").0, 200);
    assert_eq!(up2.last().target, "/public%2Fx;y");
    assert_eq!(fetch(gw2.addr, "/admin%00").0, 400, "%00 is refused always");

    let (code, out, err) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"a\"\nprefix = \"/Admin\"\n\
         case_insensitive = true\nstatic = { status = 403 }\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("^ /Admin (any case)"), "{out}");
    let (code, _, err) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[paths]\nescaped_slashes = \"decode\"\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains(":5:") && err.contains("paths.escaped_slashes"),
        "{err}"
    );
}

/// The same for the host: a protected host route is reached by every spelling of its host a
/// backend could take for it, or the request is refused; none reaches the catch-all. Before,
/// `admin.example.com,x` matched no host route and reached the catch-all, with that value in
/// `X-Forwarded-Host`, whose first list member Express (`trust proxy`) reads as the host.
#[test]
fn every_spelling_of_a_protected_host_is_refused_or_protected() {
    use Want::*;
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}\n\
         [[routes]]\nname = \"admin\"\nhosts = [\"admin.example.com\"]\nprefix = \"/\"\n\
         static = {{ status = 403, body = \"protected\" }}\n\n\
         [[routes]]\nname = \"catch-all\"\nprefix = \"/\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let cases: &[(&str, Want)] = &[
        ("admin.example.com", Protected),
        ("ADMIN.Example.COM", Protected),
        ("admin.example.com.", Protected),
        ("admin.example.com:80", Protected),
        ("admin.example.com,public", Refused),
        ("admin.example.com;x", Refused),
        ("admin.example.com=", Refused),
        ("%61dmin.example.com", Refused),
        ("[admin.example.com]", Refused),
        ("admin.example.com\\", Refused),
    ];
    for &(host, want) in cases {
        let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let bytes = raw(gw.addr, req.as_bytes());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let got = match (first_status(&bytes), text.ends_with("protected")) {
            (403, true) => Protected,
            (400, _) => Refused,
            other => panic!("Host {host:?}: {other:?} reached the catch-all?\n{text}"),
        };
        assert_eq!(got, want, "Host {host:?}\n{text}");
    }
    assert_eq!(up.count(), 0, "no spelling reached the upstream");
}

/// The method is part of the match too. `get` is not GET to the router, but Werkzeug, Rack and
/// others fold it into GET; and a HEAD runs a framework's GET handler. A route for GET only
/// must not let either through to a broader route: `get` is refused (as nginx does), and HEAD
/// is answered by the GET route, behind its policies.
#[test]
fn method_spellings_cannot_reach_a_catch_all_past_a_get_route() {
    let up = Upstream::echo();
    let cfg = format!(
        "{}\n[[routes]]\nname = \"admin\"\nprefix = \"/admin\"\nmethods = [\"GET\"]\n\
         static = {{ status = 403, body = \"protected\" }}\n\n\
         [[routes]]\nname = \"catch-all\"\nprefix = \"/\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&cfg);
    let send = |line: &str| {
        let req = format!("{line} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        first_status(&raw(gw.addr, req.as_bytes()))
    };
    assert_eq!(send("GET /admin/users"), 403);
    for method in ["get", "gEt", "Get", "head", "post", "purge"] {
        assert_eq!(send(&format!("{method} /admin/users")), 400, "{method}");
    }
    assert_eq!(
        send("HEAD /admin/users"),
        403,
        "HEAD is answered by the GET route"
    );
    assert_eq!(up.count(), 0, "nothing reached the catch-all upstream");
    // Other methods still fall through as configured, and upper-case extension methods pass.
    assert_eq!(send("POST /admin/users"), 200);
    assert_eq!(send("PURGE /anything"), 200);
    assert_eq!(up.count(), 2);
}
