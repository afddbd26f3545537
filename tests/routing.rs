//! Router behaviour over real sockets: match kinds, host tiers, precedence, conditions,
//! method sets, and the 404 / 405 answers.
mod common;
use common::*;

/// One echo route named `name` with the given extra TOML lines (path, hosts, conditions...).
fn echo_route(name: &str, lines: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\n{lines}\necho = {{}}\n\n")
}

/// Sends a request and returns the name of the route that answered (echo "route" field), or
/// the status code as a string when it was not a 200.
fn hit(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut c = Conn::open(gw.addr);
    c.send(&build_request(method, path, headers, b""));
    let r = c.read_response(method == "HEAD").unwrap_or_else(|e| {
        panic!(
            "{method} {path}: no response ({e}); gateway logs:\n{}",
            gw.logs()
        )
    });
    if r.status != 200 {
        return r.status.to_string();
    }
    r.json()["route"]
        .as_str()
        .unwrap_or_else(|| panic!("echo body without route: {}", r.text()))
        .to_string()
}

fn get_route(gw: &Gateway, path: &str) -> String {
    hit(gw, "GET", path, &[])
}

fn host_route(gw: &Gateway, host: &str, path: &str) -> String {
    hit(gw, "GET", path, &[("Host", host)])
}

#[test]
fn exact_path_matches_only_that_path() {
    let gw = Gateway::start(&echo_route("exact", "path = \"/exact\""));
    assert_eq!(get_route(&gw, "/exact"), "exact");
    assert_eq!(
        get_route(&gw, "/exact?x=1"),
        "exact",
        "query is not part of the path"
    );
    assert_eq!(get_route(&gw, "/exact/"), "404");
    assert_eq!(get_route(&gw, "/exact/x"), "404");
    assert_eq!(get_route(&gw, "/exactly"), "404");
    assert_eq!(get_route(&gw, "/"), "404");
}

#[test]
fn prefix_is_segment_aware() {
    let gw = Gateway::start(&echo_route("api", "prefix = \"/api\""));
    for p in ["/api", "/api/", "/api/x", "/api/x/y/z", "/api?q=1"] {
        assert_eq!(get_route(&gw, p), "api", "{p}");
    }
    for p in ["/apix", "/ap", "/", "/v1/api"] {
        assert_eq!(get_route(&gw, p), "404", "{p}");
    }
}

#[test]
fn template_param_takes_exactly_one_segment() {
    let gw = Gateway::start(&echo_route("user", "path = \"/users/{id}\""));
    assert_eq!(get_route(&gw, "/users/42"), "user");
    assert_eq!(get_route(&gw, "/users/abc-def?x=y"), "user");
    assert_eq!(get_route(&gw, "/users"), "404");
    assert_eq!(
        get_route(&gw, "/users/"),
        "404",
        "empty segment is not a param"
    );
    assert_eq!(get_route(&gw, "/users/42/posts"), "404");
    assert_eq!(get_route(&gw, "/usersx/42"), "404");
}

#[test]
fn catch_all_takes_the_rest() {
    let gw = Gateway::start(&echo_route("files", "path = \"/files/{*rest}\""));
    for p in ["/files", "/files/", "/files/a", "/files/a/b/c.txt"] {
        assert_eq!(get_route(&gw, p), "files", "{p}");
    }
    for p in ["/filesx", "/file", "/x/files/a"] {
        assert_eq!(get_route(&gw, p), "404", "{p}");
    }
}

