#!/usr/bin/env bash
# loadtest/ngx-rounds.sh — ringway against nginx with every load tool, in rounds: for each round,
# tool (rwload, wrk, h2load --h1) and nginx config (doing ringway's forwarding-header work, and
# a plain `proxy_pass` with --nginx-plain), one `rwcompare proxy-small` run of 5 s per target.
# Prints one line per run: the ratio ringway/nginx of requests per gateway CPU-second, then
# each side's requests per CPU-second; then the median ratio per tool and config.
#
#   loadtest/ngx-rounds.sh GATEWAY_BINARY [ROUNDS]        # default 5 rounds (~8 minutes)
set -euo pipefail
BIN=${1:?usage: loadtest/ngx-rounds.sh GATEWAY_BINARY [ROUNDS]}
ROUNDS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RWCOMPARE=$ROOT/target/release/rwcompare
[ -x "$RWCOMPARE" ] || { echo "build it first: cargo build --release -p ringway-loadtest --bin rwcompare --bin rwload" >&2; exit 2; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq "$ROUNDS"); do
  for tool in rwload wrk h2load; do
    for plain in "" --nginx-plain; do
      line=$(timeout 300 "$RWCOMPARE" proxy-small --load "$tool" $plain --gateway-bin "$BIN" \
        --only ringway,nginx -d 5s --json 2>/dev/null | tail -1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
t = d["targets"]
print("%.3f %d %d" % (d["ratios"]["req_per_cpu_s"], t["ringway"]["req_per_cpu_s"], t["nginx"]["req_per_cpu_s"]))')
      echo "round $r $tool ${plain:-same-work} $line" | tee -a "$OUT"
    done
  done
done
echo "median ringway/nginx req per CPU-s:"
for tool in rwload wrk h2load; do
  for cfg in same-work --nginx-plain; do
    awk -v t="$tool" -v c="$cfg" '$3 == t && $4 == c {print $5}' "$OUT" | sort -n |
      awk -v t="$tool" -v c="$cfg" '{v[NR] = $1} END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "  %-7s %-13s %.3f  (%d rounds)\n", t, c, m, NR }'
  done
done
