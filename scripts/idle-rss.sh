#!/usr/bin/env bash
# Resident memory of `apus serve` idle, then holding CONNS idle client
# connections (each made one request and stays open, as a client's
# keep-alive pool does), then after they close.
#
#   CONNS=1000   idle connections held open
#   APUS_PORT=9080
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
target="${CARGO_TARGET_DIR:-$root/target}"
CONNS="${CONNS:-1000}"
APUS_PORT="${APUS_PORT:-9080}"
cargo build --release --locked -q -p apus
data="$(mktemp -d "${APUS_DATA_ROOT:-/dev/shm}/apus-idle.XXXXXX")"
apus_pid=""
cleanup() {
  [ -n "$apus_pid" ] && kill "$apus_pid" 2>/dev/null && wait "$apus_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
# Each connection is a file descriptor on both ends.
ulimit -n "$((CONNS * 2 + 256))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
RUST_LOG=warn "$target/release/apus" serve --data "$data" --bind "127.0.0.1:$APUS_PORT" >/dev/null 2>&1 &
apus_pid=$!
for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$APUS_PORT/healthcheck" >/dev/null 2>&1 && break
  sleep 0.5
done
sleep 3
rss() { awk '/^VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$apus_pid/status"; }
echo "idle:                 $(rss)"
python3 - "$APUS_PORT" "$CONNS" "$apus_pid" <<'PY'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return f"{int(line.split()[1]) / 1024:.1f} MiB"
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf or not buf.endswith(b"OK"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    conns.append(s)
time.sleep(2)
print(f"{n} idle connections: {rss()}")
for s in conns:
    s.close()
time.sleep(3)
print(f"after they close:     {rss()}")
PY
