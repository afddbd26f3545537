#!/usr/bin/env bash
# The global-limit comparison with wrk (a load tool this project did not write), beside
# `rwcompare global-limit`: one rate limit keyed by a header, decided three ways on the same
# traffic: `local` (in-memory GCRA), `leased` (global through Redis, tokens leased per worker)
# and `exact` (global, one Redis round trip per request). The limit never refuses, so every
# request pays the full decision. One pinned worker on CPU 0; wrk, nginx (the upstream) and
# redis-server on CPU 1. Rounds are interleaved; prints per round and the medians: req/s,
# gateway CPU µs per request, wrk's p50/p99, and the ratios to `local`.
#
#   loadtest/global-limit-wrk.sh [BINARY] [ROUNDS] [SECONDS]
#   loadtest/global-limit-wrk.sh target/release/ringway 3 8
set -euo pipefail
BIN=${1:-target/release/ringway} ROUNDS=${2:-3} SECS=${3:-8}
for t in wrk nginx redis-server taskset python3 curl; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
DIR=$(mktemp -d)
. "$(dirname "$0")/ports.sh"
read -r UP GW RDS < <(free_ports 3)
cat >"$DIR/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $DIR/nginx.pid; error_log $DIR/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from upstream!"; } } }
NGX
taskset -c 1 nginx -c "$DIR/nginx.conf" & NGX=$!
taskset -c 1 redis-server --port "$RDS" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & RED=$!
trap 'kill $NGX $RED 2>/dev/null; rm -rf "$DIR"' EXIT
LIMIT='key = "header:x-tenant", limits = [{ requests = 1000000, per = "1s" }]'
for mode in local leased exact; do
  case $mode in
    local) extra="" ; rl="{ $LIMIT }" ;;
    leased) extra="[redis]
nodes = [\"127.0.0.1:$RDS\"]
prefix = \"wrkbench\"
timeout = \"1s\"" ; rl="{ $LIMIT, scope = \"global\" }" ;;
    exact) extra="[redis]
nodes = [\"127.0.0.1:$RDS\"]
prefix = \"wrkbench\"
timeout = \"1s\"" ; rl="{ $LIMIT, scope = \"global\", mode = \"exact\" }" ;;
  esac
  cat >"$DIR/$mode.toml" <<TOML
version = 1
$extra
[[listeners]]
address = "127.0.0.1:$GW"
[upstreams.be]
targets = [{ address = "127.0.0.1:$UP" }]
[policies.limit]
rate_limit = $rl
[[routes]]
name = "p"
prefix = "/"
policies = ["limit"]
proxy = { upstream = "be" }
TOML
done
TCK=$(getconf CLK_TCK)
OUT="$DIR/rows"
for r in $(seq "$ROUNDS"); do
  for mode in local leased exact; do
    taskset -c 0 "$BIN" --config "$DIR/$mode.toml" --workers 1 2>"$DIR/gw.log" & PID=$!
    for _ in $(seq 100); do curl -sf -o /dev/null -H 'X-Tenant: t' "http://127.0.0.1:$GW/" && break; sleep 0.05; done
    taskset -c 1 wrk -t1 -c50 -d1s -H 'X-Tenant: t' "http://127.0.0.1:$GW/" >/dev/null
    c0=$(awk '{print $14+$15}' /proc/$PID/stat)
    res=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" --latency -H 'X-Tenant: t' "http://127.0.0.1:$GW/")
    c1=$(awk '{print $14+$15}' /proc/$PID/stat)
    kill $PID; wait $PID 2>/dev/null || true
    reqs=$(echo "$res" | grep -oE "^ +[0-9]+ requests" | grep -oE "[0-9]+")
    rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$res" | awk '$1=="50%" {print $2}')
    p99=$(echo "$res" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$res" | awk '/Non-2xx/ {print $NF}'); non2xx=${non2xx:-0}
    cpu=$(python3 -c "print(($c1-$c0)/$TCK)")
    echo "$r $mode $rps $reqs $cpu $p50 $p99 $non2xx" >>"$OUT"
    printf 'round %d %-6s req/s %9s  gateway CPU µs/req %6.2f  p50 %7s  p99 %7s  non-2xx %s\n' \
      "$r" "$mode" "$rps" "$(python3 -c "print(($c1-$c0)/$TCK*1e6/$reqs)")" "$p50" "$p99" "$non2xx" >&2
  done
done
python3 - "$OUT" <<'PY'
import sys, statistics
def us(t):
    for suf, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if t.endswith(suf):
            return float(t[: -len(suf)]) * f
    return float(t)
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, m, rps, reqs, cpu, p50, p99, bad in rows:
    by.setdefault(m, []).append((float(rps), int(reqs) / max(float(cpu), 1e-9), us(p50), us(p99), int(bad)))
med = {m: [statistics.median(x[i] for x in v) for i in range(4)] + [sum(x[4] for x in v)] for m, v in by.items()}
print(f"{'mode':<8}{'req/s':>10}{'req/CPU-s':>12}{'p50 µs':>9}{'p99 µs':>9}{'non-2xx':>9}{'vs local (req/CPU-s)':>22}")
for m in ("local", "leased", "exact"):
    rps, rcs, p50, p99, bad = med[m]
    print(f"{m:<8}{rps:>10.0f}{rcs:>12.0f}{p50:>9.0f}{p99:>9.0f}{bad:>9}{rcs / med['local'][1]:>22.3f}")
PY
