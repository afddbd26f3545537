#!/usr/bin/env bash
# Scaling across cores on a small machine (issue 15): does a second worker keep the gateway's
# requests per CPU-second? Paired, interleaved rounds of four arms (N = CONNS, default 50,
# proxy-small's count):
#
#   1w   --workers 1 -c N              gateway on CPU 0 at Q %, load + upstream on CPU 1
#   1ws  --workers 1 -c N --share-cpus same, but load + upstream on every CPU (as in 2w)
#   2w   --workers 2 -c 2N             one worker per CPU, each capped at Q % of its CPU
#                                      (cgroup per gateway CPU), load + upstream on both;
#                                      N connections per worker, as in the 1-worker arms
#   2wt  --workers 2 -c N              the same with N in total (N/2 per worker)
#
# With 2 CPUs, 2 workers leave none for the load side; the quota keeps the gateway the
# bottleneck while the load tool and upstream get the rest of both CPUs (2 - 2Q/100 CPUs).
# The comparison is fair only if the quota binds in every arm (the gateway uses all of it):
# a gateway the load cannot keep busy waits for requests and its cost per request is another
# regime's. Q = 40 was too much here: two ringway workers used 0.51-0.67 of their 0.8 CPU
# (rwload and the upstream on the remaining 1.2 CPUs could not feed them), so the default is
# 25. The summary flags an arm whose median use is below 90 % of its quota. Requests per
# gateway CPU-second is req/s divided by the gateway's CPU time from /proc, so a 2-worker
# gateway that does the same work per request scores the same as a 1-worker one.
#
# What each ratio isolates:
# - 2w/1ws: the second worker itself. Same placement of the load, same connections per
#   worker: the headline figure.
# - 1ws/1w: sharing the gateway's CPUs with the load tool and the upstream, which a 2-worker
#   run cannot avoid on 2 CPUs (a property of the machine, not of the gateway).
# - 2wt/2w: half the connections per worker. A worker with fewer requests waiting finds fewer
#   per wakeup and waits more often, so this measures the load's depth, not the gateway.
# - 2w/1w: everything at once.
# The order of the arms rotates every round, and each round is compared with itself, then
# the median over rounds. nginx runs in the same rwcompare runs (same pinning, quota and
# connections, `worker_processes N`) as a control: if nginx loses as much, the machine, not
# ringway, is what does not scale.
#
#   loadtest/scaling.sh ROUNDS [QUOTA_PCT] [SCENARIO] [EXTRA RWCOMPARE ARGS...]
#   loadtest/scaling.sh 5                 # proxy-small, 25 %, -d 5s --warmup 1s
#   loadtest/scaling.sh 5 25 proxy-small --load wrk
#   TARGETS=ringway loadtest/scaling.sh 3 # no nginx control
#   CONNS=100 loadtest/scaling.sh 3       # 100 connections per worker
#
# Needs root and a cgroup cpu controller (rwcompare --cpu-quota), and release builds
# (target/release/{ringway,rwcompare,rwload}; RWCOMPARE=path overrides rwcompare).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:?usage: loadtest/scaling.sh ROUNDS [QUOTA_PCT] [SCENARIO] [EXTRA ARGS...]}
QUOTA=${2:-25}
SCENARIO=${3:-proxy-small}
shift $(($# < 3 ? $# : 3))
EXTRA=("$@")
RWCOMPARE=${RWCOMPARE:-target/release/rwcompare}
TARGETS=${TARGETS:-ringway,nginx}
[[ " ${EXTRA[*]} " == *" -d "* || " ${EXTRA[*]} " == *" --duration "* ]] || EXTRA+=(-d 5s)
[[ " ${EXTRA[*]} " == *" --warmup "* ]] || EXTRA+=(--warmup 1s)
CONNS=${CONNS:-50}
ARMS=(1w 1ws 2w 2wt)
declare -A ARGS=(
  [1w]="--workers 1 -c $CONNS"
  [1ws]="--workers 1 -c $CONNS --share-cpus"
  [2w]="--workers 2 -c $((2 * CONNS))"
  [2wt]="--workers 2 -c $CONNS"
)
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "scaling: $SCENARIO, quota $QUOTA % per gateway CPU, $CONNS connections per worker, targets $TARGETS, ${EXTRA[*]}" >&2
for r in $(seq "$ROUNDS"); do
  # Rotate the order so no arm always runs first (drift within a round averages out).
  for k in 0 1 2 3; do
    arm=${ARMS[$(((k + r) % 4))]}
    # shellcheck disable=SC2086
    json=$("$RWCOMPARE" "$SCENARIO" ${ARGS[$arm]} --cpu-quota "$QUOTA" --only "$TARGETS" \
      --json "${EXTRA[@]}" 2>/dev/null) || { echo "round $r $arm: rwcompare failed" >&2; exit 1; }
    while read -r t rpc rps util errs; do
      echo "$r $arm $t $rpc $rps $util $errs" >>"$OUT"
      printf 'round %d %-4s %-8s req/CPU-s %7s  req/s %7s  gateway CPUs used %s  errors %s\n' \
        "$r" "$arm" "$t" "$rpc" "$rps" "$util" "$errs" >&2
    done < <(jq -r '.targets | to_entries[] | select(.value.status == "ok")
      | "\(.key) \(.value.req_per_cpu_s | floor) \(.value.rps | floor)"
        + " \(.value.gateway_cpu_s / .value.duration_s * 1000 | round / 1000) \(.value.errors)"' <<<"$json")
  done
done
python3 - "$OUT" "$QUOTA" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, arm, t, rpc, rps, util, errs in rows:
    by.setdefault(t, {}).setdefault(int(r), {})[arm] = (float(rpc), float(rps), float(util), int(errs))
for t in ("ringway", "nginx"):
    if t not in by:
        continue
    rounds = sorted(by[t])
    print(f"{t}:")
    for arm in ("1w", "1ws", "2w", "2wt"):
        vals = [by[t][r][arm][0] for r in rounds if arm in by[t][r]]
        util = [by[t][r][arm][2] for r in rounds if arm in by[t][r]]
        errs = sum(by[t][r][arm][3] for r in rounds if arm in by[t][r])
        quota = float(sys.argv[2]) / 100 * (2 if arm.startswith("2w") else 1)
        flag = "" if statistics.median(util) >= 0.9 * quota else "  QUOTA NOT REACHED: the gateway was not the bottleneck"
        print(f"  {arm:<4} median req/CPU-s {statistics.median(vals):>8.0f}  "
              f"(CPUs used {statistics.median(util):.2f} of {quota:.2f})  per round: "
              + " ".join(f"{v:.0f}" for v in vals) + (f"  ERRORS {errs}" if errs else "") + flag)
    for a, b in (("2w", "1ws"), ("1ws", "1w"), ("2wt", "2w"), ("2w", "1w")):
        ratios = [by[t][r][a][0] / by[t][r][b][0] for r in rounds if a in by[t][r] and b in by[t][r]]
        print(f"  {a}/{b:<4} median ratio {statistics.median(ratios):.3f}  per round: "
              + " ".join(f"{x:.3f}" for x in ratios))
PY
