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
. "$(dirname "$0")/ports.sh"
read -r UP GW < <(free_ports 2)
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
. "$(dirname "$0")/wrk-round.sh"
OUT="$DIR/rows"
for r in $(seq "$ROUNDS"); do
  for mode in off enforce; do
    taskset -c 0 "$BIN" --config "$DIR/$mode.toml" --workers 1 2>"$DIR/gw.log" & PID=$!
    for _ in $(seq 100); do
      curl -sf -o /dev/null -H 'Content-Type: application/json' --data "$BODY" "http://127.0.0.1:$GW/orders" && break
      sleep 0.05
    done
    wrk_round "$r" $mode $PID "$OUT" -s "$DIR/post.lua" "http://127.0.0.1:$GW/orders"
  done
done
wrk_medians "$OUT" "validated 1 KiB JSON POST (wrk -t1 -c50, 1 gateway worker on CPU 0)" off enforce
