#!/usr/bin/env bash
# Architecture report: import cycles between files and imports that run up the layer table
# (tests/architecture.rs). Prints the whole report even when the check passes.
#   bash scripts/arch-check.sh            the check (fasttest profile)
#   ARCH_PROFILE=dev bash scripts/...     another cargo profile
# If cargo-modules is installed, also prints the mutual `use` pairs it sees, as a cross-check
# (it reads only `use` items outside fn bodies, so it sees a subset of the check's edges).
set -uo pipefail
cd "$(dirname "$0")/.."
profile="${ARCH_PROFILE:-fasttest}"

cargo test --profile "$profile" --test architecture -- --include-ignored --nocapture
status=$?

if cargo modules --version >/dev/null 2>&1; then
    echo
    echo "== cargo modules: mutual 'use' pairs between modules (lib, no tests) =="
    cargo modules dependencies -p ringway --lib --no-externs --no-sysroot --no-fns --no-traits \
        --no-types --no-owns 2>/dev/null |
        sed -n 's/^ *"ringway::\([^"]*\)" -> "ringway::\([^"]*\)" \[label="uses".*/\1 \2/p' |
        awk '{ e[$1" "$2] = 1 } END { for (k in e) { split(k, p, " ");
             if ((p[2]" "p[1]) in e && p[1] < p[2]) print "  " p[1] " <-> " p[2] } }' | sort
    # `--acyclic` works on the item graph (a type and its own methods count as a cycle), so it
    # only names the first such pair; shown for completeness, not as a gate.
    echo "== cargo modules --acyclic (first cycle only) =="
    cargo modules dependencies -p ringway --lib --no-externs --no-sysroot --no-fns --no-traits \
        --no-types --no-owns --acyclic 2>&1 >/dev/null | sed '/^Stack backtrace/,$d'
else
    echo "(cargo-modules not installed: cargo install cargo-modules for a cross-check)"
fi
exit $status
