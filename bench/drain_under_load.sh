#!/usr/bin/env bash
# SIGTERM under load (issue 22): `synthorg serve` with auth, workloads and orchestrator-process,
# one user's workload answering each request after 20 ms, and wrk on its proxied route
# (/api/v1/workloads/me/proxy/...) with 32 keep-alive connections. SIGTERM reaches the kernel
# a third of the way in. Prints every answer by status class, the 5xx among them (the target is
# zero: the drain finishes requests in flight before workloads and the orchestrator stop), and
# wrk's socket errors (connections refused once the listener has closed are expected; they are
# not answers). Usage: bench/drain_under_load.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_tools wrk curl python3
build=$(realpath "${1:-build/default}")
seconds=${2:-9}
port=18793
mkdir -p "$work/plugins"
for plugin in http-api store-sqlite auth workloads orchestrator-process; do
  ln -s "$build/lib/synthorg/plugins/$plugin.so" "$work/plugins/"
done
cat >"$work/server.py" <<'PY'
import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path != "/": time.sleep(0.02)
        body = b"done"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer((os.environ["SYNTHORG_LISTEN_HOST"], 8080), H).serve_forever()
PY
cat >"$work/company.yaml" <<YAML
company_name: Bench
kernel: {plugin_dirs: [$work/plugins], shutdown_timeout: 20s}
select: {orchestrator: orchestrator-process}
plugins:
  http-api: {config: {address: 127.0.0.1, port: $port, drain_timeout: 10s}}
  store-sqlite: {config: {path: $work/s.db}}
  auth: {config: {argon2_memory_kib: 4096, argon2_iterations: 1}}
  orchestrator-process: {config: {state_dir: $work/process-workloads}}
  workloads:
    config: {image: bench, command: [python3, $work/server.py], port: 8080, memory_limit: "0", pids_limit: 0,
             user: "", stop_on_shutdown: true, stop_grace: 1s}
YAML
SYNTHORG_JWT_SECRET=$("$build/bin/synthorg" keygen jwt) SYNTHORG_HTTP_ACCESS_LOG=false SYNTHORG_LOG_LEVEL=warn \
  SYNTHORG_WORKLOADS_REQUESTS_PER_MINUTE=1000000 SYNTHORG_WORKLOADS_BURST_SIZE=1000000 \
  "$build/bin/synthorg" -c "$work/company.yaml" serve 2>"$work/serve.log" &
synthorg_pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$base/api/v1/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$base/api/v1/healthz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
credentials='{"username": "admin", "password": "bench pass phrase 123"}'
curl -sf -H 'content-type: application/json' -d "$credentials" "$base/api/v1/auth/setup" >/dev/null
token=$(curl -sf -H 'content-type: application/json' -d "$credentials" "$base/api/v1/auth/login" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
curl -sf -X POST -H "authorization: Bearer $token" "$base/api/v1/workloads" >/dev/null

# Every answer counted by status class, across wrk's threads.
cat >"$work/count.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {0, 0, 0, 0, 0} end
function response(status, headers, body)
  local class = math.floor(status / 100)
  if class >= 1 and class <= 5 then counts[class] = counts[class] + 1 end
end
function done(summary, latency, requests)
  local total = {0, 0, 0, 0, 0}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for i = 1, 5 do total[i] = total[i] + c[i] end
  end
  io.write(string.format("answers: 2xx %d, 3xx %d, 4xx %d, 5xx %d\n", total[2], total[3], total[4], total[5]))
  io.write(string.format("socket errors: connect %d, read %d, write %d, timeout %d\n", summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
end
LUA
echo "## SIGTERM under load on a proxied route (bench/drain_under_load.sh)"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; wrk -t2 -c32 -d${seconds}s on /api/v1/workloads/me/proxy/work, SIGTERM at $((seconds / 3)) s"
wrk -t2 -c32 -d"${seconds}s" -s "$work/count.lua" -H "authorization: Bearer $token" "$base/api/v1/workloads/me/proxy/work" \
  >"$work/wrk.txt" 2>&1 &
wrk_pid=$!
sleep $((seconds / 3))
kill -TERM "$synthorg_pid"
began=$(date +%s%N)
code=0
wait "$synthorg_pid" || code=$?
stopped_ms=$((($(date +%s%N) - began) / 1000000))
synthorg_pid=
wait "$wrk_pid" || true
grep -E '^(answers|socket errors)|Requests/sec' "$work/wrk.txt"
echo "kernel: exit $code, $stopped_ms ms from SIGTERM to exit"
grep -E 'Listeners drained|level=error' "$work/serve.log" | cut -c1-200 || true
