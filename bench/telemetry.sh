#!/usr/bin/env bash
# Issue 8 targets. (1) GET /api/v1/healthz requests/s side by side, one run, one after the
# other on the same machine: http-api alone, with the telemetry plugin and tracing off, and with
# tracing on at ratio 1.0 exporting to an nginx sink standing in for the collector (wrk, 64
# connections, keep-alive, one I/O thread). (2) The exporter at 50,000 spans/s against that sink
# and against a collector that is down (synthorg-bench-exporter).
# Usage: [ROUNDS=3] bench/telemetry.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build=$(realpath "${1:-build/default}")
seconds=${2:-8}
source "$(dirname "$0")/lib.sh"
require_tools wrk nginx

port=29811
sink_port=29812
# The collector: accepts any POST with 200, as fast as nginx can.
start_nginx "  client_max_body_size 64m;
  server { listen 127.0.0.1:$sink_port; location / { return 200 '{}'; } }"

serve() {  # telemetry(yes|no) [env...] -> starts synthorg, waits for healthz
  local with=$1
  shift
  {
    echo "company_name: Bench"
    echo "kernel: {threads: ${SYNTHORG_THREADS:-1}}"
    echo "plugins:"
    echo "  http-api: {config: {address: 127.0.0.1, port: $port}}"
    [[ $with == yes ]] && echo "  telemetry: {config: {data_dir: $work/data}}"
  } > "$work/company.yaml"
  env SYNTHORG_HTTP_ACCESS_LOG=false SYNTHORG_LOG_LEVEL=warn "$@" \
    "$build/bin/synthorg" --config "$work/company.yaml" serve &
  synthorg_pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/api/v1/healthz" >/dev/null && return; sleep 0.1; done
  echo "synthorg did not start" >&2
  exit 1
}
stop() { kill "$synthorg_pid"; wait "$synthorg_pid" 2>/dev/null || true; synthorg_pid=; }
measure() {  # -> requests/s
  wrk -t2 -c64 -d2s "http://127.0.0.1:$port/api/v1/healthz" >/dev/null
  wrk -t2 -c64 -d"${seconds}s" "http://127.0.0.1:$port/api/v1/healthz" | awk '/Requests\/sec/ {print $2}'
}

# ROUNDS rounds, the three set-ups in turn, medians compared: on a machine shared with other
# work, a neighbour's burst then hits every set-up alike rather than one of them.
declare -A runs=([alone]="" [off]="" [on]="")
rounds=${ROUNDS:-3}
for round in $(seq "$rounds"); do
  serve no
  runs[alone]+=" $(measure)"
  stop
  serve yes
  runs[off]+=" $(measure)"
  stop
  serve yes SYNTHORG_TRACE_OTLP_ENDPOINT="http://127.0.0.1:$sink_port/v1/traces" SYNTHORG_TRACE_SAMPLING_RATIO=1.0
  runs[on]+=" $(measure)"
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
  stop
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n "$(( (rounds + 1) / 2 ))p"; }
alone=$(median "${runs[alone]}")
off=$(median "${runs[off]}")
on=$(median "${runs[on]}")
exported=$(awk '/^synthorg_telemetry_spans_exported_total/ {print $2}' <<<"$metrics")
dropped=$(awk '/^synthorg_telemetry_spans_dropped_total/ {s += $2} END {print s}' <<<"$metrics")

echo "| GET /api/v1/healthz | requests/s (median of $rounds) | each round |"
echo "|---|---:|---|"
echo "| http-api alone (no telemetry plugin) | $alone |${runs[alone]} |"
echo "| telemetry plugin, tracing off | $off |${runs[off]} |"
echo "| tracing on, ratio 1.0, OTLP to a local sink | $on |${runs[on]} |"
python3 -c "print(f'ratio off/alone {$off/$alone:.3f} (target: no measurable cost), on/off {$on/$off:.3f} (target: >= 0.90)')"
echo "last traced run: spans exported $exported, dropped (counted) $dropped"
echo
"$build/bin/synthorg-bench-exporter" "http://127.0.0.1:$sink_port/v1/traces" 50000 5
