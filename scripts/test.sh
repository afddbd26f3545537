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

# The HTTP/2 load-test smoke test drives the gateway with h2load (Debian's nghttp2-client).
if ! command -v h2load >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client
  else
    echo "h2load not found: install nghttp2-client for the HTTP/2 load-test smoke test" >&2
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

# tests/config_schema.rs validates the bundled configs against deploy/ringway.schema.json with
# Python's jsonschema (an implementation independent of the one that wrote the schema).
if ! python3 -c 'import jsonschema' >/dev/null 2>&1; then
  python3 -m pip install -q jsonschema || echo "jsonschema not installable: the schema validation test will fail under CI" >&2
fi

# The fasttest profile (Cargo.toml): optimised like release, since the streaming tests move
# hundreds of MiB through the gateway, but without fat LTO so a rebuild takes seconds.
cargo test --profile fasttest --workspace --all-targets "$@"
