#!/usr/bin/env bash
# Connection limits under a low open-file limit (issue 22): `synthorg serve` run with
# `ulimit -n 1024` (prlimit), 5,000 connection attempts one after another, each asking healthz
# and kept open when answered 200. Two set-ups side by side: the default limit (derived from the
# open-file limit) and one set far above it (100,000), where only the spare descriptor stands
# between the clients and EMFILE. Prints how many were answered 200, refused 503, or left
# unanswered (must be 0), the server's CPU while the connections are held, and the CPU in the
# second after they close. Usage: bench/fd_exhaustion.sh [BUILD_DIR] [ATTEMPTS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=$(realpath "${1:-build/default}")
attempts=${2:-5000}
port=18791
mkdir -p "$work/plugins"
for plugin in http-api store-sqlite; do ln -s "$build/lib/synthorg/plugins/$plugin.so" "$work/plugins/"; done
cat >"$work/company.yaml" <<YAML
company_name: Bench
kernel: {plugin_dirs: [$work/plugins]}
plugins:
  http-api: {config: {address: 127.0.0.1, port: $port}}
  store-sqlite: {config: {path: $work/s.db}}
YAML
ulimit -n 65536 2>/dev/null || true  # the client's own descriptors

run() {
  local label=$1 limit=$2
  SYNTHORG_HTTP_ACCESS_LOG=false SYNTHORG_LOG_LEVEL=warn SYNTHORG_HTTP_MAX_CONNECTIONS=$limit \
    prlimit --nofile=1024:1024 -- "$build/bin/synthorg" -c "$work/company.yaml" serve 2>"$work/$label.log" &
  synthorg_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/healthz" >/dev/null && break; sleep 0.1; done
  python3 - "$port" "$attempts" "$synthorg_pid" "$label" <<'PY'
import os, socket, sys, time
port, attempts, pid, label = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / tick
held, counts, started = [], {"200": 0, "503": 0, "none": 0}, time.time()
for _ in range(attempts):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(5)
    try:
        s.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk: break
            data += chunk
        status = data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "none"
    except OSError:
        status = "none"
    counts[status if status in counts else "none"] += 1
    (held.append(s) if status == "200" else s.close())
took = time.time() - started
time.sleep(0.2); before = cpu(); time.sleep(1); holding = cpu() - before
for s in held: s.close()
time.sleep(0.2); before = cpu(); time.sleep(1); after = cpu() - before
print(f"{label}: {attempts} attempts in {took:.1f} s: 200 {counts['200']}, 503 {counts['503']}, unanswered {counts['none']}; "
      f"server CPU {holding:.3f} s in 1 s while holding {len(held)}, {after:.3f} s in the 1 s after they closed")
PY
  echo "$label: 'out of file descriptors' logged $(grep -c 'out of file descriptors' "$work/$label.log" || true) time(s)"
  kill "$synthorg_pid"; wait "$synthorg_pid" 2>/dev/null || true; synthorg_pid=
}
run derived 0
run forced 100000
