#!/usr/bin/env bash
# loadtest/kernel-calls.sh — kernel calls per proxied request on the gateway: `poll` system
# calls (the pooled-connection reuse check), `io_uring_enter` calls and io_uring poll arms
# (receives posted before their data arrived). One ringway worker on CPU 0 proxies GET /item
# to `rwload upstream` (20 B answers); the load tool and the upstream share CPU 1; 50 keep-alive
# connections, closed loop. Counted with `perf stat` over 4 s after 3 s of load; requests are
# the upstream's own count (`/__count`) over the same window. Loopback only, ~9 s per run.
#
#   loadtest/kernel-calls.sh GATEWAY_BINARY [rwload|wrk|h2load] [PORT]
#
# PORT (default 18960) is the upstream's; the gateway listens on PORT+1.
set -euo pipefail
BIN=${1:?usage: loadtest/kernel-calls.sh GATEWAY_BINARY [rwload|wrk|h2load] [PORT]}
TOOL=${2:-rwload}
P=${3:-18960}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RWLOAD=$ROOT/target/release/rwload
[ -x "$RWLOAD" ] || { echo "build it first: cargo build --release -p ringway-loadtest --bin rwload" >&2; exit 2; }
for t in perf taskset curl python3; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
DIR=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
"$RWLOAD" upstream --listen 127.0.0.1:$P --cpus 1 --body-size 20 --duration 14s >/dev/null 2>&1 &
pids+=($!)
cat > "$DIR/gw.toml" <<TOML
[admin]
enabled = false
[[listeners]]
address = "127.0.0.1:$((P + 1))"
[upstreams.be]
targets = [{ address = "127.0.0.1:$P" }]
[[routes]]
name = "proxy"
prefix = "/"
proxy = { upstream = "be" }
TOML
taskset -c 0 "$BIN" --config "$DIR/gw.toml" --workers 1 2>/dev/null &
GW=$!
pids+=($GW)
for _ in $(seq 100); do
  (echo > "/dev/tcp/127.0.0.1/$((P + 1))") 2>/dev/null && break
  sleep 0.05
done
URL=http://127.0.0.1:$((P + 1))/item
case $TOOL in
  rwload) taskset -c 1 "$RWLOAD" run --url "$URL" -c 50 -d 8s --cpus 1 -q >/dev/null & ;;
  wrk) taskset -c 1 wrk -t1 -c50 -d8s "$URL" >/dev/null & ;;
  h2load) taskset -c 1 h2load --h1 -m 1 -c 50 -t 1 -D 8s "$URL" >/dev/null & ;;
  *) echo "unknown tool $TOOL (rwload, wrk, h2load)" >&2; exit 2 ;;
esac
L=$!
pids+=($L)
sleep 3
c0=$(curl -s 127.0.0.1:$P/__count)
perf stat -x, -o "$DIR/stat" -p "$GW" \
  -e 'syscalls:sys_enter_poll,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_poll_arm' -- sleep 4
c1=$(curl -s 127.0.0.1:$P/__count)
wait "$L" || true
python3 - "$c0" "$c1" "$DIR/stat" "$BIN" "$TOOL" <<'PY'
import re, sys
c0, c1 = (int(re.sub(r"\D", "", a)) for a in sys.argv[1:3])
n = max(c1 - c0, 1)
v = {}
for line in open(sys.argv[3]):
    p = line.strip().split(",")
    if len(p) > 2 and p[0].isdigit():
        v[p[2].split(":")[-1]] = int(p[0])
print("%s %s: %d requests; per request: poll %.3f, io_uring_enter %.3f, poll arms %.3f" % (
    sys.argv[4], sys.argv[5], n, v.get("sys_enter_poll", 0) / n,
    v.get("sys_enter_io_uring_enter", 0) / n, v.get("io_uring_poll_arm", 0) / n))
PY
