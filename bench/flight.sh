#!/usr/bin/env bash
# The Flight SQL gateway (plugins/flight-gateway) against the same workload server reached
# directly, side by side in one run: a real `synthorg serve` (http-api, auth, store-sqlite,
# workloads on orchestrator-process, flight-gateway) relaying to packaging/flightsql-duckdb, and
# one more flightsql-duckdb started by this script on loopback for the direct side, with the same
# environment. Everything on 127.0.0.1 / 127.77.0.0/16, everything sharing the machine's cores.
#
#   1. kernel memory per idle gRPC connection (N connections that each completed a call);
#   2. one DoGet whose reader stalls: what the kernel and the workload take in meanwhile;
#   3. unary GetFlightInfo (`SELECT 1`) latency, p50 / p99, gateway vs direct (python3-grpcio,
#      gRPC's C core, the same client both sides);
#      and the machine's floor for one more hop: the same calls through socat, a TCP relay;
#      and what a mature HTTP/2 proxy adds here: the same calls through nginx's grpc_pass;
#   4. DoGet of 10 M rows, bytes/s, gateway vs direct, rounds alternating, median of the ratios,
#      once with @grpc/grpc-js as the client and once with python3-grpcio (C core);
#   5. cold first query: a new user's first `SELECT 42` (the workload started on the way) vs
#      spawning the server, waiting until it accepts, and querying it;
#   6. 1,000 DoGet streams open at once, read slowly: all complete and correct? kernel RSS, threads.
#
# Usage: [ROUNDS=5] [LATENCY_CALLS=5000] [IDLE_CONNECTIONS=1000] [STREAMS=1000] [FLIGHT_KERNEL_ENV='NAME=VALUE ...']
#        bench/flight.sh [BUILD_DIR]
# FLIGHT_KERNEL_ENV is added to the kernel's environment only (the workloads and clients never
# see it), e.g. FLIGHT_KERNEL_ENV=MALLOC_TRIM_THRESHOLD_=1073741824 to try glibc's malloc tunables.
# Needs node with the npm packages of tests/flight and packaging/flightsql-duckdb (npm ci in
# each), Debian's python3-grpcio (for /usr/bin/python3), and the Arrow Flight protos
# (FLIGHT_PROTO_DIR, or ../shared/contracts/arrow-flight beside the checkout).
set -euo pipefail
build=$(realpath "${1:-build/default}")
root=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib.sh"
require_tools node curl socat nginx
rounds=${ROUNDS:-5}
python=/usr/bin/python3
"$python" -c 'import grpc' 2>/dev/null || { echo "flight.sh: $python cannot import grpc; apt-get install python3-grpcio" >&2; exit 1; }
protos=
for dir in "${FLIGHT_PROTO_DIR:-}" /usr/share/synthorg/arrow-flight "$root/../shared/contracts/arrow-flight"; do
  [[ -n $dir && -f $dir/Flight.proto && -f $dir/FlightSql.proto ]] && { protos=$(realpath "$dir"); break; }
done
[[ -n $protos ]] || { echo "flight.sh: no Flight.proto/FlightSql.proto; set FLIGHT_PROTO_DIR" >&2; exit 1; }
for dir in tests/flight packaging/flightsql-duckdb; do
  [[ -d $root/$dir/node_modules ]] || { echo "flight.sh: run (cd $dir && npm ci) first" >&2; exit 1; }
done
plugins=$build/lib/synthorg/plugins
[[ -f $plugins/flight-gateway.so ]] || { echo "flight.sh: no $plugins/flight-gateway.so; build first" >&2; exit 1; }
node=$(command -v node)
server=$root/packaging/flightsql-duckdb/server.js
bench_js=$root/bench/flight_bench.js

