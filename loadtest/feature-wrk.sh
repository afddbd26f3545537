#!/usr/bin/env bash
# Issue 17's comparisons with wrk (a load tool this project did not write), beside
# `rwcompare cache-hit` / `rwcompare gzip`: ringway and nginx doing the same work, one pinned
# worker each on CPU 0; wrk and the upstream (`rwload upstream`) on CPU 1. Rounds are
# interleaved; prints per round and the medians: req/s, gateway CPU µs per request, wrk's
# p50/p99, and ringway's req/CPU-s over nginx's.
#
#   cache-hit: GET answered from the response cache (20 B body). ringway `cache` policy;
#              nginx `proxy_cache` (+ proxy_cache_lock, a Cache-Status header).
#   gzip:      a 10 KiB JSON answer gzip-compressed at level 5 per request (no cache).
#              ringway `compress` policy; nginx `gzip on; gzip_comp_level 5`.
#   forward-auth: an authorization subrequest per request to the same upstream (issue 19).
#              ringway `forward_auth` policy; nginx `auth_request` to an internal location.
#
#   loadtest/feature-wrk.sh cache-hit|gzip|forward-auth [RINGWAY] [RWLOAD] [ROUNDS] [SECONDS]
#   loadtest/feature-wrk.sh gzip target/release/ringway target/release/rwload 3 8
set -euo pipefail
MODE=${1:?cache-hit, gzip or forward-auth} BIN=${2:-target/release/ringway} RWLOAD=${3:-target/release/rwload}
ROUNDS=${4:-3} SECS=${5:-8}
for t in wrk nginx taskset python3 curl; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
DIR=$(mktemp -d)
NGSRV=
. "$(dirname "$0")/ports.sh"
read -r UP GW NG < <(free_ports 3)
case $MODE in
  cache-hit)
    UPARGS="--body-size 20"
    HDR="X-Bench: 1"
    POLICY='[cache]
max_bytes = "256MiB"
[policies.p]
cache = { ttl = "600s" }'
    NGHTTP="proxy_cache_path $DIR/cache levels=1:2 keys_zone=rw:64m max_size=256m inactive=60m use_temp_path=off;"
    NGLOC="proxy_cache rw; proxy_cache_valid 200 600s; proxy_cache_lock on; add_header Cache-Status \$upstream_cache_status;"
    ;;
  gzip)
    UPARGS="--body-size 10KiB --json"
    HDR="Accept-Encoding: gzip"
    POLICY='[policies.p]
compress = { codings = ["gzip"], gzip_level = 5 }'
    NGHTTP="gzip on; gzip_comp_level 5; gzip_types application/json; gzip_min_length 1024; gzip_vary on;"
    NGLOC=""
    ;;
  forward-auth)
    UPARGS="--body-size 20"
    HDR="Authorization: Bearer bench-token"
    POLICY='[policies.p]
forward_auth = { upstream = "be", path = "/auth" }'
    NGHTTP=""
    NGLOC="auth_request /_auth;"
    NGSRV='location = /_auth { internal; proxy_pass http://be/auth; proxy_pass_request_body off; proxy_set_header Content-Length ""; proxy_set_header Connection ""; proxy_set_header X-Forwarded-Uri $request_uri; proxy_set_header X-Forwarded-Method $request_method; }'
    ;;
  *) echo "unknown mode $MODE (cache-hit, gzip or forward-auth)" >&2; exit 2 ;;
esac
taskset -c 1 "$RWLOAD" upstream --listen "127.0.0.1:$UP" $UPARGS >"$DIR/up.log" 2>&1 & UPID=$!
trap 'kill $UPID 2>/dev/null; rm -rf "$DIR"' EXIT
mkdir -p "$DIR/ngx"
cat >"$DIR/nginx.conf" <<NGX
worker_processes 1; worker_cpu_affinity 1; daemon off; pid $DIR/nginx.pid; error_log $DIR/nginx-error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
  client_body_temp_path $DIR/ngx/cb; proxy_temp_path $DIR/ngx/px; fastcgi_temp_path $DIR/ngx/fc;
  uwsgi_temp_path $DIR/ngx/uw; scgi_temp_path $DIR/ngx/sc;
  upstream be { server 127.0.0.1:$UP; keepalive 256; }
  proxy_http_version 1.1; proxy_set_header Connection "";
  proxy_set_header Host \$http_host;
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_set_header X-Request-Id \$request_id; add_header X-Request-Id \$request_id always;
  $NGHTTP
  server { listen 127.0.0.1:$NG reuseport; $NGSRV location / { proxy_pass http://be; $NGLOC } } }
NGX
cat >"$DIR/ringway.toml" <<TOML
version = 1
[[listeners]]
address = "127.0.0.1:$GW"
[upstreams.be]
targets = [{ address = "127.0.0.1:$UP" }]
max_idle = 256
$POLICY
[[routes]]
name = "p"
prefix = "/"
policies = ["p"]
proxy = { upstream = "be" }
TOML
"$BIN" check --config "$DIR/ringway.toml" >/dev/null
. "$(dirname "$0")/wrk-round.sh"
OUT="$DIR/rows"
for r in $(seq "$ROUNDS"); do
  for gw in ringway nginx; do
    if [ $gw = ringway ]; then
      taskset -c 0 "$BIN" --config "$DIR/ringway.toml" --workers 1 2>"$DIR/gw.log" & PID=$!
      PORT=$GW
    else
      taskset -c 0 nginx -c "$DIR/nginx.conf" & PID=$!
      PORT=$NG
    fi
    for _ in $(seq 100); do curl -sf -o /dev/null -H "$HDR" "http://127.0.0.1:$PORT/item" && break; sleep 0.05; done
    wrk_round "$r" $gw $PID "$OUT" -H "$HDR" "http://127.0.0.1:$PORT/item"
  done
done
wrk_medians "$OUT" "scenario $MODE (wrk -t1 -c50, 1 gateway worker each on CPU 0)" nginx ringway
