#!/usr/bin/env bash
# Captures a CPU flamegraph of one ringway worker under a load scenario.
#
#   flamegraphs/capture.sh proxy-small      # GET, 20 B upstream body, 50 connections
#   flamegraphs/capture.sh proxy-1k-post    # POST 1 KiB body, 1 KiB response
#   flamegraphs/capture.sh policies         # proxy-small + API key + JWT + rate limit
#   flamegraphs/capture.sh tls-keepalive    # proxy-small over HTTPS (ECDSA P-256, TLS 1.3)
#
# Needs: perf (apt-get install linux-perf) and inferno (cargo install inferno), and release
# builds (cargo build --release --workspace). Pinning on a 2-core machine: the gateway worker
# on CPU 0, the load generator and the upstream on CPU 1. Writes
# flamegraphs/<scenario>-<commit>.svg. Loopback only; bounded (SECONDS_LOAD, default 12 s).
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
  tls-keepalive) body=20; method=GET; req_body=0 ;;
  *) echo "unknown scenario $scenario (proxy-small, proxy-1k-post, policies, tls-keepalive)" >&2; exit 2 ;;
esac

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port); gw_port=$(free_port)

"$bin/rwload" upstream --listen "127.0.0.1:$up_port" --cpus "$load_cpu" --body-size "$body" \
  --duration "$((load_secs + 10))s" > "$tmp/upstream.out" &
pids+=($!)
cat > "$tmp/ringway.toml" <<TOML
[admin]
enabled = false
[[listeners]]
address = "127.0.0.1:$gw_port"
[upstreams.be]
targets = [{ address = "127.0.0.1:$up_port" }]
[[routes]]
name = "proxy"
prefix = "/"
proxy = { upstream = "be" }
TOML
headers=()
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
if [ "$scenario" = tls-keepalive ]; then
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

"$bin/rwload" run --url "$scheme://127.0.0.1:$gw_port/item" "${tls_args[@]}" -c 50 --cpus "$load_cpu" \
  -m "$method" --body-size "$req_body" -d "${load_secs}s" --warmup 2s -q "${headers[@]}" > "$tmp/load.out" &
load=$!
sleep 3
perf record -F 1999 -g -p "$gw" -o "$tmp/perf.data" -- sleep $((load_secs - 3)) 2> /dev/null
wait "$load"
cat "$tmp/load.out"

commit=$(git rev-parse --short HEAD)
out="flamegraphs/${scenario}-${commit}.svg"
perf script -i "$tmp/perf.data" 2> /dev/null | inferno-collapse-perf > "$tmp/folded"
inferno-flamegraph --title "ringway $scenario @ $commit (1 worker, CPU $gw_cpu)" \
  < "$tmp/folded" > "$out"
echo "wrote $out"
