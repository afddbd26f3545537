#!/usr/bin/env bash
# Captures a CPU flamegraph of one ringway worker under a load scenario.
#
#   flamegraphs/capture.sh proxy-small      # GET, 20 B upstream body, 50 connections
#   flamegraphs/capture.sh proxy-1k-post    # POST 1 KiB body, 1 KiB response
#   flamegraphs/capture.sh policies         # proxy-small + API key + JWT + rate limit
#   flamegraphs/capture.sh tls-keepalive    # proxy-small over HTTPS (ECDSA P-256, TLS 1.3)
#   flamegraphs/capture.sh h2-tls           # proxy-small over HTTP/2 + TLS: h2load -c 50 -m 10
#   flamegraphs/capture.sh h2c              # the same over cleartext HTTP/2 (prior knowledge)
#   flamegraphs/capture.sh cache-hit        # proxy-small answered from the response cache
#   flamegraphs/capture.sh gzip             # a 10 KiB JSON answer gzip-compressed (level 5)
#
# Needs: perf (apt-get install linux-perf) and inferno (cargo install inferno), and release
# builds (cargo build --release --workspace); the HTTP/2 scenarios need h2load (installed with
# apt-get install nghttp2-client when missing and running as root). Pinning on a 2-core machine: the gateway worker
# on CPU 0, the load generator and the upstream on CPU 1. Writes
# flamegraphs/<scenario>-<commit>.svg. Loopback only; bounded (SECONDS_LOAD, default 12 s).
# CALL_GRAPH=dwarf FREQ=499: unwind with debug info instead of frame pointers.
# LOAD=wrk: drive a plain-HTTP GET scenario with wrk (-t1 -c50) instead of rwload, so the
# profile shows the gateway under an outside tool's arrival pattern (issue 15); the file is
# then flamegraphs/<scenario>-wrk-<commit>.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-proxy-small}"
load_secs="${SECONDS_LOAD:-12}"
gw_cpu="${GW_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
bin=target/release
for b in ringway rwload; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: run cargo build --release --workspace" >&2; exit 2; }
done
command -v perf >/dev/null || { echo "perf missing: apt-get install linux-perf" >&2; exit 2; }
command -v inferno-flamegraph >/dev/null || { echo "inferno missing: cargo install inferno" >&2; exit 2; }

case "$scenario" in
  proxy-small) body=20; method=GET; req_body=0 ;;
  proxy-1k-post) body=1024; method=POST; req_body=1024 ;;
  policies) body=20; method=GET; req_body=0 ;;
  tls-keepalive|h2-tls|h2c) body=20; method=GET; req_body=0 ;;
  cache-hit) body=20; method=GET; req_body=0 ;;
  gzip) body=10KiB; method=GET; req_body=0 ;;
  *) echo "unknown scenario $scenario (proxy-small, proxy-1k-post, policies, tls-keepalive, h2-tls, h2c, cache-hit, gzip)" >&2; exit 2 ;;
esac
case "$scenario" in
  h2-tls|h2c)
    if ! command -v h2load >/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client
      fi
      command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 2; }
    fi ;;
esac

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port); gw_port=$(free_port)

up_args=()
[ "$scenario" = gzip ] && up_args=(--json)
"$bin/rwload" upstream --listen "127.0.0.1:$up_port" --cpus "$load_cpu" --body-size "$body" \
  --duration "$((load_secs + 10))s" "${up_args[@]}" > "$tmp/upstream.out" &
pids+=($!)
cat > "$tmp/ringway.toml" <<TOML
[admin]
enabled = false
[[listeners]]
address = "127.0.0.1:$gw_port"
$([ "$scenario" = h2c ] && echo "h2c = true")
[upstreams.be]
targets = [{ address = "127.0.0.1:$up_port" }]
$([ "$scenario" = h2-tls ] || [ "$scenario" = h2c ] && echo "max_idle = 1024  # 500 streams in flight, as rwcompare's h2 scenarios")
[[routes]]
name = "proxy"
prefix = "/"
proxy = { upstream = "be" }
TOML
headers=()
case "$scenario" in
  cache-hit) printf 'policies = ["cache"]\n[policies.cache]\ncache = { ttl = "600s" }\n' >> "$tmp/ringway.toml" ;;
  gzip) printf 'policies = ["gz"]\n[policies.gz]\ncompress = { codings = ["gzip"], gzip_level = 5 }\n' >> "$tmp/ringway.toml"
    headers+=(-H "Accept-Encoding: gzip") ;;
esac
if [ "$scenario" = policies ]; then
  # The policy config, keys file, key and token of loadtest/scenarios/policies.toml.
  python3 - loadtest/scenarios/policies.toml "$tmp" <<'PY'
