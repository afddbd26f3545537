#!/usr/bin/env bash
# testssl.sh against a ringway TLS listener, on loopback, bounded in time (not part of
# scripts/test.sh: it takes minutes). It makes an ECDSA P-256 CA and leaf certificate
# (openssl), starts an upstream and ringway with one `[listeners.tls]` listener proxying `/`
# to it, runs testssl.sh (Debian package `testssl.sh`: apt-get install -y testssl.sh) with the
# checks below, and prints a summary: finding counts by severity and every finding rated
# MEDIUM or worse, verbatim (id, severity, text).
#
# Exit status: 0 no finding at or above TESTSSL_FAIL_ON; 1 there are some, or ringway did not
# start; 2 testssl or another tool is missing; 124 testssl hit the time limit.
#
# Environment:
#   RINGWAY_BIN=PATH          the gateway (default: target/release/ringway, else target/fasttest/ringway,
#                             else it is built with `cargo build --release --bin ringway`)
#   TESTSSL_TIMEOUT=600       seconds testssl may run
#   TESTSSL_CHECKS="..."      testssl options selecting checks (default below)
#   TESTSSL_FAIL_ON=HIGH      lowest severity that makes the exit status 1 (LOW, MEDIUM, HIGH, CRITICAL)
#   TESTSSL_KEEP=1            keep the temp dir (certificates, config, logs, testssl JSON)
#   TESTSSL_SERVER=nginx      run the same checks against nginx (same certificate, the
#                             rwcompare TLS settings) instead, as a baseline
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

limit="${TESTSSL_TIMEOUT:-600}"
checks="${TESTSSL_CHECKS:---protocols --server-defaults --server-preference --std --fs --vulnerable --headers}"
fail_on="${TESTSSL_FAIL_ON:-HIGH}"

tool() {
  command -v "$1" >/dev/null 2>&1 || { echo "testssl: $1 not found ($2)" >&2; exit 2; }
}
testssl_bin="$(command -v testssl || command -v testssl.sh || true)"
[ -n "$testssl_bin" ] || { echo "testssl: not installed (apt-get install -y testssl.sh)" >&2; exit 2; }
tool openssl "apt-get install -y openssl"
tool curl "apt-get install -y curl"
tool python3 "apt-get install -y python3"
tool timeout "coreutils"

server="${TESTSSL_SERVER:-ringway}"
bin="${RINGWAY_BIN:-}"
if [ "$server" = nginx ]; then
  tool nginx "apt-get install -y nginx-light"
  bin="$(command -v nginx)"
elif [ "$server" != ringway ]; then
  echo "testssl: TESTSSL_SERVER must be ringway or nginx" >&2; exit 2
fi
if [ -z "$bin" ]; then
  for b in target/release/ringway target/fasttest/ringway; do
    [ -x "$b" ] && { bin="$b"; break; }
  done
fi
if [ -z "$bin" ]; then
  echo "testssl: building ringway (cargo build --release --bin ringway)"
  cargo build --release --bin ringway || exit 1
  bin=target/release/ringway
fi

dir="$(mktemp -d /tmp/ringway-testssl.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  if [ "${TESTSSL_KEEP:-0}" = "1" ]; then echo "testssl: kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ECDSA P-256 CA and leaf (localhost, 127.0.0.1) shaped like a public one (90 days, a CRL
# distribution point), so testssl's certificate findings are about the server, not the test
# certificate; testssl trusts the CA (--add-ca).
openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key" 2>/dev/null
openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=ringway testssl CA" -days 365 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$dir/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$dir/leaf.key" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$dir/leaf.key" -out "$dir/key.pem"
openssl req -new -key "$dir/key.pem" -subj "/CN=localhost" -out "$dir/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\ncrlDistributionPoints=URI:http://localhost/ringway-test-ca.crl\n' >"$dir/leaf.ext"
openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 90 -extfile "$dir/leaf.ext" -out "$dir/leaf.pem" 2>/dev/null
cat "$dir/leaf.pem" "$dir/ca.pem" >"$dir/cert.pem"
[ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] || { echo "testssl: certificate generation failed" >&2; exit 1; }

# Upstream: rwload's (same target dir as ringway) or Python's http.server.
uport="$(free_port)"
rwload="$(dirname "${RINGWAY_BIN:-target/release/ringway}")/rwload"
[ -x "$rwload" ] || rwload=target/fasttest/rwload
if [ -x "$rwload" ]; then
  "$rwload" upstream --listen "127.0.0.1:$uport" --duration "$((limit + 120))s" >"$dir/upstream.log" 2>&1 &
else
  mkdir -p "$dir/www" && echo ok >"$dir/www/index.html"
  python3 -m http.server "$uport" --bind 127.0.0.1 --directory "$dir/www" >"$dir/upstream.log" 2>&1 &
fi
pids+=($!)

port="$(free_port)"
if [ "$server" = nginx ]; then
  mkdir -p "$dir/nginx"
  cat >"$dir/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/cb; proxy_temp_path $dir/nginx/p; fastcgi_temp_path $dir/nginx/f;
    uwsgi_temp_path $dir/nginx/u; scgi_temp_path $dir/nginx/s;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
        ssl_prefer_server_ciphers on;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        location / { proxy_pass http://127.0.0.1:$uport; }
    }
}
EOF
  "$bin" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" >"$dir/ringway.log" 2>&1 &
  pids+=($!)
