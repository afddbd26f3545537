#!/usr/bin/env bash
# Issue 14's "`exact` adds no more than one Redis round trip to p50", measured the way the
# RESULTS section describes: one gateway worker pinned to CPU 0; rwload (open loop, a fixed
# rate), the rwload upstream and redis-server on CPU 1; a 1,000,000/s limit keyed by
# `X-Tenant` (it never refuses). For each binary and round: a `local` run, then an `exact` run
# whose in-gateway Redis call histogram (`ringway_redis_call_duration_seconds`) is scraped
# after the load. Binaries are interleaved round by round, so two builds (before/after) are
# paired against the same noise. Prints per run and the medians per binary: local p50, exact
# p50, their difference, and the round trip the requests waited for (histogram mean and the
# share of calls within 50 and 100 µs), plus gateway CPU µs per request. With `perf` on the
# path (and leave to trace), also per request: io_uring_enter and sendto calls, and context
# switches of the gateway, which do not depend on the machine's load. `RT=1` runs the four
# processes under SCHED_FIFO (chrt -f 10, root only) so builds running beside the measurement
# cannot delay their wake-ups; the kernel's RT throttling still leaves others 5 %.
#
#   loadtest/exact-p50.sh RATE CONNS SECONDS ROUNDS BIN [BIN...]
#   loadtest/exact-p50.sh 10000 50 6 3 /tmp/before/ringway target/release/ringway
set -euo pipefail
RATE=$1 CONNS=$2 SECS=$3 ROUNDS=$4
shift 4
BINS=("$@")
RWLOAD=${RWLOAD:-target/release/rwload}
PRIO=()
if [ -n "${RT:-}" ]; then PRIO=(chrt -f 10); fi
for t in redis-server taskset python3 curl; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
DIR=$(mktemp -d)
. "$(dirname "$0")/ports.sh"
read -r UP GW RDS ADM < <(free_ports 4)
taskset -c 1 "${PRIO[@]}" "$RWLOAD" upstream --listen "127.0.0.1:$UP" --cpus 1 >/dev/null 2>&1 & UPID=$!
taskset -c 1 "${PRIO[@]}" redis-server --port "$RDS" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & RED=$!
trap 'kill $UPID $RED 2>/dev/null; rm -rf "$DIR"' EXIT
LIMIT='key = "header:x-tenant", limits = [{ requests = 1000000, per = "1s" }]'
for mode in local exact; do
  case $mode in
    local) extra="" ; rl="{ $LIMIT }" ;;
    exact) extra="[redis]
nodes = [\"127.0.0.1:$RDS\"]
prefix = \"p50bench\"
timeout = \"1s\"" ; rl="{ $LIMIT, scope = \"global\", mode = \"exact\" }" ;;
  esac
  cat >"$DIR/$mode.toml" <<TOML
version = 1
$extra
[admin]
address = "127.0.0.1:$ADM"
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
  for b in "${!BINS[@]}"; do
    BIN=${BINS[$b]}
    for mode in local exact; do
      taskset -c 0 "${PRIO[@]}" "$BIN" --config "$DIR/$mode.toml" --workers 1 2>"$DIR/gw.log" & PID=$!
      for _ in $(seq 100); do curl -sf -o /dev/null -H 'X-Tenant: t' "http://127.0.0.1:$GW/" && break; sleep 0.05; done
      c0=$(awk '{print $14+$15}' /proc/$PID/stat)
      PERFPID=
      if command -v perf >/dev/null; then
        perf stat -x, -o "$DIR/perf" -e syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_sendto,context-switches -p $PID 2>/dev/null & PERFPID=$!
      fi
      res=$(taskset -c 1 "${PRIO[@]}" "$RWLOAD" run --url "http://127.0.0.1:$GW/" -H "X-Tenant: t" -c "$CONNS" \
        -R "$RATE" -d "${SECS}s" --cpus 1 --json -q)
      c1=$(awk '{print $14+$15}' /proc/$PID/stat)
      : >"$DIR/perf.txt"
      if [ -n "$PERFPID" ]; then kill -INT $PERFPID; wait $PERFPID 2>/dev/null || true; cp "$DIR/perf" "$DIR/perf.txt" 2>/dev/null || true; fi
      met=$(curl -sf "http://127.0.0.1:$ADM/metrics" | grep '^ringway_redis_call_duration_seconds' || true)
      kill $PID; wait $PID 2>/dev/null || true
      python3 - "$b" "$r" "$mode" "$c0" "$c1" "$TCK" "$res" "$met" "$DIR/perf.txt" >>"$OUT" <<'PY'
import json, sys
b, r, mode, c0, c1, tck, res, met, perf = sys.argv[1:]
v = json.loads(res)
buckets, s, n = {}, 0.0, 0
for line in met.splitlines():
    name, val = line.rsplit(" ", 1)
    if "_bucket" in name:
        buckets[name.split('le="')[1].rstrip('"}')] = float(val)
    elif name.endswith("_sum"):
        s = float(val)
    elif name.endswith("_count"):
        n = float(val)
mean = s / n * 1e6 if n else 0
le50 = buckets.get("0.00005", 0) / n if n else 0
le100 = buckets.get("0.0001", 0) / n if n else 0
# perf counts over the whole load (warmup included): per request of the load tool's total.
ev = {}
for line in open(perf):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        ev[f[2].split(":")[-1]] = float(f[0])
total = v["requests"] * (1 + 1 / max(v["duration_s"], 1e-9))  # 1 s of warmup at the same rate
per = lambda k: round(ev.get(k, 0) / total, 2)
cpu_us = (int(c1) - int(c0)) / int(tck) * 1e6 / total
print(b, r, mode, v["latency_us"]["p50"], v["latency_us"]["p99"], round(cpu_us, 2), round(mean, 1), round(le50, 3), round(le100, 3), v["errors"]["status_5xx"],
      per("sys_enter_io_uring_enter"), per("sys_enter_sendto"), per("context-switches"))
PY
      tail -1 "$OUT" >&2
    done
  done
done
python3 - "$OUT" "${BINS[@]}" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
bins = sys.argv[2:]
print(f"{'binary':<34}{'local p50':>10}{'exact p50':>10}{'added':>8}{'RT mean':>9}{'RT<=50':>8}{'RT<=100':>8}{'CPU µs/req local/exact':>24}")
for i, name in enumerate(bins):
    loc = [x for x in rows if x[0] == str(i) and x[2] == "local"]
    ex = [x for x in rows if x[0] == str(i) and x[2] == "exact"]
    added = [float(e[3]) - float(l[3]) for l, e in zip(loc, ex)]
    med = lambda xs, k: st.median(float(x[k]) for x in xs)
    print(f"{name[-34:]:<34}{med(loc,3):>10.0f}{med(ex,3):>10.0f}{st.median(added):>8.0f}{med(ex,6):>9.1f}{med(ex,7):>8.3f}{med(ex,8):>8.3f}{med(loc,5):>12.2f}/{med(ex,5):<11.2f}")
    print(f"  added per round: {' '.join(f'{a:.0f}' for a in added)}")
    print(f"  per request, local/exact: io_uring_enter {med(loc,10):.2f}/{med(ex,10):.2f}  sendto {med(loc,11):.2f}/{med(ex,11):.2f}"
          f"  context switches {med(loc,12):.2f}/{med(ex,12):.2f}")
PY
