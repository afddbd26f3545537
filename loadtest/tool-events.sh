#!/bin/sh
# loadtest/tool-events.sh — issue 15 measurement: io_uring events per request on the gateway (ringway, 1 worker, CPU 0)
# for each load tool (CPU 1, 50 keep-alive connections, closed loop, GET /item, 20 B answers);
# upstream `rwload upstream` on CPU 1. Requests = ringway_http_requests_total difference over
# the perf window (admin /metrics); gateway CPU from /proc/PID/stat.
# Also counted: the gateway's `poll` system calls (the pooled-connection reuse check, about
# one per loop turn) and the sockets they list (fds/req, from the `nfds` of each call, recorded
# with `perf record` over the same window: a look at a socket the turn does not take is
# wasted). GW_BIN=PATH measures another gateway build (default $BIN/ringway).
# usage: loadtest/tool-events.sh SECONDS ROUNDS [QUOTA_PCT]   (quota: the gateway in a cgroup v1 cpu.cfs_quota_us)
set -u
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
GW_BIN=${GW_BIN:-$BIN/ringway}
cd "$(mktemp -d /tmp/tool-events.XXXXXX)" || exit 1
cat > ringway.toml <<'TOML'
version = 1
[server]
workers = 1
[admin]
address = "127.0.0.1:18082"
[[listeners]]
name = "bench"
address = "127.0.0.1:18080"
[upstreams.be]
targets = [{ address = "127.0.0.1:18081" }]
max_idle = 256
[[routes]]
name = "r0"
prefix = "/"
proxy = { upstream = "be" }
TOML
S=${1:-5}; R=${2:-1}; Q=${3:-}
EV='syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_poll,io_uring:io_uring_poll_arm,io_uring:io_uring_complete,io_uring:io_uring_submit_req'
reqs() { curl -s 127.0.0.1:18082/metrics | awk '/^ringway_http_requests_total/ {s+=$2} END {print s+0}'; }
cpu() { awk '{print $14+$15}' /proc/$GW/stat; }
taskset -c 1 $BIN/rwload upstream --listen 127.0.0.1:18081 --threads 1 --cpus 1 --body-size 20 >/dev/null 2>&1 & UP=$!
taskset -c 0 $GW_BIN --config ringway.toml >gw.log 2>&1 & GW=$!
sleep 1
if [ -n "$Q" ]; then
  CG=/sys/fs/cgroup/cpu/lt-perf-$$; mkdir $CG; echo 100000 > $CG/cpu.cfs_period_us
  echo $((Q*1000)) > $CG/cpu.cfs_quota_us; echo $GW > $CG/cgroup.procs
fi
LEV='syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait'
printf '%-7s %5s %9s %8s %10s %10s %10s %10s %10s %10s %10s\n' tool round requests req/cpu-s enter/req poll/req fds/req poll_arm/req submit/req complete/req req/enter
for r in $(seq $R); do
for tool in rwload wrk h2load; do
  case $tool in
    rwload) cmd="$BIN/rwload run --url http://127.0.0.1:18080/item -c 50 -t 1 --cpus 1 -d $((S+2))s --warmup 0s --json -q";;
    wrk) cmd="wrk -t1 -c50 -d$((S+2))s http://127.0.0.1:18080/item";;
    h2load) cmd="h2load --h1 -t1 -c50 -m1 -D $((S+2)) http://127.0.0.1:18080/item";;
  esac
  taskset -c 1 $cmd > out-$tool-$r.txt 2>&1 & L=$!
  sleep 1
  n0=$(reqs); c0=$(cpu)
  perf stat -x, -e "$LEV" -p $L -- sleep $S 2> perfload-$tool-$r.csv &
  PL=$!
  perf record -q -e syscalls:sys_enter_poll -p $GW -o poll-$tool-$r.data -- sleep $S >/dev/null 2>&1 &
  PR=$!
  perf stat -x, -e "$EV" -p $GW -- sleep $S 2> perf-$tool-$r.csv
  wait $PL $PR
  n1=$(reqs); c1=$(cpu)
  wait $L
  fds=$(perf script -i poll-$tool-$r.data -F trace 2>/dev/null |
    sed -n 's/.*nfds: \(0x[0-9a-f]*\).*/\1/p' | while read -r x; do echo $((x)); done |
    awk '{s+=$1} END {print s+0}')
  awk -F, -v t=$tool -v r=$r -v n=$((n1-n0)) -v c=$((c1-c0)) -v hz=$(getconf CLK_TCK) -v fds=$fds '
    {v[$3]=$1}
    END {printf "%-7s %5d %9d %8.0f %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f %10.2f\n", t, r, n, n/(c/hz),
      v["syscalls:sys_enter_io_uring_enter"]/n, v["syscalls:sys_enter_poll"]/n, fds/n, v["io_uring:io_uring_poll_arm"]/n,
      v["io_uring:io_uring_submit_req"]/n, v["io_uring:io_uring_complete"]/n,
      n/v["syscalls:sys_enter_io_uring_enter"]}' perf-$tool-$r.csv
  awk -F, -v t=$tool -v n=$((n1-n0)) '{ if ($1+0 > 0) printf "    load side %s: %s/req %.3f\n", t, $3, $1/n }' perfload-$tool-$r.csv
done
done
kill $GW $UP; wait 2>/dev/null
[ -n "$Q" ] && sleep 0.5 && rmdir $CG