else
cat >"$dir/ringway.toml" <<EOF
version = 1

[server]
workers = 1
drain_timeout = "1s"

[admin]
enabled = false

[[listeners]]
name = "https"
address = "127.0.0.1:$port"

[listeners.tls]
certificates = [{ cert = "$dir/cert.pem", key = "$dir/key.pem" }]

[upstreams.be]
targets = [{ address = "127.0.0.1:$uport" }]

[[routes]]
name = "all"
prefix = "/"
proxy = { upstream = "be" }
EOF
"$bin" check --config "$dir/ringway.toml" >"$dir/check.log" 2>&1 \
  || { echo "testssl: ringway rejects the config:" >&2; cat "$dir/check.log" >&2; exit 1; }
"$bin" --config "$dir/ringway.toml" >"$dir/ringway.log" 2>&1 &
pids+=($!)
fi

ready=0
for _ in $(seq 1 150); do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --cacert "$dir/ca.pem" \
    --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" 2>/dev/null)"
  [ "$code" = "200" ] && { ready=1; break; }
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "testssl: $server did not answer 200 over TLS on 127.0.0.1:$port (last: ${code:-none})" >&2
  tail -n 20 "$dir/ringway.log" >&2
  exit 1
fi

echo "testssl: $("$testssl_bin" --version 2>/dev/null | grep -m1 -o 'testssl.sh *[0-9][^ ]*' || echo testssl.sh)" \
  "against $server ($bin) on 127.0.0.1:$port, checks: $checks, limit ${limit}s"
# shellcheck disable=SC2086 # $checks is a list of options
timeout --kill-after=10 "$limit" "$testssl_bin" --quiet --color 0 --warnings off \
  --connect-timeout 5 --openssl-timeout 10 --ip 127.0.0.1 --add-ca "$dir/ca.pem" \
  --jsonfile "$dir/testssl.json" $checks "localhost:$port" >"$dir/testssl.log" 2>&1
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  echo "testssl: stopped after ${limit}s (TESTSSL_TIMEOUT); partial results follow" >&2
fi
[ -s "$dir/testssl.json" ] || { echo "testssl: no JSON output (exit $rc):" >&2; tail -n 30 "$dir/testssl.log" >&2; exit 1; }

python3 - "$dir/testssl.json" "$fail_on" <<'PY'
import json, sys
order = ["OK", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
findings = json.load(open(sys.argv[1]))
fail_on = order.index(sys.argv[2].upper()) if sys.argv[2].upper() in order else order.index("HIGH")
counts = {}
for f in findings:
    counts[f.get("severity", "?")] = counts.get(f.get("severity", "?"), 0) + 1
print("testssl summary: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in order)
      + (f", other {sum(v for k, v in counts.items() if k not in order)}" if any(k not in order for k in counts) else ""))
worst = [f for f in findings if f.get("severity") in order[3:]]
for f in worst:
    print(f"  {f['severity']:<8} {f.get('id', '?')}: {f.get('finding', '')}")
low = [f for f in findings if f.get("severity") == "LOW"]
if low:
    print("  LOW: " + "; ".join(f"{f.get('id', '?')}: {f.get('finding', '')}" for f in low))
for f in findings:
    if f.get("severity") in ("WARN", "FATAL"):
        print(f"  {f['severity']:<8} {f.get('id', '?')}: {f.get('finding', '')}")
bad = [f for f in findings if f.get("severity") in order[fail_on:]]
if bad:
    print(f"testssl: {len(bad)} finding(s) at or above {order[fail_on]}")
    sys.exit(1)
print(f"testssl: no finding at or above {order[fail_on]}")
PY
summary=$?
[ "$rc" = 124 ] || [ "$rc" = 137 ] && exit 124
exit "$summary"
