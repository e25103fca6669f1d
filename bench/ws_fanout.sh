#!/usr/bin/env bash
# WebSocket fan-out (issue 4): 1,000 clients subscribed to one channel of GET /api/v1/ws,
# 10,000 events/s published inside the server by the event-source test fixture; delivery latency
# (p50/p99/max), deliveries/s, losses, resident memory per idle connection, and the highest rate
# the server sustains. The client is bench/ws_fanout.cpp (synthorg-ws-fanout); see its header.
# Then the floor: the same fan-out by bench/ws_floor.c (synthorg-ws-floor), plain C with no
# server logic at all — each event framed once, one send() per client per 5 ms batch, the
# thinnest client — at FLOOR_RATES events/s, so the server's figures can be read against what
# this machine allows.
# Usage: bench/ws_fanout.sh [BUILD_DIR] [synthorg-ws-fanout options: --clients N --rate R --seconds S --no-sweep]
# Environment: SYNTHORG_THREADS, the server's kernel.threads (default 0: one per core);
# FLOOR_RATES (default "10 100 1000 10000"; empty skips the floor).
set -euo pipefail
build=$(realpath "${1:-build/default}")
shift || true
client="$build/bin/synthorg-ws-fanout"
floor="$build/bin/synthorg-ws-floor"
fixture="$build/tests/fixtures/event-source.so"
for file in "$build/bin/synthorg" "$client" "$floor" "$fixture"; do
  [[ -e $file ]] || { echo "bench/ws_fanout.sh: $file is missing; build the targets synthorg synthorg-ws-fanout synthorg-ws-floor event-source http-api auth store-sqlite" >&2; exit 1; }
done

# One descriptor per connection on each side, server and client alike (both inherit this).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= 2048 )) || { echo "bench/ws_fanout.sh: open files limit $(ulimit -n) is too low for 1,000 connections" >&2; exit 1; }

work=$(mktemp -d)
cleanup() {
  [[ -n "${synthorg_pid:-}" ]] && kill "$synthorg_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$work/fixtures"
ln -s "$(realpath "$fixture")" "$work/fixtures/"
cat > "$work/company.yaml" <<YAML
company_name: Bench
kernel:
  threads: ${SYNTHORG_THREADS:-0}
  plugin_dirs: [$build/lib/synthorg/plugins, $work/fixtures]
plugins:
  http-api:
    config: {address: 127.0.0.1, port: $port}
  store-sqlite:
    config: {path: $work/bench.db}
  auth: {}
  event-source:
    config: {topic: bench.tick}
YAML
SYNTHORG_JWT_SECRET=$("$build/bin/synthorg" keygen jwt) SYNTHORG_HTTP_ACCESS_LOG=false SYNTHORG_LOG_LEVEL=warn \
  "$build/bin/synthorg" --config "$work/company.yaml" serve &
synthorg_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/readyz" >/dev/null && break; sleep 0.1; done

# The first admin, then its bearer token for every connection.
base="http://127.0.0.1:$port/api/v1/auth"
password="bench-password-$RANDOM-$RANDOM"
curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"bench\",\"password\":\"$password\"}" "$base/setup" >/dev/null
token=$(curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"bench\",\"password\":\"$password\"}" "$base/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

echo "server: synthorg serve, kernel.threads=${SYNTHORG_THREADS:-0} ($(nproc) cores, shared with the client)"
SYNTHORG_BENCH_TOKEN=$token "$client" --port "$port" --server-pid "$synthorg_pid" --channel bench "$@"
kill "$synthorg_pid"
wait "$synthorg_pid" 2>/dev/null || true
synthorg_pid=

clients=1000
args=("$@")
for i in "${!args[@]}"; do [[ ${args[i]} == --clients ]] && clients=${args[i + 1]}; done
if [[ -n ${FLOOR_RATES-10 100 1000 10000} ]]; then
  echo
  echo "floor: bench/ws_floor.c, no server logic, one send() per client per 5 ms batch, 4 s per rate"
  echo "| clients | events/s | batch | deliveries/s | lost | p50 / p99 / max ms | server CPU µs per delivery | client CPU µs per delivery | sends that filled the socket |"
  echo "|---:|---:|---:|---:|---:|---|---:|---:|---:|"
  for rate in ${FLOOR_RATES-10 100 1000 10000}; do
    "$floor" --clients "$clients" --rate "$rate" --seconds 4 --batch-ms 5
  done
fi