# Fixed ports below the ephemeral range (as the other benches): HTTP API, the gateway, the
# direct workload, the cold-start direct workload.
http_port=29821
grpc_port=29822
direct_port=29823
cold_port=29824
floor_port=29825
nginx_port=29826
gateway=127.0.0.1:$grpc_port
http=http://127.0.0.1:$http_port
# The workload's environment, the same on both sides (orchestrator-process adds PATH, HOME and
# SYNTHORG_LISTEN_HOST; the direct side gets those too).
duckdb_env=(DUCKDB_THREADS=1 DUCKDB_MEMORY_LIMIT=1GB FLIGHT_PROTO_DIR="$protos")
secret=$("$build/bin/synthorg" keygen jwt)
password="bench-password-$RANDOM-$RANDOM"

direct_pid=
flight_cleanup() {
  [[ -n $direct_pid ]] && kill "$direct_pid" 2>/dev/null || true
  stop_kernel
  bench_cleanup
}
trap flight_cleanup EXIT

mkdir -p "$work/plugins"
for name in http-api auth store-sqlite workloads orchestrator-process flight-gateway; do
  ln -s "$plugins/$name.so" "$work/plugins/$name.so"
done

api() {  # METHOD PATH [BODY] [TOKEN] -> the body
  curl -sf -X "$1" -H 'Content-Type: application/json' ${4:+-H "Authorization: Bearer $4"} ${3:+-d "$3"} "$http/api/v1$2"
}
login() { api POST /auth/login "{\"username\":\"$1\",\"password\":\"$password\"}" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }

# start_kernel NAME: a fresh kernel and store; sets synthorg_pid, token (user "bench") and
# cold_tokens (users cold1..ROUNDS, comma-separated, none of them with a workload yet).
start_kernel() {
  cat > "$work/company.yaml" <<YAML
company_name: FlightBench
kernel:
  threads: ${SYNTHORG_THREADS:-1}
  plugin_dirs: [$work/plugins]
select: {store: store-sqlite, orchestrator: orchestrator-process}
plugins:
  http-api: {config: {address: 127.0.0.1, port: $http_port}}
  auth: {}
  store-sqlite: {config: {path: $work/$1.db}}
  orchestrator-process: {config: {}}
  workloads:
    config:
      image: flightsql-duckdb
      command: [$node, $server]
      port: 0
      grpc_port: 8815
      env: {DUCKDB_THREADS: "1", DUCKDB_MEMORY_LIMIT: 1GB, FLIGHT_PROTO_DIR: $protos}
      memory_limit: "0"
      pids_limit: 0
      user: ""
      ready_timeout: 30s
  flight-gateway:
    config: {address: 127.0.0.1, port: $grpc_port, max_streams_per_user: 5000, max_streams_per_connection: 2000, access_log: false}
YAML
  # shellcheck disable=SC2086  # FLIGHT_KERNEL_ENV: NAME=VALUE words for the kernel alone
  env ${FLIGHT_KERNEL_ENV:-} SYNTHORG_JWT_SECRET="$secret" SYNTHORG_HTTP_ACCESS_LOG=false SYNTHORG_LOG_LEVEL=warn \
    SYNTHORG_WORKLOADS_REQUESTS_PER_MINUTE=1000000 SYNTHORG_WORKLOADS_BURST_SIZE=1000000 \
    "$build/bin/synthorg" --config "$work/company.yaml" serve > "$work/kernel-$1.log" 2>&1 &
  synthorg_pid=$!
  # http-api starts before flight-gateway: wait for both ports.
  local up=
  for _ in $(seq 200); do
    curl -sf "$http/api/v1/healthz" >/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$grpc_port") 2>/dev/null && { up=1; break; }
    sleep 0.1
  done
  [[ -n $up ]] || { echo "the kernel did not start:"; cat "$work/kernel-$1.log"; exit 1; } >&2
  api POST /auth/setup "{\"username\":\"admin\",\"password\":\"$password\"}" >/dev/null
  local admin user
  admin=$(login admin)
  cold_tokens=
  for user in bench $(seq -f 'cold%g' "$rounds"); do
    api POST /users "{\"username\":\"$user\",\"password\":\"$password\",\"role\":\"viewer\"}" "$admin" >/dev/null
    if [[ $user == bench ]]; then token=$(login bench); else cold_tokens+=${cold_tokens:+,}$(login "$user"); fi
  done
}
# The kernel's workload processes (its children running server.js).
workload_pids() { pgrep -P "$synthorg_pid" -f server.js || true; }
stop_kernel() {
  [[ -n ${synthorg_pid:-} ]] || return 0
  local pids
  pids=$(workload_pids)
  kill "$synthorg_pid" 2>/dev/null || true
  wait "$synthorg_pid" 2>/dev/null || true
  for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
  synthorg_pid=
}
# The bench user's first call: starts its workload.
warm_gateway() {
  "$python" "$root/bench/flight_latency.py" --gateway "$gateway" --direct "$gateway" --token "$token" \
    --kernel "$synthorg_pid" --calls 2 --warmup 1 --rounds 1 >/dev/null
}

