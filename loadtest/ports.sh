# loadtest/ports.sh — sourced by the load-test scripts: `free_ports N` prints N consecutive
# loopback ports that are free now, chosen outside the kernel's ephemeral range (so no client
# connection of this or another process can be holding one when the servers bind them).
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    low = 32768
lo, hi = (10000, low) if low > 12000 else (61000, 65536)
for _ in range(1000):
    base = random.randrange(lo, hi - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(" ".join(str(p) for p in range(base, base + n)))
    sys.exit(0)
sys.exit("no free ports found")
PY
}
