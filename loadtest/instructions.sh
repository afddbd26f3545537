#!/usr/bin/env bash
# loadtest/instructions.sh — user-space instructions per proxied request, counted by callgrind
# (valgrind): a figure that does not move when other processes share the CPU, unlike requests
# per CPU-second. proxy-small's shape: one worker on CPU 0 proxying GET /item to an nginx
# `return 200` upstream, driven by wrk (50 keep-alive connections) on CPU 1; the counters are
# zeroed after a 2 s warm-up and dumped after SECONDS of load. Kernel work (the socket calls)
# is not counted: it is the same for every build of the same request path.
#
#   loadtest/instructions.sh BIN [SECONDS]                 # requests, instructions, per request
#   loadtest/instructions.sh BIN [SECONDS] --hot FILE      # also writes the functions that
#                                                          # make up 99 % of them, hottest first
#
# `--hot scripts/hot-functions.txt` regenerates the list scripts/cc-hot-order packs together in the
# release binary (the binary profiled must be a release build of the current code).
set -euo pipefail
BIN=$1
SECS=${2:-5}
HOT=
[ "${3:-}" = "--hot" ] && HOT=${4:?--hot needs a file}
for t in valgrind callgrind_control callgrind_annotate wrk nginx curl taskset; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }
done
DIR=$(mktemp -d)
UP=$((20000 + RANDOM % 20000)) GW=$((UP + 1)) ADM=$((UP + 2))
cat >"$DIR/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $DIR/nginx.pid; error_log $DIR/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from upstream!"; } } }
NGX
cat >"$DIR/gw.toml" <<TOML
version = 1
[[listeners]]
address = "127.0.0.1:$GW"
[admin]
address = "127.0.0.1:$ADM"
[upstreams.be]
targets = [{ address = "127.0.0.1:$UP" }]
[[routes]]
name = "p"
prefix = "/"
proxy = { upstream = "be" }
TOML
taskset -c 1 nginx -c "$DIR/nginx.conf" &
NGX=$!
VG=
cleanup() {
  [ -n "$VG" ] && kill -9 "$VG" 2>/dev/null
  kill "$NGX" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.out" "$BIN" \
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
IR=$(awk '/^(summary|totals):/ {print $2; exit}' "$DUMP")
echo "requests $REQS instructions $IR per_request $((IR / REQS))"
if [ -n "$HOT" ]; then
  # Self cost per function (inlined code is counted where it lands), hottest first, down to
  # 99 % of the total; names as `nm -C` prints them (no hash), from this binary only.
  # (callgrind files the thread entry points with nearly the whole total as their own cost:
  # lines over half the total are skipped.)
  callgrind_annotate --threshold=100 --auto=no "$DUMP" 2>/dev/null |
    awk -v total="$IR" '
      /^ *[0-9,]+ +\(/ {
        line = $0
        n = $1; gsub(/,/, "", n)
        if (n + 0 > total / 2) next
        sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
        sub(/ \[[^]]*\]$/, "", line)
        sub(/^[^:]*:/, "", line)
        cost[line] += n
        if (!(line in seen)) { seen[line] = 1; order[k++] = line }
      }
      END {
        for (i = 0; i < k; i++) print cost[order[i]] "\t" order[i]
      }' | sort -t "$(printf '\t')" -k1,1 -rn |
    awk -F '\t' -v total="$IR" '{ print $2; sum += $1; if (sum > 0.99 * total) exit }' >"$DIR/hot"
  {
    echo "# Functions of the proxied-request path, hottest first: scripts/cc-hot-order places them"
    echo "# together in the release binary. Regenerate with"
    echo "#   loadtest/instructions.sh target/release/ringway 5 --hot scripts/hot-functions.txt"
    cat "$DIR/hot"
  } >"$HOT"
  echo "wrote $(wc -l <"$DIR/hot") functions to $HOT"
fi
