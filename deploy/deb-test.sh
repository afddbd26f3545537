#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg -i, checks what it installed (files,
# conffiles, the ringway user, the unit verified by systemd-analyze, the packaged config
# accepted by `ringway check`, the man page and completions), runs the installed binary as
# the ringway user on the packaged config (port 80 via CAP_NET_BIND_SERVICE when the kernel
# allows it here, else a high port), then removes it (dpkg -r) and purges it (dpkg --purge),
# checking that nothing is left behind.
#
#   deploy/deb-test.sh                  # release build (fat LTO, slow), like `cargo deb`
#   PROFILE=fasttest deploy/deb-test.sh # quicker build, same package layout
#
# Needs root (dpkg -i) and cargo-deb (`cargo install cargo-deb`). Leaves the .deb in
# target/debian/. CI: run it in a fresh `debian:12` container as root after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
[ "$(id -u)" = 0 ] || { echo "deb-test: needs root (dpkg -i)" >&2; exit 2; }
command -v cargo-deb >/dev/null || { echo "deb-test: cargo install cargo-deb" >&2; exit 2; }
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }

cargo build --profile "$PROFILE" --bin ringway
bin=target/$PROFILE/ringway
mkdir -p target/deb-assets
"$bin" man | gzip -9n > target/deb-assets/ringway.8.gz
"$bin" completions bash > target/deb-assets/ringway.bash
"$bin" completions zsh > target/deb-assets/_ringway
"$bin" completions fish > target/deb-assets/ringway.fish
deb=$(cargo deb --no-build --profile "$PROFILE" 2>&1 | tail -1)
[ -f "$deb" ] || fail "cargo deb produced no package: $deb"
echo "deb-test: built $deb"
dpkg-deb --info "$deb" | sed -n '1,40p'
dpkg-deb --contents "$deb"

dpkg --purge ringway >/dev/null 2>&1 || true
dpkg -i "$deb"
for f in /usr/bin/ringway /etc/ringway/ringway.toml /etc/logrotate.d/ringway \
         /lib/systemd/system/ringway.service /usr/share/man/man8/ringway.8.gz \
         /usr/share/bash-completion/completions/ringway /usr/share/zsh/vendor-completions/_ringway \
         /usr/share/fish/vendor_completions.d/ringway.fish /usr/share/ringway/ringway.schema.json; do
  [ -e "$f" ] || fail "missing $f"
done
dpkg-query -W -f='${Conffiles}\n' ringway | grep -q /etc/ringway/ringway.toml || fail "config is not a conffile"
getent passwd ringway >/dev/null || fail "no ringway user"
[ "$(stat -c %U /var/log/ringway)" = ringway ] || fail "/var/log/ringway not owned by ringway"
/usr/bin/ringway check --config /etc/ringway/ringway.toml >/dev/null || fail "packaged config rejected"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /lib/systemd/system/ringway.service || fail "systemd-analyze verify"
  systemd-analyze security --offline=yes /lib/systemd/system/ringway.service 2>/dev/null | tail -1 || true
fi
man -l /usr/share/man/man8/ringway.8.gz 2>/dev/null | grep -q SIGUSR2 || zcat /usr/share/man/man8/ringway.8.gz | grep -q SIGUSR2 || fail "man page"
if command -v logrotate >/dev/null; then
  ! logrotate -d /etc/logrotate.d/ringway 2>&1 | grep -i error || fail "logrotate -d"
fi

# Serve as the ringway user on the packaged config, the way the unit runs it (no systemd
# PID 1 here): setpriv grants CAP_NET_BIND_SERVICE as an ambient capability, as the unit does.
if command -v setpriv >/dev/null && ! ss -ltn | grep -q ':80 '; then
  setpriv --reuid=ringway --regid=ringway --init-groups --inh-caps=+net_bind_service \
    --ambient-caps=+net_bind_service /usr/bin/ringway run --config /etc/ringway/ringway.toml \
    2>/tmp/ringway-deb-test.log &
  pid=$!
  ok=0
  for _ in $(seq 100); do curl -sf http://127.0.0.1:80/health >/dev/null && { ok=1; break; }; sleep 0.05; done
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  [ "$ok" = 1 ] || { cat /tmp/ringway-deb-test.log; kill "$pid"; fail "installed ringway did not serve on port 80"; }
  sleep 0.5   # the access-log writer flushes every 200 ms
  [ -s /var/log/ringway/access.log ] || fail "no access log line in /var/log/ringway/access.log"
  if command -v logrotate >/dev/null; then
    # Rotate with the packaged rules; no systemd here, so send the postrotate's signal by hand.
    logrotate -f -s /tmp/ringway-deb-test.state /etc/logrotate.d/ringway
    kill -USR1 "$pid"; sleep 0.3
    curl -sf http://127.0.0.1:80/health >/dev/null; sleep 0.5
    [ -s /var/log/ringway/access.log.1 ] || fail "logrotate did not rotate access.log"
    grep -q '"/health"' /var/log/ringway/access.log || fail "ringway did not reopen access.log after SIGUSR1"
    echo "deb-test: logrotate rotated access.log and ringway reopened it on SIGUSR1"
  fi
  kill -TERM "$pid"; wait "$pid" || true
  [ "$uid" = "$(id -u ringway)" ] || fail "ran as uid $uid, not ringway"
  echo "deb-test: served on port 80 as user ringway (uid $uid), access log written"
else
  echo "deb-test: port 80 busy or setpriv missing: serving check skipped"
fi

dpkg -r ringway
[ ! -e /usr/bin/ringway ] || fail "binary left after dpkg -r"
[ -e /etc/ringway/ringway.toml ] || fail "dpkg -r must keep the conffile"
dpkg --purge ringway
for f in /etc/ringway /etc/logrotate.d/ringway /var/log/ringway /lib/systemd/system/ringway.service; do
  [ ! -e "$f" ] || fail "$f left after purge"
done
! getent passwd ringway >/dev/null || fail "ringway user left after purge"
echo "deb-test: OK ($deb installed, served, removed and purged cleanly)"
