#!/usr/bin/env bash
# Zero-downtime upgrade under load: rwload drives keep-alive traffic through ringway to the
# bundled upstream while ringway is upgraded UPGRADES times (SIGUSR2 each time, to the process
# that serves at that moment). Prints rwload's errors and non-2xx counts; exits non-zero if any.
#
#   loadtest/upgrade.sh                       # 10 upgrades, 50 connections
#   UPGRADES=3 CONNS=20 loadtest/upgrade.sh
#   RINGWAY=target/fasttest/ringway loadtest/upgrade.sh
#
# Needs target/release/rwload (cargo build --release -p ringway-loadtest) and a ringway binary
# (target/release/ringway, else target/fasttest/ringway).
set -euo pipefail
cd "$(dirname "$0")/.."
UPGRADES=${UPGRADES:-10}
CONNS=${CONNS:-50}
GAP=${GAP:-1.5}           # seconds of load between upgrades
RWLOAD=${RWLOAD:-target/release/rwload}
RINGWAY=${RINGWAY:-}
if [ -z "$RINGWAY" ]; then
  if [ -x target/release/ringway ]; then RINGWAY=target/release/ringway; else RINGWAY=target/fasttest/ringway; fi
fi
[ -x "$RWLOAD" ] || { echo "missing $RWLOAD (cargo build --release -p ringway-loadtest)" >&2; exit 2; }
[ -x "$RINGWAY" ] || { echo "missing $RINGWAY" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$work/current.pid" ]; then kill "$(cat "$work/current.pid")" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); GW=$(port); ADMIN=$(port)
"$RWLOAD" upstream --listen "127.0.0.1:$UP" >/dev/null 2>&1 &
pids+=($!)
cat > "$work/ringway.toml" <<TOML
[server]
drain_timeout = "10s"
[[listeners]]
name = "main"
address = "127.0.0.1:$GW"
[admin]
address = "127.0.0.1:$ADMIN"
[upstreams.be]
targets = [{ address = "127.0.0.1:$UP" }]
[[routes]]
name = "all"
prefix = "/"
proxy = { upstream = "be" }
TOML
"$RINGWAY" --config "$work/ringway.toml" --workers 2 2>"$work/ringway.log" &
pid=$!
echo "$pid" > "$work/current.pid"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/ready" >/dev/null && break; sleep 0.05; done

duration=$(python3 -c "print(int($UPGRADES * $GAP + 4))")
"$RWLOAD" run --url "http://127.0.0.1:$GW/" -c "$CONNS" -d "${duration}s" --warmup 0s --json -q > "$work/result.json" &
load=$!
sleep 1
for i in $(seq "$UPGRADES"); do
  before=$(grep -c "is ready; this process stops accepting" "$work/ringway.log" || true)
  kill -USR2 "$pid"
  for _ in $(seq 400); do
    now=$(grep -c "is ready; this process stops accepting" "$work/ringway.log" || true)
    [ "$now" -gt "$before" ] && break
    if grep -q "upgrade failed" "$work/ringway.log"; then echo "upgrade $i failed:"; grep "upgrade failed" "$work/ringway.log"; exit 1; fi
    sleep 0.05
  done
  new=$(grep "is ready; this process stops accepting" "$work/ringway.log" | tail -1 | sed -E 's/.*new process ([0-9]+) is ready.*/\1/')
  [ "$new" != "$pid" ] || { echo "upgrade $i: no new process"; exit 1; }
  echo "upgrade $i: pid $pid -> $new"
  pid=$new
  echo "$pid" > "$work/current.pid"
  sleep "$GAP"
done
wait "$load"
python3 - "$work/result.json" "$UPGRADES" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
errors = sum(r["errors"].values())
non2xx = sum(n for code, n in r["status"].items() if not code.startswith("2"))
print(f'{sys.argv[2]} upgrades under load: {r["requests"]} requests, {r["rps"]:.0f} req/s, '
      f'{r["connections"]} connections, {r["reconnects"]} reconnects, '
      f'errors {errors} {r["errors"]}, non-2xx {non2xx}, p99 {r["latency_us"]["p99"]}us')
sys.exit(1 if errors or non2xx else 0)
PY
