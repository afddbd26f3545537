#!/usr/bin/env bash
# Paired, interleaved comparison of ringway variants with rwcompare. On a shared machine the
# throughput drifts by more than the effects we want to see (minutes apart, the same build
# varies ±15%), so variants run back to back in every round and each round is compared with
# itself: the ratio variant / first variant per round, then the median over rounds.
#
#   loadtest/ab.sh ROUNDS "RWCOMPARE ARGS A" "RWCOMPARE ARGS B" ...
#   loadtest/ab.sh 8 "proxy-small" "proxy-small --metrics off" "policies"
#
# Every run is `rwcompare ARGS --only ringway --json` with -d 4s --warmup 1s unless ARGS set them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=$1
shift
VARIANTS=("$@")
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq "$ROUNDS"); do
  for i in "${!VARIANTS[@]}"; do
    v=${VARIANTS[$i]}
    extra=()
    [[ $v == *" -d "* ]] || extra+=(-d 4s)
    [[ $v == *"--warmup"* ]] || extra+=(--warmup 1s)
    # shellcheck disable=SC2086
    val=$(target/release/rwcompare $v --only ringway --json "${extra[@]}" 2>/dev/null |
      python3 -c 'import json,sys; t=json.load(sys.stdin)["targets"]["ringway"]; print(t["req_per_cpu_s"], t["errors"])')
    echo "$r $i $val" >>"$OUT"
    printf 'round %d  %-40s req/CPU-s %s\n' "$r" "$v" "$val" >&2
  done
done
python3 - "$OUT" "${VARIANTS[@]}" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
names = sys.argv[2:]
by = {}
for r, i, v, e in rows:
    by.setdefault(int(r), {})[int(i)] = (float(v), int(e))
print(f"{'variant':<40} {'median req/CPU-s':>16} {'median ratio':>12} {'ratios per round'}")
for i, n in enumerate(names):
    vals = [by[r][i][0] for r in sorted(by)]
    ratios = [by[r][i][0] / by[r][0][0] for r in sorted(by)]
    errs = sum(by[r][i][1] for r in by)
    print(f"{n:<40} {statistics.median(vals):>16.0f} {statistics.median(ratios):>12.3f} "
          + " ".join(f"{x:.3f}" for x in ratios) + (f"  ERRORS {errs}" if errs else ""))
PY