results=$work/results.txt
section() { echo; echo "### $1"; }
run() {  # runs a driver, its output shown and its RESULT line kept under NAME
  local name=$1
  shift
  "$@" | tee "$work/$name.out"
  sed -n "s/^RESULT /$name /p" "$work/$name.out" >> "$results"
}

echo "## Flight SQL gateway: flight-gateway against the workload server directly (bench/flight.sh)"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, node $(node --version), grpcio $("$python" -c 'import grpc; print(grpc.__version__)')${FLIGHT_KERNEL_ENV:+, kernel env: $FLIGHT_KERNEL_ENV}"

# 1. Memory per idle connection, on a fresh kernel whose heap has seen nothing else yet.
start_kernel idle
warm_gateway
section "Kernel memory per idle gRPC connection"
run idle node "$bench_js" idle --gateway "$gateway" --token "$token" --kernel "$synthorg_pid" --count "${IDLE_CONNECTIONS:-1000}"
stop_kernel

# Everything else on a second fresh kernel, with the direct workload beside it.
start_kernel main
env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/ SYNTHORG_LISTEN_HOST=127.0.0.1 FLIGHT_PORT=$direct_port "${duckdb_env[@]}" \
  "$node" "$server" > "$work/direct.log" 2>&1 &
direct_pid=$!
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$direct_port") 2>/dev/null && break; sleep 0.05; done
warm_gateway
gateway_workload=$(workload_pids)

section "One DoGet of 10 M rows whose reader stalls for 4 s after the first batch"
run stall node "$bench_js" stall --gateway "$gateway" --token "$token" --kernel "$synthorg_pid" --rows 10000000 --hold-ms 4000

section "Unary GetFlightInfo (SELECT 1): latency through the gateway vs direct (python3-grpcio)"
run latency "$python" "$root/bench/flight_latency.py" --gateway "$gateway" --direct "127.0.0.1:$direct_port" --token "$token" \
  --kernel "$synthorg_pid" --gateway-workload "$gateway_workload" --direct-workload "$direct_pid" \
  --calls "${LATENCY_CALLS:-5000}" --warmup 1000 --rounds 6

section "The machine's floor for one more hop: the same calls through socat (a TCP relay that parses nothing) vs direct"
# What any relay costs on this machine before it reads a byte of HTTP/2: two more sockets, a
# thread woken per packet. The gateway's figure above is compared with this one.
socat TCP-LISTEN:$floor_port,bind=127.0.0.1,reuseaddr,fork,nodelay TCP:127.0.0.1:$direct_port,nodelay &
socat_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$floor_port") 2>/dev/null && break; sleep 0.05; done
run floor "$python" "$root/bench/flight_latency.py" --gateway "127.0.0.1:$floor_port" --direct "127.0.0.1:$direct_port" \
  --token "$token" --kernel "$socat_pid" --no-refused --calls "${LATENCY_CALLS:-5000}" --warmup 1000 --rounds 6
kill "$socat_pid" 2>/dev/null || true

