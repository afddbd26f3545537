#!/usr/bin/env python3
"""Chaos load test: steady open-loop load through ringway to 3 targets; one target starts
failing every request (503, health endpoint included), then recovers.

Reports the fraction of requests the clients saw fail during the run, how long the gateway
took to stop sending to the failing target (time to eject: first time `GET /upstreams` shows
it unusable) and to send to it again after recovery (time to return).

Usage: loadtest/chaos.py [--rate 1500] [--duration 30] [--fail-at 6] [--recover-at 18]
                         [--interval 1.0] [--gateway target/release/ringway]
Needs target/release/ringway and target/release/rwload (`cargo build --release`).
Loopback only; every process is stopped at the end. Exit status 1 if a target is missed:
failed fraction >= 0.1 %, or ejection slower than two check intervals.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_upstream(rwload):
    p = subprocess.Popen([rwload, "upstream", "--listen", "127.0.0.1:0", "--threads", "1",
                          "--body-size", "64", "--duration", "600s"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return p, line.split()[-1]


def get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def config(port, admin, targets, interval):
    t = ", ".join('{ address = "%s" }' % a for a in targets)
    return f"""
[server]
workers = 1
[[listeners]]
address = "127.0.0.1:{port}"
[admin]
address = "127.0.0.1:{admin}"
[upstreams.app]
targets = [{t}]
[upstreams.app.health_check]
path = "/healthz"
interval = "{int(interval * 1000)}ms"
timeout = "300ms"
unhealthy_threshold = 1
healthy_threshold = 2
[upstreams.app.outlier]
consecutive = 3
on = ["5xx", "reset", "connect", "timeout"]
base_ejection_time = "{int(interval * 2000)}ms"
[upstreams.app.retry_budget]
percent = 50
min_concurrent = 10
[[routes]]
name = "app"
prefix = "/"
proxy = {{ upstream = "app", retry = {{ attempts = 3, on = ["connect-failure", "reset", "timeout", "503"], backoff_base = "1ms", backoff_max = "5ms" }} }}
"""


def poll_state(admin, target, stop, out):
    """Appends (time, usable) for `target` every 50 ms from GET /upstreams."""
    while not stop.is_set():
        try:
            doc = json.loads(get(f"http://127.0.0.1:{admin}/upstreams", 1.0))
            for u in doc["upstreams"]:
                for t in u["targets"]:
                    if t["address"] == target:
                        usable = t["healthy"] and not t["ejected"]
                        out.append((time.monotonic(), usable))
        except Exception:
            pass
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1500)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--fail-at", type=float, default=6)
    ap.add_argument("--recover-at", type=float, default=18)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target/release/ringway"))
    ap.add_argument("--rwload", default=os.path.join(ROOT, "target/release/rwload"))
    a = ap.parse_args()

    procs = []
    try:
        ups = [start_upstream(a.rwload) for _ in range(3)]
        procs += [p for p, _ in ups]
        targets = [addr for _, addr in ups]
        bad = targets[1]
        port, admin = free_port(), free_port()
        cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        cfg.write(config(port, admin, targets, a.interval))
        cfg.close()
        gw = subprocess.Popen([a.gateway, "--config", cfg.name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append(gw)
        for _ in range(200):
            try:
                get(f"http://127.0.0.1:{port}/")
                break
            except Exception:
                time.sleep(0.05)
        states, stop = [], threading.Event()
        poller = threading.Thread(target=poll_state, args=(admin, bad, stop, states))
        poller.start()
        load = subprocess.Popen([a.rwload, "run", "--url", f"http://127.0.0.1:{port}/item",
                                 "-c", "20", "-R", str(a.rate), "-d", f"{a.duration}s",
                                 "--warmup", "0s", "--json", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(load)
        t0 = time.monotonic()
        time.sleep(a.fail_at)
        get(f"http://{bad}/__fault/on")
        failed_at = time.monotonic()
        time.sleep(max(0.0, a.recover_at - (failed_at - t0)))
        get(f"http://{bad}/__fault/off")
        recovered_at = time.monotonic()
        out, _ = load.communicate(timeout=a.duration + 30)
        stop.set()
        poller.join()
        report = json.loads(out)
        total = report["requests"] + report["errors"]["connect"] + report["errors"]["timeout"] \
            + report["errors"]["parse"]
        failed = sum(report["errors"].values())
        eject = next((t - failed_at for t, u in states if t >= failed_at and not u), None)
        back = next((t - recovered_at for t, u in states if t >= recovered_at and u), None)
        frac = failed / max(total, 1)
        result = {
            "requests": total,
            "failed": failed,
            "failed_fraction": frac,
            "status": report["status"],
            "time_to_eject_s": eject,
            "time_to_return_s": back,
            "check_interval_s": a.interval,
            "p99_us": report["latency_us"]["p99"],
        }
        print(json.dumps(result, indent=2))
        ok = frac < 0.001 and eject is not None and eject <= 2 * a.interval and back is not None
        print("chaos: " + ("targets met" if ok else "TARGET MISSED"), file=sys.stderr)
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
