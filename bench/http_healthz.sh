#!/usr/bin/env bash
# GET /api/v1/healthz on synthorg (http-api) against nginx answering the same body with
# `return 200`, one worker, side by side in one run with wrk (64 connections, keep-alive); then
# an authenticated GET /api/v1/auth/me (JWT check on every request) against that healthz figure.
# Usage: [ROUNDS=3] bench/http_healthz.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build=$(realpath "${1:-build/default}")
seconds=${2:-10}
source "$(dirname "$0")/lib.sh"
require_tools wrk nginx

# Fixed ports below the ephemeral range (32768-60999 on Linux): a client socket of an earlier
# bench left in TIME_WAIT on one of them would stop nginx binding it.
synthorg_port=29801
nginx_port=29802
cat > "$work/company.yaml" <<YAML
company_name: Bench
kernel:
  threads: ${SYNTHORG_THREADS:-1}
plugins:
  http-api:
    config: {address: 127.0.0.1, port: $synthorg_port}
  store-sqlite:
    config: {path: $work/bench.db}
  auth: {}
YAML
SYNTHORG_JWT_SECRET=$("$build/bin/synthorg" keygen jwt) SYNTHORG_HTTP_ACCESS_LOG=false SYNTHORG_LOG_LEVEL=warn \
  "$build/bin/synthorg" --config "$work/company.yaml" serve &
synthorg_pid=$!

# The same body our healthz answers, so both sides send the same bytes.
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$synthorg_port/api/v1/healthz" >/dev/null && break; sleep 0.1; done
body=$(curl -sf "http://127.0.0.1:$synthorg_port/api/v1/healthz")
start_nginx "  server {
    listen 127.0.0.1:$nginx_port;
    location = /api/v1/healthz { default_type application/json; return 200 '$body'; }
  }"
sleep 0.3

# A signed-in user: the first admin, then its token on every request.
base="http://127.0.0.1:$synthorg_port/api/v1/auth"
password="bench-password-$RANDOM-$RANDOM"
curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"bench\",\"password\":\"$password\"}" "$base/setup" >/dev/null
token=$(curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"bench\",\"password\":\"$password\"}" "$base/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

healthz="http://127.0.0.1:$synthorg_port/api/v1/healthz"
# Warm all three, then ROUNDS rounds of synthorg healthz, nginx, synthorg /me back to back: on a
# shared machine the load drifts between runs, so each round's ratios compare neighbours, and the
# medians of those ratios are the figures.
wrk -t2 -c64 -d2s "$healthz" >/dev/null
wrk -t2 -c64 -d2s "http://127.0.0.1:$nginx_port/api/v1/healthz" >/dev/null
wrk -t2 -c64 -d2s -H "Authorization: Bearer $token" "$base/me" >/dev/null
echo "| round | synthorg healthz req/s | nginx req/s | ratio | p99 synthorg / nginx | CPU per request, user + kernel: synthorg / nginx | /me req/s | /me / healthz |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
ratios=() p99s=() mes=() users=()
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
for round in $(seq "${ROUNDS:-3}"); do
  read -r s_rps s_p99 s_user s_kernel <<<"$(measured_run synthorg "$synthorg_pid" "$healthz")"
  read -r n_rps n_p99 n_user n_kernel <<<"$(measured_run nginx "$nginx_worker" "http://127.0.0.1:$nginx_port/api/v1/healthz")"
  read -r m_rps _ <<<"$(wrk_run me "$base/me" -H "Authorization: Bearer $token")"
  ratio=$(python3 -c "print(f'{$s_rps/$n_rps:.2f}')")
  p99=$(python3 -c "print(f'{$s_p99/$n_p99:.2f}')")
  me=$(python3 -c "print(f'{$m_rps/$s_rps:.2f}')")
  ratios+=("$ratio") p99s+=("$p99") mes+=("$me")
  echo "| $round | $s_rps | $n_rps | ${ratio}× | $s_p99 / $n_p99 ms | $s_user + $s_kernel / $n_user + $n_kernel µs | $m_rps | ${me}× |"
  users+=("$(python3 -c "print(f'{$s_user/$n_user:.2f}')")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 1 worker; medians over ${ROUNDS:-3} rounds:"
echo "synthorg/nginx requests/s $(median "${ratios[@]}")x (target >= 1.00x), p99 $(median "${p99s[@]}")x (target <= 1.00x)"
echo "/me / healthz $(median "${mes[@]}")x (target >= 0.60x)"
echo "user-space CPU per request, synthorg / nginx: $(median "${users[@]}")x (the kernel's share is the same socket work for both)"
