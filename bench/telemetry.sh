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
# CPU clock ticks used so far: "io_user io_total rest_total sink_total", io being synthorg's I/O
# thread (synthorg-io-0), rest every other synthorg thread (the exporter's, mostly) and sink the
# nginx worker standing in for the collector.
thread_ticks() {
  # cat, not awk's own reading: a thread that ends between the glob and the read is skipped.
  cat /proc/"$synthorg_pid"/task/*/stat /proc/"$sink_worker"/stat 2>/dev/null | awk -v sink="$sink_worker" '
       { lp = index($0, "("); rp = index($0, ") "); name = substr($0, lp + 1, rp - lp - 1)
         split(substr($0, rp + 2), f, " ")  # f[1] is field 3 (state): utime is f[12], stime f[13]
         if ($1 == sink) st += f[12] + f[13]
         else if (name == "synthorg-io-0") { iu += f[12]; it += f[12] + f[13] } else rt += f[12] + f[13] }
       END { print iu + 0, it + 0, rt + 0, st + 0 }'
}
sink_worker=
for _ in $(seq 50); do
  sink_worker=$(pgrep -P "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null | head -1) && [[ -n $sink_worker ]] && break
  sleep 0.1
done
# -> "requests/s io_user_µs io_µs rest_µs machine_µs", the CPU figures per request; machine is
# all of it: synthorg, the sink and wrk itself, which share the two cores.
measure() {
  wrk -t2 -c64 -d2s "http://127.0.0.1:$port/api/v1/healthz" >/dev/null
  local before after TIMEFORMAT='%U %S'
  before=$(thread_ticks)
  { time wrk -t2 -c64 -d"${seconds}s" "http://127.0.0.1:$port/api/v1/healthz" > "$work/wrk.txt"; } 2> "$work/wrk.cpu"
  after=$(thread_ticks)
  awk -v before="$before" -v after="$after" -v wrk="$(cat "$work/wrk.cpu")" -v tck="$(getconf CLK_TCK)" '
    /requests in/ { n = $1 } /Requests\/sec/ { rps = $2 }
    END { split(before, b, " "); split(after, a, " "); split(wrk, w, " "); us = 1e6 / tck / n
          machine = (a[2] - b[2] + a[3] - b[3] + a[4] - b[4]) * us + (w[1] + w[2]) * 1e6 / n
          printf "%s %.2f %.2f %.2f %.2f\n", rps, (a[1] - b[1]) * us, (a[2] - b[2]) * us, (a[3] - b[3]) * us, machine }' "$work/wrk.txt"
}

# ROUNDS rounds, the three set-ups back to back in each: on a machine shared with other work the
# load drifts between runs, so each round's ratios compare neighbours, and the medians of those
# ratios are the figures (as bench/http_healthz.sh does).
# cpu[set-up,column]: the CPU figures of each round, medians printed under the table.
declare -A runs=([alone]="" [off]="" [on]="") cpu=()
rounds=${ROUNDS:-3}
record() {  # set-up: measures it and keeps the figures
  local rps io_user io rest machine
  read -r rps io_user io rest machine < <(measure)
  runs[$1]+=" $rps"
  cpu[$1,io_user]+=" $io_user"
  cpu[$1,io]+=" $io"
  cpu[$1,rest]+=" $rest"
  cpu[$1,machine]+=" $machine"
}
for round in $(seq "$rounds"); do
  serve no
  record alone
  stop
  serve yes
  record off
  stop
  serve yes SYNTHORG_TRACE_OTLP_ENDPOINT="http://127.0.0.1:$sink_port/v1/traces" SYNTHORG_TRACE_SAMPLING_RATIO=1.0
  record on
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
  stop
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n "$(( (rounds + 1) / 2 ))p"; }
ratios() {  # numerator denominator -> each round's ratio of the two set-ups' requests/s
  python3 -c "print(' '.join(f'{a/b:.3f}' for a, b in zip([$(tr ' ' ',' <<<"${runs[$1]# }")], [$(tr ' ' ',' <<<"${runs[$2]# }")])))"
}
exported=$(awk '/^synthorg_telemetry_spans_exported_total/ {print $2}' <<<"$metrics")
dropped=$(awk '/^synthorg_telemetry_spans_dropped_total/ {s += $2} END {print s}' <<<"$metrics")

echo "| GET /api/v1/healthz | requests/s (median of $rounds) | each round |"
echo "|---|---:|---|"
echo "| http-api alone (no telemetry plugin) | $(median "${runs[alone]}") |${runs[alone]} |"
echo "| telemetry plugin, tracing off | $(median "${runs[off]}") |${runs[off]} |"
echo "| tracing on, ratio 1.0, OTLP to a local sink | $(median "${runs[on]}") |${runs[on]} |"
off_alone=$(ratios off alone)
on_off=$(ratios on off)
echo "off/alone $(median "$off_alone") (target: no measurable cost), each round: $off_alone"
echo "on/off $(median "$on_off") (target: >= 0.90), each round: $on_off"
echo "last traced run: spans exported $exported, dropped (counted) $dropped"
echo
# CPU per request from /proc/PID/task/*/stat around each run: steadier than requests/s on shared
# cores, since it does not depend on who got the CPU when.
echo "| CPU µs per request (median of $rounds) | I/O thread user | I/O thread user + kernel | other threads (exporter) | machine (synthorg, sink, wrk) | I/O thread, each round |"
echo "|---|---:|---:|---:|---:|---|"
for setup in alone off on; do
  echo "| $setup | $(median "${cpu[$setup,io_user]}") | $(median "${cpu[$setup,io]}") | $(median "${cpu[$setup,rest]}") | $(median "${cpu[$setup,machine]}") |${cpu[$setup,io]} |"
done
# With the two cores saturated, requests/s is the inverse of the machine's CPU per request: this
# ratio is what tracing costs when nothing is idle, and it is steadier than requests/s.
python3 -c "print(f'machine CPU per request off/on {$(median "${cpu[off,machine]}") / $(median "${cpu[on,machine]}"):.3f} (requests/s on/off with both cores saturated)')"
echo
"$build/bin/synthorg-bench-exporter" "http://127.0.0.1:$sink_port/v1/traces" 50000 5
