#!/usr/bin/env bash
# Bounded fuzz smoke for CI (see fuzz/README.md): builds the cargo-fuzz targets and runs each
# one for FUZZ_SECONDS (default 20) from a copy of its seed corpus in fuzz/corpus/.
# Exits 1 on a crash (the reproducer path is printed). When the nightly toolchain or
# cargo-fuzz is missing and cannot be installed, prints "skipped: <why>" and exits 0.
#
# Environment:
#   FUZZ_SECONDS=20          time per target
#   FUZZ_TARGETS="a b"       run only these targets (default: all, from `cargo fuzz list`)
#   FUZZ_SMOKE_INSTALL=0     never `cargo install cargo-fuzz` (default: install it if missing)
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"

skip() {
  echo "fuzz smoke skipped: $*"
  exit 0
}

command -v cargo >/dev/null 2>&1 || skip "cargo not found"
command -v rustup >/dev/null 2>&1 || skip "rustup not found (cargo-fuzz needs the nightly toolchain)"
rustup run nightly rustc --version >/dev/null 2>&1 \
  || skip "no nightly toolchain (rustup toolchain install nightly)"

if ! cargo fuzz --version >/dev/null 2>&1; then
  if [ "${FUZZ_SMOKE_INSTALL:-1}" = "0" ]; then
    skip "cargo-fuzz not installed and FUZZ_SMOKE_INSTALL=0"
  fi
  echo "fuzz smoke: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked >/tmp/fuzz-smoke-install.log 2>&1 \
    || { tail -n 20 /tmp/fuzz-smoke-install.log; skip "cargo install cargo-fuzz failed"; }
fi

echo "fuzz smoke: building targets ($(cargo fuzz --version 2>/dev/null))"
if ! cargo +nightly fuzz build; then
  echo "fuzz smoke: FAILED to build the fuzz targets" >&2
  exit 1
fi

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
ran=0
for t in $targets; do
  mkdir -p "$work/corpus/$t"
  echo "fuzz smoke: $t for ${seconds}s"
  # New inputs go to the scratch corpus; the committed seeds are only read.
  if cargo +nightly fuzz run "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" >"$work/$t.log" 2>&1; then
    grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work/$t.log" | tail -n 2
    ran=$((ran + 1))
  else
    tail -n 40 "$work/$t.log"
    mkdir -p fuzz/artifacts/"$t"
    cp "$work"/crash-* "$work"/oom-* "$work"/timeout-* "$work"/leak-* fuzz/artifacts/"$t"/ 2>/dev/null
    echo "fuzz smoke: $t FAILED; reproducer(s) in fuzz/artifacts/$t/" >&2
    echo "  re-run: cargo +nightly fuzz run $t fuzz/artifacts/$t/<file>" >&2
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke: ${#failed[@]} of $((ran + ${#failed[@]})) targets crashed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz smoke: all $ran targets ran ${seconds}s each without a crash"
