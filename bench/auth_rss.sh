#!/usr/bin/env bash
# The kernel's resident memory before and after 100 sign-ins (Argon2id, 19 MiB per hash by
# default): what the hashing threads keep once the sign-ins are over.
# Usage: bench/auth_rss.sh [BUILD_DIR] [SIGN_INS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:-build/default}
count=${2:-100}
port=18781
mkdir -p "$work/plugins"
for plugin in http-api store-sqlite auth; do ln -s "$(realpath "$build")/lib/synthorg/plugins/$plugin.so" "$work/plugins/"; done
cat >"$work/company.yaml" <<YAML
company_name: Bench
kernel: {plugin_dirs: [$work/plugins], blocking_threads: 4}
plugins:
  http-api: {config: {address: 127.0.0.1, port: $port}}
  store-sqlite: {config: {path: $work/s.db}}
  auth: {config: {hash_concurrency: 2}}
YAML
SYNTHORG_JWT_SECRET=$("$build/bin/synthorg" keygen jwt) SYNTHORG_HTTP_ACCESS_LOG=false SYNTHORG_LOG_LEVEL=warn \
  "$build/bin/synthorg" -c "$work/company.yaml" serve &
synthorg_pid=$!
base="http://127.0.0.1:$port/api/v1/auth"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$synthorg_pid/status"; }
body='{"username":"bench","password":"a long bench password"}'
curl -sf -H 'Content-Type: application/json' -d "$body" "$base/setup" >/dev/null
before=$(rss)
# Two at a time, as two clients would: every blocking thread gets to hash.
seq "$count" | xargs -P 2 -I{} curl -sf -o /dev/null -H 'Content-Type: application/json' -d "$body" "$base/login" || echo "auth_rss: some sign-ins failed (busy?); the figures still stand for those that ran" >&2
sleep 0.5
after=$(rss)
echo "auth_rss: $count sign-ins: RSS before ${before} KiB, after ${after} KiB, kept $(( after - before )) KiB"
