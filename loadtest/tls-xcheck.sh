#!/usr/bin/env bash
# Independent cross-checks of the TLS scenarios with other clients: wrk (keep-alive HTTPS),
# h2load --h1 (keep-alive HTTPS) and openssl s_time (-new: a full handshake and one GET per
# connection; -reuse: resumed), against the ringway and nginx configs a TLS rwcompare run
# kept. Each gateway runs pinned to CPU 0 (as rwcompare runs it), the clients and the
# upstream on CPU 1; the gateway's CPU time comes from /proc (nginx: master + workers), so
# every line ends with operations per gateway CPU-second.
#
#   target/release/rwcompare tls-keepalive --keep-temp      # prints the kept temp dir
#   loadtest/tls-xcheck.sh /tmp/rwcompare-XXXXXX [SECONDS]  # default 10 s per tool
#
# Needs wrk, h2load (nghttp2-client), openssl, curl; a missing tool is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:?usage: loadtest/tls-xcheck.sh RWCOMPARE_TEMP_DIR [SECONDS]}"
secs="${2:-10}"
rwload="${RWLOAD_BIN:-target/release/rwload}"
ringway="${RINGWAY_BIN:-target/release/ringway}"
[ -f "$dir/nginx/nginx.conf" ] && [ -f "$dir/ca.pem" ] \
  || { echo "tls-xcheck: $dir lacks nginx/nginx.conf or ca.pem (run a TLS scenario with --keep-temp)" >&2; exit 2; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

uport="$(grep -o 'server 127.0.0.1:[0-9]*' "$dir/nginx/nginx.conf" | head -1 | cut -d: -f2)"
taskset -c 1 "$rwload" upstream --listen "127.0.0.1:$uport" --cpus 1 --duration 600s >/dev/null 2>&1 &
pids+=($!)

ticks() { # utime+stime of the given pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
hz="$(getconf CLK_TCK)"

measure() { # NAME PORT PIDS... -- runs every tool against 127.0.0.1:PORT
  local name="$1" port="$2"; shift 2
  local url="https://127.0.0.1:$port/item" t0 t1 out rate cpu
  for tool in wrk h2load s_time_new s_time_reuse; do
    t0="$(ticks "$@")"
    case "$tool" in
      wrk)
        command -v wrk >/dev/null || continue
        out="$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" "$url" 2>&1)"
        rate="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" ;;
      h2load)
        command -v h2load >/dev/null || continue
        out="$(taskset -c 1 h2load --h1 -t1 -c50 -D "$secs" "$url" 2>&1)"
        rate="$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")" ;;
      s_time_new|s_time_reuse)
        local mode="-new"; [ "$tool" = s_time_reuse ] && mode="-reuse"
        out="$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -www /item "$mode" -time "$secs" 2>&1)"
        # s_time prints "N connections in T real seconds": use the real-time rate.
        rate="$(awk '/connections in [0-9.]+ real seconds/ {print $1 / $4; exit}' <<<"$out")" ;;
    esac
    t1="$(ticks "$@")"
    cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN {print (b - a) / hz}')"
    awk -v n="$name" -v t="$tool" -v r="${rate:-0}" -v c="$cpu" -v s="$secs" \
      'BEGIN {printf "%-8s %-13s %10.1f /s   gateway CPU %5.2f s   %9.0f per CPU-s\n", n, t, r, c, (c > 0 ? r * s / c : 0)}'
  done
}

wait_https() {
  local port="$1" i
  for i in $(seq 1 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --cacert "$dir/ca.pem" \
      --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/item")" = 200 ] && return 0
    sleep 0.1
  done
  echo "tls-xcheck: nothing answers 200 on https://localhost:$port/item" >&2
  return 1
}

if [ ! -f "$dir/ringway.toml" ]; then
  echo "tls-xcheck: no ringway.toml in $dir (run without --only nginx): ringway skipped" >&2
else
rport="$(grep -o 'address = "127.0.0.1:[0-9]*"' "$dir/ringway.toml" | head -1 | grep -o '[0-9]*"$' | tr -d '"')"
taskset -c 0 "$ringway" --config "$dir/ringway.toml" --workers 1 >"$dir/xcheck-ringway.log" 2>&1 &
rpid=$!
pids+=("$rpid")
wait_https "$rport" && measure ringway "$rport" "$rpid"
kill "$rpid"; wait "$rpid" 2>/dev/null
fi

nport="$(grep -o 'listen 127.0.0.1:[0-9]*' "$dir/nginx/nginx.conf" | cut -d: -f2)"
taskset -c 0 nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" >/dev/null 2>&1 &
npid=$!
pids+=("$npid")
if wait_https "$nport"; then
  measure nginx "$nport" "$npid" $(pgrep -P "$npid")
fi
echo "openssl s_time: one connection at a time (latency-bound); per CPU-s is the comparable figure."
