mod common;
use common::*;

#[test]
fn static_echo_and_proxy_smoke() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"api\"\nprefix = \"/api\"\nproxy = {{ upstream = \"be\", strip_prefix = true }}\n\n[[routes]]\nname = \"echo\"\nprefix = \"/echo\"\necho = {{}}\n",
        upstream_toml("be", &[up.addr])
    ));
    let r = get(gw.addr, "/api/users?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().target, "/users?x=1");
    let r = request(gw.addr, "POST", "/echo/a", &[], b"hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "hello");
}