import sys, tomllib
scn = tomllib.load(open(sys.argv[1], "rb"))
tmp = sys.argv[2]
open(f"{tmp}/keys.toml", "w").write(scn["ringway"]["files"]["keys.toml"])
with open(f"{tmp}/ringway.toml", "a") as f:
    f.write('policies = ["key", "token", "limit"]\n')
    f.write(scn["ringway"]["config"].replace("{dir}", tmp))
with open(f"{tmp}/headers", "w") as f:
    f.write("\n".join(scn["load"]["headers"]))
PY
  while IFS= read -r h || [ -n "$h" ]; do headers+=(-H "$h"); done < "$tmp/headers"
fi
scheme=http
tls_args=()
if [ "$scenario" = tls-keepalive ] || [ "$scenario" = h2-tls ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2> /dev/null
  printf '[listeners.tls]\ncertificates = [{ cert = "%s", key = "%s" }]\n' \
    "$tmp/cert.pem" "$tmp/key.pem" > "$tmp/tls.toml"
  # The tls table belongs to the listener: put it right after the [[listeners]] entry.
  python3 - "$tmp/ringway.toml" "$tmp/tls.toml" <<'PY'
import sys
cfg, tls = open(sys.argv[1]).read(), open(sys.argv[2]).read()
i = cfg.index("[upstreams.be]")
open(sys.argv[1], "w").write(cfg[:i] + tls + cfg[i:])
PY
  scheme=https
  # A self-signed leaf is no trust anchor for webpki: skip chain checks (signatures still run).
  tls_args=(--insecure --server-name localhost)
fi
taskset -c "$gw_cpu" "$bin/ringway" --config "$tmp/ringway.toml" --workers 1 2> "$tmp/ringway.log" &
gw=$!
pids+=($gw)
for _ in $(seq 100); do
  (echo > "/dev/tcp/127.0.0.1/$gw_port") 2>/dev/null && break
  sleep 0.05
done

case "$scenario" in
  h2-tls|h2c)
    # h2load (nghttp2): 50 connections x 10 concurrent streams; TLS offers ALPN h2 only.
    h2_args=(--connect-to="127.0.0.1:$gw_port" "http://127.0.0.1:$gw_port/item")
    [ "$scenario" = h2-tls ] && h2_args=(--npn-list=h2 --connect-to="127.0.0.1:$gw_port" "https://localhost:$gw_port/item")
    taskset -c "$load_cpu" h2load -c 50 -m 10 -t 1 -D "${load_secs}s" --warm-up-time 2s \
      "${h2_args[@]}" > "$tmp/load.out" &
    ;;
  *)
    if [ "${LOAD:-rwload}" = wrk ]; then
      [ "$scheme" = http ] && [ "$method" = GET ] || { echo "LOAD=wrk: plain-HTTP GET scenarios only" >&2; exit 2; }
      command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 2; }
      # wrk has no warm-up: perf starts 3 s in, as with rwload's 2 s warm-up.
      taskset -c "$load_cpu" wrk -t1 -c50 -d "${load_secs}s" "${headers[@]}" \
        "http://127.0.0.1:$gw_port/item" > "$tmp/load.out" &
    else
    "$bin/rwload" run --url "$scheme://127.0.0.1:$gw_port/item" "${tls_args[@]}" -c 50 --cpus "$load_cpu" \
      -m "$method" --body-size "$req_body" -d "${load_secs}s" --warmup 2s -q "${headers[@]}" > "$tmp/load.out" &
    fi
    ;;
esac
load=$!
sleep 3
# CALL_GRAPH=dwarf unwinds with debug info (the release build has no frame pointers, so with
# the default `fp` many Rust frames land under [unknown]); it needs a lower frequency (FREQ=499).
perf record -F "${FREQ:-1999}" --call-graph "${CALL_GRAPH:-fp}" -p "$gw" -o "$tmp/perf.data" \
  -- sleep $((load_secs - 3)) 2> /dev/null
wait "$load"
cat "$tmp/load.out"

commit=$(git rev-parse --short HEAD)
tag="$scenario"
[ "${LOAD:-rwload}" = wrk ] && tag="$scenario-wrk"
out="flamegraphs/${tag}-${commit}.svg"
perf script -i "$tmp/perf.data" 2> /dev/null | inferno-collapse-perf > "$tmp/folded"
inferno-flamegraph --title "ringway $tag @ $commit (1 worker, CPU $gw_cpu)" \
  < "$tmp/folded" > "$out"
echo "wrote $out"