section "A mature HTTP/2 gRPC proxy on the same machine: the same calls through nginx grpc_pass (1 worker, no auth) vs direct"
# What the gateway does minus authentication and routing: end HTTP/2 on one side, start it on the
# other, relay the frames. The gateway's added latency is compared with nginx's.
start_nginx "  upstream workload { server 127.0.0.1:$direct_port; keepalive 16; }
  server {
    listen 127.0.0.1:$nginx_port http2;
    location / { grpc_pass grpc://workload; }
  }"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null && break; sleep 0.05; done
run nginx "$python" "$root/bench/flight_latency.py" --gateway "127.0.0.1:$nginx_port" --direct "127.0.0.1:$direct_port" \
  --token "$token" --kernel "$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)" --no-refused \
  --calls "${LATENCY_CALLS:-5000}" --warmup 1000 --rounds 6
kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
rm -f "$work/nginx.pid"

section "DoGet of 10 M rows (SELECT range FROM range(10000000)): bytes/s through the gateway vs direct, client @grpc/grpc-js"
run doget node "$bench_js" doget --gateway "$gateway" --direct "127.0.0.1:$direct_port" --token "$token" \
  --kernel "$synthorg_pid" --direct-pid "$direct_pid" --rows 10000000 --rounds "$rounds"
section "The same, client python3-grpcio (gRPC's C core)"
run doget_c "$python" "$root/bench/flight_doget.py" --gateway "$gateway" --direct "127.0.0.1:$direct_port" --token "$token" \
  --kernel "$synthorg_pid" --gateway-workload "$gateway_workload" --direct-workload "$direct_pid" --rows 10000000 --rounds "$rounds"

section "Cold first query: a new user's SELECT 42 through the gateway vs spawning the server directly"
cold_env=$("$python" -c 'import json, sys; print(json.dumps(dict(a.split("=", 1) for a in sys.argv[1:])))' \
  PATH=/usr/local/bin:/usr/bin:/bin HOME=/ SYNTHORG_LISTEN_HOST=127.0.0.1 FLIGHT_PORT=$cold_port "${duckdb_env[@]}")
run cold node "$bench_js" cold --gateway "$gateway" --http "$http" --tokens "$cold_tokens" --kernel "$synthorg_pid" \
  --port "$cold_port" --server "$server" --env "$cold_env"

section "${STREAMS:-1000} DoGet streams open at once, read slowly"
run streams node "$bench_js" streams --gateway "$gateway" --token "$token" --kernel "$synthorg_pid" \
  --streams "${STREAMS:-1000}" --connections 10 --rows 70000 --pause-ms 1000

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$python" - "$results" <<'PY'
import json, sys
r = {}
for line in open(sys.argv[1]):
    name, _, text = line.partition(" ")
    r[name] = json.loads(text)
def met(ok):
    return "met" if ok else "**NOT MET**"
d, l, c, i, s, st = r["doget"], r["latency"], r["cold"], r["idle"], r["streams"], r["stall"]
print("| target | figure | met |")
print("|---|---|---|")
for key, client in (("doget", "@grpc/grpc-js"), ("doget_c", "python3-grpcio")):
    x = r[key]
    print(f"| DoGet 10 M rows, gateway ≥ 0.9× direct bytes/s ({client} client) | **{x['ratio']:.2f}×** median of "
          f"{x['rounds']} rounds ({x['gatewayMBps']:.1f} / {x['directMBps']:.1f} MB/s; rounds "
          f"{' '.join(f'{v:.2f}' for v in x['ratios'])}) | {met(x['ratio'] >= 0.9)} |")
print(f"| GetFlightInfo added p50 ≤ 100 µs | **{l['added_p50_us']:.0f} µs** (p50 {l['gateway']['p50_us']:.0f} vs "
      f"{l['direct']['p50_us']:.0f} µs, {l['calls_per_side']} calls a side; median of rounds {l['added_p50_us_rounds_median']:.0f}) "
      f"| {met(l['added_p50_us'] <= 100)} |")
print(f"| GetFlightInfo added p99 ≤ 500 µs | **{l['added_p99_us']:.0f} µs** (p99 {l['gateway']['p99_us']:.0f} vs "
      f"{l['direct']['p99_us']:.0f} µs; median of rounds {l['added_p99_us_rounds_median']:.0f}) | {met(l['added_p99_us'] <= 500)} |")
f = r["floor"]
print(f"| (the machine's floor: one TCP relay that parses nothing, socat) | added p50 **{f['added_p50_us']:.0f} µs**, p99 "
      f"{f['added_p99_us']:.0f} µs (medians of rounds {f['added_p50_us_rounds_median']:.0f} / "
      f"{f['added_p99_us_rounds_median']:.0f}); the gateway adds **{l['added_p50_us'] / max(f['added_p50_us'], 1):.1f}×** "
      f"that at p50 | recorded |")
n = r["nginx"]
print(f"| (a mature HTTP/2 proxy here: nginx grpc_pass, 1 worker, no auth) | added p50 **{n['added_p50_us']:.0f} µs**, p99 "
      f"{n['added_p99_us']:.0f} µs (medians of rounds {n['added_p50_us_rounds_median']:.0f} / "
      f"{n['added_p99_us_rounds_median']:.0f}); the gateway adds **{l['added_p50_us'] / max(n['added_p50_us'], 1):.2f}×** "
      f"nginx's at p50, **{l['added_p99_us'] / max(n['added_p99_us'], 1):.2f}×** at p99; nginx's worker spent "
      f"{n['gateway']['kernel_cpu_us']:.0f} µs of CPU a call, the kernel {l['gateway']['kernel_cpu_us']:.0f} | recorded |")
print(f"| (a call the gateway refuses itself: no token, nothing relayed) | p50 {l['refused']['p50_us']:.0f} µs, "
      f"p99 {l['refused']['p99_us']:.0f} µs | recorded |")
print(f"| cold first query within 1.2× of starting the server directly | **{c['ratio']:.2f}×** median of {c['rounds']} rounds "
      f"({c['gatewayMs']:.0f} / {c['directMs']:.0f} ms; direct spawn to accept {c['acceptMs']:.0f} ms; rounds "
      f"{' '.join(f'{x:.2f}' for x in c['ratios'])}) | {met(c['ratio'] <= 1.2)} |")
print(f"| memory per idle gRPC connection (a figure to record) | **{i['perConnectionKiB']:.1f} KiB** "
      f"({i['count']} connections: VmRSS {i['rssBeforeKiB'] / 1024:.1f} → {i['rssAfterKiB'] / 1024:.1f} MiB, "
      f"threads {i['threadsBefore']} → {i['threadsAfter']}) | recorded |")
print(f"| {s['streams']} concurrent DoGet streams, read slowly, all complete | **{s['ok']} / {s['streams']}** correct, "
      f"{s['peakOpen']} open at once; kernel VmRSS {s['rssBeforeKiB'] / 1024:.0f} → {s['rssPeakKiB'] / 1024:.0f} MiB "
      f"(+{(s['rssPeakKiB'] - s['rssBeforeKiB']) / s['streams']:.0f} KiB a stream), threads {s['threadsBefore']} → "
      f"{s['threadsPeak']} | {met(s['ok'] == s['streams'])} |")
print(f"| (one stalled DoGet reader) | kernel VmRSS +{st['kernelGrowthKiB'] / 1024:.1f} MiB, workload "
      f"+{st['workloadGrowthKiB'] / 1024:.1f} MiB while the client held {st['clientHadBytes'] / 1e6:.2f} of "
      f"{st['resultBytes'] / 1e6:.0f} MB | recorded |")
print()
for key, client in (("doget", "@grpc/grpc-js"), ("doget_c", "python3-grpcio")):
    cpu = r[key]["cpuPerGB"]
    print(f"DoGet CPU seconds per GB relayed ({client} client), medians: through the gateway: kernel {cpu['gatewayKernel']:.2f}, "
          f"workload {cpu['gatewayWorkload']:.2f}, client {cpu['gatewayClient']:.2f}; direct: workload {cpu['directWorkload']:.2f}, "
          f"client {cpu['directClient']:.2f}")
print(f"GetFlightInfo CPU µs per call: kernel {l['gateway']['kernel_cpu_us']:.0f} (by thread: "
      + ", ".join(f"{k} {v:.0f}" for k, v in l["kernel_threads_cpu_us"].items())
      + f"); workload {l['gateway']['workload_cpu_us']:.0f} behind the gateway, {l['direct']['workload_cpu_us']:.0f} direct")
PY
