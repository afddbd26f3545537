#!/usr/bin/env bash
# loadtest/instructions.sh — user-space instructions per proxied request, counted by callgrind
# (valgrind): a figure that does not move when other processes share the CPU, unlike requests
# per CPU-second. proxy-small's shape: one worker on CPU 0 proxying GET /item to an nginx
# `return 200` upstream, driven by wrk (50 keep-alive connections) on CPU 1; the counters are
# zeroed after a 2 s warm-up and dumped after SECONDS of load. Kernel work (the socket calls)
# is not counted. The gateway runs ~20x slower under valgrind, so its io_uring batches are
# larger than natively: compare builds with each other, not with native timings.
#
#   loadtest/instructions.sh BIN [SECONDS]            # requests, instructions, per request
#   loadtest/instructions.sh BIN [SECONDS] --cache    # also simulated L1 misses per request
#                                                     # (instruction, data read, data write)
#                                                     # and last-level misses
#   loadtest/instructions.sh BIN [SECONDS] --functions N   # and the N costliest functions
set -euo pipefail
BIN=$1
SECS=${2:-5}
CACHE=
FUNCS=
case "${3:-}" in
  --cache) CACHE=--cache-sim=yes ;;
  --functions) FUNCS=${4:?--functions needs a count} ;;
  "") ;;
  *) echo "unknown option ${3}" >&2; exit 2 ;;
esac
for t in valgrind callgrind_control callgrind_annotate wrk nginx curl taskset; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
DIR=$(mktemp -d)
. "$(dirname "$0")/proxy-small-env.sh"
proxy_small_env "$DIR"
VG=
cleanup() {
  [ -n "$VG" ] && kill -9 "$VG" 2>/dev/null
  kill "$NGX" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
taskset -c 0 valgrind --tool=callgrind $CACHE --callgrind-out-file="$DIR/cg.out" "$BIN" \
  --config "$DIR/gw.toml" --workers 1 >"$DIR/gw.log" 2>&1 &
for _ in $(seq 120); do curl -sf -o /dev/null "http://127.0.0.1:$GW/" && break; sleep 0.5; done
VG=$(pgrep -f -- "callgrind-out-file=$DIR/cg.out" | head -1)
[ -n "$VG" ] || { echo "the gateway did not start under valgrind:" >&2; cat "$DIR/gw.log" >&2; exit 1; }
taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:$GW/item" >/dev/null
callgrind_control -z "$VG" >/dev/null 2>&1
REQS=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$GW/item" | awk '/requests in/ {print $1}')
callgrind_control -d "$VG" >/dev/null 2>&1
for _ in $(seq 50); do ls "$DIR"/cg.out.* >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
DUMP=$(ls "$DIR"/cg.out.* | head -1)
# The summary line holds one total per event (Ir, then with --cache Dr Dw I1mr D1mr D1mw ...).
read -r -a TOTALS < <(awk '/^(summary|totals):/ {$1 = ""; print; exit}' "$DUMP")
IR=${TOTALS[0]}
echo "requests $REQS instructions $IR per_request $((IR / REQS))"
if [ -n "$CACHE" ]; then
  echo "per request: I1 misses $((TOTALS[3] / REQS)), D1 read misses $((TOTALS[4] / REQS)), D1 write misses $((TOTALS[5] / REQS))"
  echo "per request: LL misses: instruction $((TOTALS[6] / REQS)), data read $((TOTALS[7] / REQS)), data write $((TOTALS[8] / REQS))"
fi
if [ -n "$FUNCS" ]; then
  echo "costliest functions (instructions per request, self):"
  callgrind_annotate --threshold=100 --auto=no "$DUMP" 2>/dev/null |
    awk -v total="$IR" -v reqs="$REQS" '
      /^ *[0-9,]+ +\(/ {
        n = $1; gsub(/,/, "", n)
        if (n + 0 > total / 2) next   # thread entry points carry nearly the whole total
        line = $0
        sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
        sub(/ \[[^]]*\]$/, "", line)
        sub(/^[^:]*:/, "", line)
        cost[line] += n
      }
      END { for (f in cost) printf "%8.0f  %s\n", cost[f] / reqs, f }' | sort -rn | head -n "$FUNCS"
fi