#[test]
fn exact_beats_template_beats_prefix_regardless_of_order() {
    // Declared least specific first so declaration order cannot explain the result.
    let cfg = [
        echo_route("prefix", "prefix = \"/users\""),
        echo_route("template", "path = \"/users/{id}\""),
        echo_route("exact", "path = \"/users/me\""),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(get_route(&gw, "/users/me"), "exact");
    assert_eq!(get_route(&gw, "/users/42"), "template");
    assert_eq!(get_route(&gw, "/users/42/posts"), "prefix");
    assert_eq!(get_route(&gw, "/users"), "prefix");
    assert_eq!(get_route(&gw, "/users/"), "prefix");
}

#[test]
fn longer_prefix_wins() {
    let cfg = [
        echo_route("short", "prefix = \"/a\""),
        echo_route("long", "prefix = \"/a/b\""),
        echo_route("longest", "prefix = \"/a/b/c\""),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(get_route(&gw, "/a/b/c/d"), "longest");
    assert_eq!(get_route(&gw, "/a/b/c"), "longest");
    assert_eq!(get_route(&gw, "/a/b/cd"), "long");
    assert_eq!(get_route(&gw, "/a/b/x"), "long");
    assert_eq!(get_route(&gw, "/a/bc"), "short");
    assert_eq!(get_route(&gw, "/a"), "short");
    assert_eq!(get_route(&gw, "/ab"), "404");
}

#[test]
fn host_tiers_exact_then_wildcard_then_any() {
    let cfg = [
        echo_route("any", "prefix = \"/\""),
        echo_route("wild", "hosts = [\"*.example.com\"]\nprefix = \"/\""),
        echo_route("deepwild", "hosts = [\"*.b.example.com\"]\nprefix = \"/\""),
        echo_route("exact", "hosts = [\"api.example.com\"]\nprefix = \"/\""),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(host_route(&gw, "api.example.com", "/x"), "exact");
    assert_eq!(
        host_route(&gw, "API.Example.COM:8080", "/x"),
        "exact",
        "host is matched case-insensitively and without the port"
    );
    assert_eq!(
        host_route(&gw, "api.example.com.", "/x"),
        "exact",
        "a trailing dot is the same host"
    );
    assert_eq!(host_route(&gw, "web.example.com", "/x"), "wild");
    assert_eq!(host_route(&gw, "a.x.example.com", "/x"), "wild");
    assert_eq!(
        host_route(&gw, "a.b.example.com", "/x"),
        "deepwild",
        "longer wildcard suffix first"
    );
    assert_eq!(
        host_route(&gw, "example.com", "/x"),
        "any",
        "*.example.com does not match the bare domain"
    );
    assert_eq!(host_route(&gw, "other.org", "/x"), "any");
    assert_eq!(host_route(&gw, "notexample.com", "/x"), "any");
    // Absolute-form target: its authority is the routing host.
    let r = raw(
        gw.addr,
        b"GET http://api.example.com/x HTTP/1.1\r\nHost: other.org\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(first_status(&r), 200);
    assert!(
        String::from_utf8_lossy(&r).contains("\"route\":\"exact\""),
        "{}",
        String::from_utf8_lossy(&r)
    );
}

#[test]
fn specific_host_tier_without_matching_route_falls_through() {
    let cfg = [
        echo_route("any-root", "prefix = \"/\""),
        echo_route("wild-w", "hosts = [\"*.example.com\"]\nprefix = \"/w\""),
        echo_route(
            "exact-only",
            "hosts = [\"api.example.com\"]\npath = \"/only\"",
        ),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(host_route(&gw, "api.example.com", "/only"), "exact-only");
    assert_eq!(
        host_route(&gw, "api.example.com", "/w/1"),
        "wild-w",
        "exact tier has no /w route: wildcard tier answers"
    );
    assert_eq!(
        host_route(&gw, "api.example.com", "/zzz"),
        "any-root",
        "neither exact nor wildcard tier matches: any-host tier answers"
    );
    assert_eq!(host_route(&gw, "x.example.com", "/only"), "any-root");
    assert_eq!(host_route(&gw, "other.org", "/w/1"), "any-root");
}

#[test]
fn host_tier_falls_through_on_method_too() {
    let cfg = [
        echo_route("any-post", "path = \"/m\"\nmethods = [\"POST\"]"),
        echo_route(
            "exact-get",
            "hosts = [\"api.example.com\"]\npath = \"/m\"\nmethods = [\"GET\"]",
        ),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(
        hit(&gw, "GET", "/m", &[("Host", "api.example.com")]),
        "exact-get"
    );
    assert_eq!(
        hit(&gw, "POST", "/m", &[("Host", "api.example.com")]),
        "any-post"
    );
    // Neither tier accepts DELETE: 405 listing the union of both tiers' methods.
    let r = request(gw.addr, "DELETE", "/m", &[("Host", "api.example.com")], b"");
    assert_eq!(r.status, 405);
    let allow = r.header("allow").expect("Allow header");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort();
    assert_eq!(methods, ["GET", "POST"], "Allow: {allow}");
}

#[test]
fn more_conditions_win_over_fewer() {
    // Declared fewest-conditions first so declaration order cannot explain the result.
    let cfg = [
        echo_route("none", "prefix = \"/c\""),
        echo_route("one", "prefix = \"/c\"\nheaders = { \"x-a\" = \"1\" }"),
        echo_route(
            "two",
            "prefix = \"/c\"\nheaders = { \"x-a\" = \"1\" }\nquery = { \"debug\" = true }",
        ),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(hit(&gw, "GET", "/c/x?debug", &[("X-A", "1")]), "two");
    assert_eq!(hit(&gw, "GET", "/c/x?debug=yes", &[("X-A", "1")]), "two");
    assert_eq!(hit(&gw, "GET", "/c/x", &[("X-A", "1")]), "one");
    assert_eq!(hit(&gw, "GET", "/c/x?debug", &[("X-A", "2")]), "none");
    assert_eq!(hit(&gw, "GET", "/c/x?debug", &[]), "none");
}

#[test]
fn header_conditions_equals_and_present() {
    let cfg = [
        echo_route("default", "prefix = \"/h\""),
        echo_route(
            "beta",
            "prefix = \"/h\"\nheaders = { \"X-Version\" = \"beta\" }",
        ),
        echo_route(
            "canary",
            "prefix = \"/h/c\"\nheaders = { \"x-canary\" = true }",
        ),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(hit(&gw, "GET", "/h", &[("X-Version", "beta")]), "beta");
    assert_eq!(
        hit(&gw, "GET", "/h", &[("x-version", "beta")]),
        "beta",
        "header names are case-insensitive"
    );
    assert_eq!(
        hit(&gw, "GET", "/h", &[("X-Version", "Beta")]),
        "default",
        "values compare exactly"
    );
    assert_eq!(hit(&gw, "GET", "/h", &[("X-Version", "beta2")]), "default");
    assert_eq!(hit(&gw, "GET", "/h", &[]), "default");
    assert_eq!(
        hit(&gw, "GET", "/h/c", &[("X-Canary", "anything")]),
        "canary"
    );
    assert_eq!(hit(&gw, "GET", "/h/c", &[("X-Canary", "0")]), "canary");
    assert_eq!(
        hit(&gw, "GET", "/h/c", &[]),
        "default",
        "without the header the shorter prefix answers"
    );
}

#[test]
fn query_conditions_equals_and_present_are_percent_decoded() {
    let cfg = [
        echo_route("default", "prefix = \"/q\""),
        echo_route("eq", "path = \"/q/eq\"\nquery = { \"name\" = \"a b/c\" }"),
        echo_route("present", "path = \"/q/p\"\nquery = { \"flag\" = true }"),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(get_route(&gw, "/q/eq?name=a%20b%2Fc"), "eq");
    assert_eq!(get_route(&gw, "/q/eq?x=1&name=a%20b/c&y=2"), "eq");
    assert_eq!(
        get_route(&gw, "/q/eq?%6eame=a%20b%2fc"),
        "eq",
        "name is decoded too"
    );
    assert_eq!(
        get_route(&gw, "/q/eq?name=a+b/c"),
        "default",
        "+ is not a space"
    );
    assert_eq!(get_route(&gw, "/q/eq?name=a%20b"), "default");
    assert_eq!(get_route(&gw, "/q/eq?names=a%20b%2Fc"), "default");
    assert_eq!(get_route(&gw, "/q/eq"), "default");

    assert_eq!(get_route(&gw, "/q/p?flag"), "present");
    assert_eq!(get_route(&gw, "/q/p?flag="), "present");
    assert_eq!(get_route(&gw, "/q/p?a=1&flag=0"), "present");
    assert_eq!(get_route(&gw, "/q/p?fl%61g=1"), "present");
    assert_eq!(get_route(&gw, "/q/p?flagx=1"), "default");
    assert_eq!(get_route(&gw, "/q/p?x=flag"), "default");
    assert_eq!(get_route(&gw, "/q/p"), "default");
}

/// A condition read the first copy of its header, query parameter or cookie while the request
/// went upstream with every copy: `X-Env: dev` then `X-Env: prod` missed a route guarding
/// `x-env = prod` and reached the open route, whose backend may read `prod` (PHP reads the
/// last `admin` of `?admin=0&admin=1`). A repeated field some condition reads is now 400, and
/// a condition reads the spellings backends read as its name (`X_Env`, `s%69d`, `, sid=`).
#[test]
fn conditions_see_every_copy_and_spelling_of_what_they_read() {
    let cfg = [
        echo_route("open", "prefix = \"/\""),
        echo_route("prod", "prefix = \"/\"\nheaders = { \"x-env\" = \"prod\" }"),
        echo_route("admin", "prefix = \"/a\"\nquery = { \"admin\" = \"1\" }"),
        echo_route("sid", "prefix = \"/c\"\ncookies = { \"sid\" = \"root\" }"),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    // One copy: routed by it, whichever spelling.
    assert_eq!(hit(&gw, "GET", "/x", &[("X-Env", "dev")]), "open");
    assert_eq!(hit(&gw, "GET", "/x", &[("X-Env", "prod")]), "prod");
    assert_eq!(hit(&gw, "GET", "/x", &[("X_Env", "prod")]), "prod");
    assert_eq!(hit(&gw, "GET", "/a?admin=1", &[]), "admin");
    assert_eq!(hit(&gw, "GET", "/a?admin=0", &[]), "open");
    assert_eq!(hit(&gw, "GET", "/c", &[("Cookie", "sid=root")]), "sid");
    assert_eq!(hit(&gw, "GET", "/c", &[("Cookie", "x=1, sid=root")]), "sid");
    assert_eq!(hit(&gw, "GET", "/c", &[("Cookie", "s%69d=root")]), "sid");
    assert_eq!(hit(&gw, "GET", "/c", &[("Cookie", "sid=guest")]), "open");
    // Two copies: refused, whatever the route would have been.
    for (path, headers) in [
        ("/x", vec![("X-Env", "dev"), ("X-Env", "prod")]),
        ("/x", vec![("X-Env", "dev"), ("X_Env", "prod")]),
        ("/a?admin=0&admin=1", vec![]),
        ("/a?admin=0&adm%69n=1", vec![]),
        ("/c", vec![("Cookie", "sid=guest; sid=root")]),
        (
            "/c",
            vec![("Cookie", "sid=guest"), ("Cookie", "x=1, sid=root")],
        ),
    ] {
        assert_eq!(hit(&gw, "GET", path, &headers), "400", "{path} {headers:?}");
    }
    // Fields no condition reads may repeat.
    assert_eq!(
        hit(
            &gw,
            "GET",
            "/x?b=1&b=2",
            &[("X-Other", "1"), ("X-Other", "2")]
        ),
        "open"
    );
}

#[test]
fn method_sets_and_405_with_allow() {
    let cfg = [
        echo_route("read", "path = \"/m\"\nmethods = [\"GET\", \"HEAD\"]"),
        echo_route("write", "path = \"/m\"\nmethods = [\"POST\", \"PUT\"]"),
        echo_route("anymethod", "path = \"/any\""),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(hit(&gw, "GET", "/m", &[]), "read");
    assert_eq!(hit(&gw, "POST", "/m", &[]), "write");
    assert_eq!(hit(&gw, "PUT", "/m", &[]), "write");
    let r = request(gw.addr, "HEAD", "/m", &[], b"");
    assert_eq!(r.status, 200);

    let r = request(gw.addr, "DELETE", "/m", &[], b"");
    assert_eq!(r.status, 405, "{}", r.text());
    let allow = r.header("allow").expect("405 must carry Allow");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort();
    assert_eq!(methods, ["GET", "HEAD", "POST", "PUT"], "Allow: {allow}");
    let j = r.json();
    assert_eq!(j["status"], 405);
    assert_eq!(j["code"], "method_not_allowed");

    // A route without a method list accepts anything, extension methods included.
    assert_eq!(hit(&gw, "DELETE", "/any", &[]), "anymethod");
    assert_eq!(hit(&gw, "PATCH", "/any", &[]), "anymethod");
    assert_eq!(hit(&gw, "PURGE", "/any", &[]), "anymethod");
    // An extension method on a restricted path is 405, not 404.
    let r = request(gw.addr, "PURGE", "/m", &[], b"");
    assert_eq!(r.status, 405);
}

#[test]
fn no_route_is_404_problem_json_and_connection_stays_usable() {
    let gw = Gateway::start(&echo_route("only", "path = \"/only\""));
    let mut c = Conn::open(gw.addr);
    let r = c.request("GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let j = r.json();
    assert_eq!(j["status"], 404);
    assert_eq!(j["code"], "not_found");
    assert_eq!(j["title"], "Not Found");
    let rid = r.header("x-request-id").expect("x-request-id on errors");
    assert_eq!(j["request_id"], rid);
    // 404 does not end the connection: the next request on it is served.
    let r = c.request("GET", "/only", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["route"], "only");
}

#[test]
fn dot_segments_are_normalized_before_routing() {
    let cfg = [
        echo_route("public", "prefix = \"/public\""),
        echo_route(
            "admin",
            "prefix = \"/admin\"\nheaders = { \"x-admin-token\" = \"s3cret\" }",
        ),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    // /public/../admin is /admin: it must not reach a route as /public, and the admin route
    // still requires its header.
    assert_eq!(get_route(&gw, "/public/../admin/x"), "404");
    assert_eq!(
        hit(
            &gw,
            "GET",
            "/public/../admin/x",
            &[("X-Admin-Token", "s3cret")]
        ),
        "admin"
    );
    assert_eq!(get_route(&gw, "/public/./a/../b"), "public");
    // Encoded dot segments are refused rather than guessed at.
    let r = get(gw.addr, "/public/%2e%2e/admin");
    assert_eq!(r.status, 400);
}

#[test]
fn catch_all_template_and_prefix_precedence() {
    let cfg = [
        echo_route("prefix", "prefix = \"/files\""),
        echo_route("catchall", "path = \"/files/{*rest}\""),
        echo_route("one-seg", "path = \"/files/{name}\""),
        echo_route("deep-prefix", "prefix = \"/files/special\""),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(get_route(&gw, "/files/a"), "one-seg", "full template first");
    assert_eq!(
        get_route(&gw, "/files/a/b"),
        "catchall",
        "catch-all before equal-depth prefix"
    );
    assert_eq!(get_route(&gw, "/files"), "catchall");
    assert_eq!(
        get_route(&gw, "/files/special/x"),
        "deep-prefix",
        "deeper first"
    );
    assert_eq!(get_route(&gw, "/files/special"), "one-seg");
}

#[test]
fn specific_route_with_failing_conditions_or_method_falls_back() {
    let cfg = [
        echo_route("fallback", "prefix = \"/\""),
        echo_route("template", "path = \"/users/{id}\""),
        echo_route(
            "me-admin",
            "path = \"/users/me\"\nheaders = { \"x-role\" = \"admin\" }",
        ),
        echo_route("get-only", "path = \"/ro\"\nmethods = [\"GET\"]"),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(
        hit(&gw, "GET", "/users/me", &[("X-Role", "admin")]),
        "me-admin"
    );
    assert_eq!(
        hit(&gw, "GET", "/users/me", &[("X-Role", "user")]),
        "template",
        "exact path whose condition fails gives way to the template"
    );
    assert_eq!(hit(&gw, "GET", "/ro", &[]), "get-only");
    assert_eq!(
        hit(&gw, "DELETE", "/ro", &[]),
        "fallback",
        "a method miss is 405 only when no other route matches"
    );
}

#[test]
fn a_route_can_serve_several_hosts() {
    let cfg = [
        echo_route("other", "prefix = \"/\""),
        echo_route(
            "multi",
            "hosts = [\"a.example\", \"*.b.example\", \"127.0.0.1\"]\nprefix = \"/\"",
        ),
    ]
    .concat();
    let gw = Gateway::start(&cfg);
    assert_eq!(host_route(&gw, "a.example", "/"), "multi");
    assert_eq!(host_route(&gw, "x.b.example", "/"), "multi");
    assert_eq!(
        host_route(&gw, &gw.addr.to_string(), "/"),
        "multi",
        "IP literal with port"
    );
    assert_eq!(host_route(&gw, "b.example", "/"), "other");
    assert_eq!(host_route(&gw, "c.example", "/"), "other");
}

#[test]
fn percent_encoded_unreserved_characters_route_like_plain_ones() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"deny-admin\"\nprefix = \"/admin\"\nstatic = {{ status = 403, body = \"no\" }}\n\n\
         [[routes]]\nname = \"app\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    assert_eq!(get(gw.addr, "/admin/users").status, 403);
    for p in ["/%61dmin/users", "/%61%64%6D%69%6E/users"] {
        let r = get(gw.addr, p);
        assert!(
            r.status == 403 || r.status == 400,
            "{p}: status {} (routed to the upstream instead of the deny route)",
            r.status
        );
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

/// Found by fuzzing normalize_path: a stray `%` before a decodable escape let normalization
/// build a new escape (`/%6%31dmin` became `/%61dmin`), which missed the deny route and reached
/// the upstream, which reads it as `/admin`. A malformed escape is now a 400.
#[test]
fn stray_percent_cannot_assemble_an_escape_past_the_router() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"deny-admin\"\nprefix = \"/admin\"\nstatic = {{ status = 403, body = \"no\" }}\n\n\
         [[routes]]\nname = \"app\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    for p in ["/%6%31dmin/users", "/%%36%31dmin/users", "/a%/x", "/a/%zz"] {
        assert_eq!(get(gw.addr, p).status, 400, "{p}");
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
    // Well-formed escapes of reserved characters still pass through unchanged.
    let r = get(gw.addr, "/x%3Fy%2561");
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
}
