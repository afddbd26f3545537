#!/usr/bin/env bash
# Paired, interleaved comparison of two ringway binaries with wrk (a load tool this project did
# not write): one pinned worker on CPU 0 proxying to an nginx `return 200` upstream, wrk and
# nginx on CPU 1. Each round runs A then B back to back; prints req/s and gateway CPU µs per
# request for each, then the median ratio B/A of requests per gateway CPU-second.
#
#   loadtest/wrk-ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]
#   loadtest/wrk-ab.sh /work/base/target/release/ringway target/release/ringway 6 8
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-6} SECS=${4:-8}
for t in wrk nginx taskset python3; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }; done
DIR=$(mktemp -d)
. "$(dirname "$0")/proxy-small-env.sh"
proxy_small_env "$DIR"
trap 'kill $NGX 2>/dev/null; rm -rf "$DIR"' EXIT
TCK=$(getconf CLK_TCK)
OUT="$DIR/rows"
for r in $(seq "$ROUNDS"); do
  for v in A B; do
    bin=$A; [ $v = B ] && bin=$B
    taskset -c 0 "$bin" --config "$DIR/gw.toml" --workers 1 2>"$DIR/gw.log" & PID=$!
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$GW/" && break; sleep 0.05; done
    taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$GW/" >/dev/null
    c0=$(awk '{print $14+$15}' /proc/$PID/stat)
    res=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$GW/")
    c1=$(awk '{print $14+$15}' /proc/$PID/stat)
    kill $PID; wait $PID 2>/dev/null || true
    reqs=$(echo "$res" | grep -oE "^ +[0-9]+ requests" | grep -oE "[0-9]+")
    rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
    non2xx=$(echo "$res" | awk '/Non-2xx/ {print $NF}'); non2xx=${non2xx:-0}
    cpu=$(python3 -c "print(($c1-$c0)/$TCK)")
    echo "$r $v $rps $reqs $cpu $non2xx" >>"$OUT"
    printf 'round %d %s  req/s %9s  gateway CPU µs/req %6.2f  non-2xx %s\n' "$r" "$v" "$rps" \
      "$(python3 -c "print(($c1-$c0)/$TCK*1e6/$reqs)")" "$non2xx" >&2
  done
done
python3 - "$OUT" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, v, rps, reqs, cpu, bad in rows:
    by.setdefault(r, {})[v] = (float(rps), int(reqs) / max(float(cpu), 1e-9), int(bad))
for v in "AB":
    print(f"{v}: median req/s {statistics.median(by[r][v][0] for r in by):9.0f}   "
          f"median req/CPU-s {statistics.median(by[r][v][1] for r in by):9.0f}   "
          f"non-2xx {sum(by[r][v][2] for r in by)}")
ratios = [by[r]["B"][1] / by[r]["A"][1] for r in sorted(by)]
print("B/A req per CPU-s, per round:", " ".join(f"{x:.3f}" for x in ratios),
      f"  median {statistics.median(ratios):.3f}")
PY
