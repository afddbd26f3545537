#!/usr/bin/env bash
# The test command (see README.md): sets up what the tests need and runs every test.
# Integration tests start the real gateway binary on loopback ports with real upstreams.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 2
fi

# The TLS tests make RSA keys and PKCS#1/SEC1 key files with the openssl command-line tool.
if ! command -v openssl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
  else
    echo "openssl not found: install it (apt-get install openssl) for the TLS tests" >&2
    exit 2
  fi
fi

# The HTTP/2 load-test smoke test and `rwcompare --load h2load` drive the gateway with h2load
# (Debian's nghttp2-client).
if ! command -v h2load >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client
  else
    echo "h2load not found: install nghttp2-client for the HTTP/2 load-test smoke test" >&2
  fi
fi

# loadtest/tests/rwcompare.rs drives HTTP/1.1 scenarios with wrk (`rwcompare --load wrk`).
if ! command -v wrk >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
  else
    echo "wrk not found: install wrk for the outside-load-tool test (required under CI)" >&2
  fi
fi

# tests/deploy.rs validates deploy/prometheus/alerts.yml and the dashboard's queries with
# promtool (Debian's prometheus package: ~19 MB download, the server is not started).
if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  else
    echo "promtool not found: install prometheus for the alert-rule checks (required under CI)" >&2
  fi
fi

# tests/service.rs checks the systemd unit (systemd-analyze verify/security) and the
# logrotate file (logrotate -d).
for tool in systemd-analyze:systemd logrotate:logrotate; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tool##*:}"
    else
      echo "${tool%%:*} not found: install ${tool##*:} for the service-file checks (required under CI)" >&2
    fi
  fi
done

# tests/portal_browser.rs drives the developer portal in Debian's headless chromium through
# chromedriver (W3C WebDriver); it fails under CI when they are missing, and skips otherwise.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "chromium/chromedriver not found: install chromium and chromium-driver for the portal browser tests (required under CI)" >&2
  fi
fi

# tests/config_schema.rs validates the bundled configs against deploy/ringway.schema.json with
# Python's jsonschema (an implementation independent of the one that wrote the schema).
if ! python3 -c 'import jsonschema' >/dev/null 2>&1; then
  python3 -m pip install -q jsonschema || echo "jsonschema not installable: the schema validation test will fail under CI" >&2
fi
# schemathesis fuzzes the gateway with an OpenAPI document (tests/openapi_validate.rs).
if ! command -v st >/dev/null 2>&1; then
  python3 -m pip install -q schemathesis || echo "schemathesis not installable: tests/openapi_validate.rs will fail under CI" >&2
fi

# tests/mcp.rs drives the MCP endpoint with an independent client: the official `mcp` Python
# SDK (Streamable HTTP transport). Under CI=1 the test fails without it; otherwise it skips.
if ! python3 -c 'import mcp.client.streamable_http' >/dev/null 2>&1; then
  python3 -m pip install -q mcp || echo "mcp (Python SDK) not installable: tests/mcp.rs will fail under CI" >&2
fi

# The Redis tests (global limits, quotas, usage, key sync) run against real redis-server
# processes. Each test starts its own private server when it needs to kill or freeze one; the
# Redis Cluster (3 masters, made with `redis-cli --cluster create`) is started here once, on
# free loopback ports, shared by every test binary through RINGWAY_TEST_REDIS_CLUSTER, and
# stopped when this script exits.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
    # Debian starts a system instance on 6379; the tests never use it.
    (systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1) || true
  else
    echo "redis-server not found: install redis-server and redis-tools for the Redis tests" >&2
    exit 2
  fi
fi
REDIS_DIR=$(mktemp -d -t ringway-test-redis.XXXXXX)
REDIS_PIDS=()
stop_redis() {
  for pid in "${REDIS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$REDIS_DIR"
}
trap stop_redis EXIT
# A free port whose cluster-bus port (+10000) is free and below 65536 as well.
free_port() {
  python3 - <<'PY'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p + 10000 < 65536:
        try:
            b = socket.socket(); b.bind(("127.0.0.1", p + 10000)); b.close()
        except OSError:
            s.close(); continue
        print(p); break
    s.close()
PY
}
CLUSTER_NODES=()
for i in 1 2 3; do
  port=$(free_port)
  mkdir -p "$REDIS_DIR/$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$REDIS_DIR/$port" --cluster-enabled yes \
    --cluster-config-file nodes.conf --cluster-node-timeout 2000 --save "" --appendonly no \
    --protected-mode no --daemonize no >"$REDIS_DIR/$port.log" 2>&1 &
  REDIS_PIDS+=($!)
  CLUSTER_NODES+=("127.0.0.1:$port")
done
for node in "${CLUSTER_NODES[@]}"; do
  for _ in $(seq 100); do
    redis-cli -h "${node%:*}" -p "${node##*:}" PING 2>/dev/null | grep -q PONG && break
    sleep 0.05
  done
done
redis-cli --cluster create "${CLUSTER_NODES[@]}" --cluster-replicas 0 --cluster-yes >"$REDIS_DIR/create.log" 2>&1 \
  || { cat "$REDIS_DIR/create.log" >&2; echo "could not create the test Redis Cluster" >&2; exit 2; }
for _ in $(seq 200); do
  ok=1
  for node in "${CLUSTER_NODES[@]}"; do
    redis-cli -h "${node%:*}" -p "${node##*:}" CLUSTER INFO 2>/dev/null | grep -q cluster_state:ok || ok=0
  done
  [ "$ok" = 1 ] && break
  sleep 0.1
done
RINGWAY_TEST_REDIS_CLUSTER=$(IFS=,; echo "${CLUSTER_NODES[*]}")
export RINGWAY_TEST_REDIS_CLUSTER

# The fasttest profile (Cargo.toml): optimised like release, since the streaming tests move
# hundreds of MiB through the gateway, but without fat LTO so a rebuild takes seconds.
cargo test --profile fasttest --workspace --all-targets "$@"
