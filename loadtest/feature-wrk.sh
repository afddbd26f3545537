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
UP=$((20000 + RANDOM % 20000)) GW=$((UP + 1)) NG=$((UP + 2))
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
TCK=$(getconf CLK_TCK)
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
    # nginx runs a master and a worker: count every process of the gateway's group.
    cpu_of() { local s=0; for p in $PID $(pgrep -P $PID || true); do
      s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
    taskset -c 1 wrk -t1 -c50 -d1s -H "$HDR" "http://127.0.0.1:$PORT/item" >/dev/null
    c0=$(cpu_of)
    res=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" --latency -H "$HDR" "http://127.0.0.1:$PORT/item")
    c1=$(cpu_of)
    kill $PID; wait $PID 2>/dev/null || true
    reqs=$(echo "$res" | grep -oE "^ +[0-9]+ requests" | grep -oE "[0-9]+")
    rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$res" | awk '$1=="50%" {print $2}')
    p99=$(echo "$res" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$res" | awk '/Non-2xx/ {print $NF}'); non2xx=${non2xx:-0}
    echo "$r $gw $rps $reqs $((c1 - c0)) $p50 $p99 $non2xx" >>"$OUT"
    printf 'round %d %-8s req/s %9s  gateway CPU µs/req %6.2f  p50 %7s  p99 %7s  non-2xx %s\n' \
      "$r" "$gw" "$rps" "$(python3 -c "print($((c1 - c0))/$TCK*1e6/$reqs)")" "$p50" "$p99" "$non2xx" >&2
  done
done
python3 - "$OUT" "$TCK" "$MODE" <<'PY'
import sys, statistics
def us(t):
    for suf, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if t.endswith(suf):
            return float(t[: -len(suf)]) * f
    return float(t)
tck = float(sys.argv[2])
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, g, rps, reqs, ticks, p50, p99, bad in rows:
    by.setdefault(g, []).append((float(rps), int(reqs) / max(int(ticks) / tck, 1e-9), us(p50), us(p99), int(bad)))
med = {g: [statistics.median(x[i] for x in v) for i in range(4)] + [sum(x[4] for x in v)] for g, v in by.items()}
print(f"scenario {sys.argv[3]} (wrk -t1 -c50, 1 gateway worker each on CPU 0)")
print(f"{'gateway':<9}{'req/s':>10}{'req/CPU-s':>12}{'p50 µs':>9}{'p99 µs':>9}{'non-2xx':>9}")
for g in ("ringway", "nginx"):
    rps, rcs, p50, p99, bad = med[g]
    print(f"{g:<9}{rps:>10.0f}{rcs:>12.0f}{p50:>9.0f}{p99:>9.0f}{bad:>9}")
print(f"ringway / nginx: req/s {med['ringway'][0] / med['nginx'][0]:.3f}, req/CPU-s {med['ringway'][1] / med['nginx'][1]:.3f}")
PY
