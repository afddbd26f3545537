# Shared by feature-wrk.sh and validate-wrk.sh (source it): one measured wrk round against a
# running gateway and the medians table over all rounds.
#
#   wrk_round ROUND LABEL PID OUT WRK_ARGS...   1 s warm-up, then `wrk -t1 -c50 -d${SECS}s
#       --latency WRK_ARGS` on CPU 1; the gateway's CPU (PID and its children) over the
#       measured window; appends "ROUND LABEL rps reqs ticks p50 p99 non2xx" to OUT, prints
#       the round on stderr and stops the gateway.
#   wrk_medians OUT TITLE FIRST SECOND          medians per label, and SECOND / FIRST.
TCK=$(getconf CLK_TCK)

wrk_round() {
  local r=$1 label=$2 pid=$3 out=$4
  shift 4
  # nginx runs a master and a worker: count every process of the gateway's group.
  cpu_of() { local s=0 p; for p in $pid $(pgrep -P "$pid" || true); do
    s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
  taskset -c 1 wrk -t1 -c50 -d1s "$@" >/dev/null
  local c0 c1 res reqs rps p50 p99 non2xx
  c0=$(cpu_of)
  res=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" --latency "$@")
  c1=$(cpu_of)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  reqs=$(echo "$res" | grep -oE "^ +[0-9]+ requests" | grep -oE "[0-9]+")
  rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$res" | awk '$1=="50%" {print $2}')
  p99=$(echo "$res" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$res" | awk '/Non-2xx/ {print $NF}'); non2xx=${non2xx:-0}
  echo "$r $label $rps $reqs $((c1 - c0)) $p50 $p99 $non2xx" >>"$out"
  printf 'round %d %-8s req/s %9s  gateway CPU µs/req %6.2f  p50 %7s  p99 %7s  non-2xx %s\n' \
    "$r" "$label" "$rps" "$(python3 -c "print($((c1 - c0))/$TCK*1e6/$reqs)")" "$p50" "$p99" "$non2xx" >&2
}

wrk_medians() {
  python3 - "$1" "$TCK" "$2" "$3" "$4" <<'PY'
import sys, statistics
def us(t):
    for suf, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if t.endswith(suf):
            return float(t[: -len(suf)]) * f
    return float(t)
out, tck, title, a, b = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
by = {}
for r, g, rps, reqs, ticks, p50, p99, bad in (l.split() for l in open(out)):
    by.setdefault(g, []).append((float(rps), int(reqs) / max(int(ticks) / tck, 1e-9), us(p50), us(p99), int(bad)))
med = {g: [statistics.median(x[i] for x in v) for i in range(4)] + [sum(x[4] for x in v)] for g, v in by.items()}
print(title)
print(f"{'':<11}{'req/s':>10}{'req/CPU-s':>12}{'p50 µs':>9}{'p99 µs':>9}{'non-2xx':>9}")
for g in (a, b):
    rps, rcs, p50, p99, bad = med[g]
    print(f"{g:<11}{rps:>10.0f}{rcs:>12.0f}{p50:>9.0f}{p99:>9.0f}{bad:>9}")
print(f"{b} / {a}: req/s {med[b][0] / med[a][0]:.3f}, req/CPU-s {med[b][1] / med[a][1]:.3f}")
PY
}
