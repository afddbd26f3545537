# loadtest/proxy-small-env.sh — sourced by the wrk-driven scripts (wrk-ab.sh, instructions.sh):
# proxy-small's setup outside rwcompare. `proxy_small_env DIR` writes DIR/gw.toml (one route
# proxying everything to one upstream, an admin listener) and DIR/nginx.conf (the upstream: a
# 20-byte `return 200`), starts that nginx on CPU 1, and sets UP, GW and ADM (the ports) and
# NGX (nginx's pid; the caller's EXIT trap kills it).
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

proxy_small_env() {
  local dir=$1
  read -r UP GW ADM < <(free_ports 3)
  cat >"$dir/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from upstream!"; } } }
NGX
  cat >"$dir/gw.toml" <<TOML
version = 1
[[listeners]]
address = "127.0.0.1:$GW"
[admin]
address = "127.0.0.1:$ADM"
[upstreams.be]
targets = [{ address = "127.0.0.1:$UP" }]
[[routes]]
name = "p"
prefix = "/"
proxy = { upstream = "be" }
TOML
  taskset -c 1 nginx -c "$dir/nginx.conf" &
  NGX=$!
}
