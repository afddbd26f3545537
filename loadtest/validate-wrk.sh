#!/usr/bin/env bash
# Issue 16's validation cost with wrk (a load tool this project did not write), beside
# `rwcompare validated-post`: the same 1 KiB JSON order POSTed to an operation imported from
# an OpenAPI document (loadtest/scenarios/validated-post.toml's schema), ringway with
# validation = "off" and with validation = "enforce", one pinned worker on CPU 0; wrk and the
# upstream (`rwload upstream`, 1 KiB answers) on CPU 1. Rounds interleave the two; prints per
# round and the medians: req/s, gateway CPU µs per request, wrk's p50/p99, non-2xx, and the
# validated / unvalidated ratio of requests per gateway CPU-second (target ≥ 0.80).
#
#   loadtest/validate-wrk.sh [RINGWAY] [RWLOAD] [ROUNDS] [SECONDS]
#   loadtest/validate-wrk.sh target/release/ringway target/release/rwload 4 8
set -euo pipefail
BIN=${1:-target/release/ringway} RWLOAD=${2:-target/release/rwload} ROUNDS=${3:-4} SECS=${4:-8}
for t in wrk taskset python3 curl; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
DIR=$(mktemp -d)
UP=$((20000 + RANDOM % 20000)) GW=$((UP + 1))
taskset -c 1 "$RWLOAD" upstream --listen "127.0.0.1:$UP" --body-size 1KiB >"$DIR/up.log" 2>&1 & UPID=$!
trap 'kill $UPID 2>/dev/null; rm -rf "$DIR"' EXIT
# The document: the scenario file's [ringway.files] "orders.yaml".
python3 - "$DIR" <<'PY'
import sys, tomllib
scn = tomllib.load(open("loadtest/scenarios/validated-post.toml", "rb"))
open(sys.argv[1] + "/orders.yaml", "w").write(scn["ringway"]["files"]["orders.yaml"])
PY
# The body: the same JSON order rwload --body-json sends (about 1 KiB).
BODY=$(python3 - <<'PY'
out = '{"customer":"bench-customer-0001","note":"closed-loop load","items":['
i = 0
while True:
    item = ('' if i == 0 else ',') + '{"sku":"SKU-%05d","qty":%d,"price":%d.5}' % (i, 1 + i % 9, 3 + i % 40)
    if i > 0 and len(out) + len(item) + 2 > 1024:
        break
    out += item
    i += 1
print(out + ']}')
PY
)
python3 - "$DIR/post.lua" "$BODY" <<'PY'
import sys, json
open(sys.argv[1], "w").write(
    'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n'
    % json.dumps(sys.argv[2]))
PY
for mode in off enforce; do
  cat >"$DIR/$mode.toml" <<TOML
version = 1
[[listeners]]
address = "127.0.0.1:$GW"
[upstreams.be]
targets = [{ address = "127.0.0.1:$UP" }]
max_idle = 256
[[openapi]]
spec = "orders.yaml"
upstream = "be"
validation = "$mode"
TOML
  "$BIN" check --config "$DIR/$mode.toml" >/dev/null
done
TCK=$(getconf CLK_TCK)
OUT="$DIR/rows"
for r in $(seq "$ROUNDS"); do
  for mode in off enforce; do
    taskset -c 0 "$BIN" --config "$DIR/$mode.toml" --workers 1 2>"$DIR/gw.log" & PID=$!
    for _ in $(seq 100); do
      curl -sf -o /dev/null -H 'Content-Type: application/json' --data "$BODY" "http://127.0.0.1:$GW/orders" && break
      sleep 0.05
    done
    cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
    taskset -c 1 wrk -t1 -c50 -d1s -s "$DIR/post.lua" "http://127.0.0.1:$GW/orders" >/dev/null
    c0=$(cpu)
    res=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" --latency -s "$DIR/post.lua" "http://127.0.0.1:$GW/orders")
    c1=$(cpu)
    kill $PID; wait $PID 2>/dev/null || true
    reqs=$(echo "$res" | grep -oE "^ +[0-9]+ requests" | grep -oE "[0-9]+")
    rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$res" | awk '$1=="50%" {print $2}')
    p99=$(echo "$res" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$res" | awk '/Non-2xx/ {print $NF}'); non2xx=${non2xx:-0}
    echo "$r $mode $rps $reqs $((c1 - c0)) $p50 $p99 $non2xx" >>"$OUT"
    printf 'round %d %-8s req/s %9s  gateway CPU µs/req %6.2f  p50 %7s  p99 %7s  non-2xx %s\n' \
      "$r" "$mode" "$rps" "$(python3 -c "print($((c1 - c0))/$TCK*1e6/$reqs)")" "$p50" "$p99" "$non2xx" >&2
  done
done
python3 - "$OUT" "$TCK" <<'PY'
import sys, statistics
def us(t):
    for suf, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if t.endswith(suf):
            return float(t[: -len(suf)]) * f
    return float(t)
tck = float(sys.argv[2])
by = {}
for r, g, rps, reqs, ticks, p50, p99, bad in (l.split() for l in open(sys.argv[1])):
    by.setdefault(g, []).append((float(rps), int(reqs) / max(int(ticks) / tck, 1e-9), us(p50), us(p99), int(bad)))
med = {g: [statistics.median(x[i] for x in v) for i in range(4)] + [sum(x[4] for x in v)] for g, v in by.items()}
print("validated 1 KiB JSON POST (wrk -t1 -c50, 1 gateway worker on CPU 0)")
print(f"{'validation':<11}{'req/s':>10}{'req/CPU-s':>12}{'p50 µs':>9}{'p99 µs':>9}{'non-2xx':>9}")
for g in ("off", "enforce"):
    rps, rcs, p50, p99, bad = med[g]
    print(f"{g:<11}{rps:>10.0f}{rcs:>12.0f}{p50:>9.0f}{p99:>9.0f}{bad:>9}")
print(f"enforce / off: req/s {med['enforce'][0] / med['off'][0]:.3f}, req/CPU-s {med['enforce'][1] / med['off'][1]:.3f}")
PY
