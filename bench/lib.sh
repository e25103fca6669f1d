# What the wrk-based bench scripts share; source it after `set -euo pipefail`.
# Sets `work` (a scratch directory) and a trap that stops synthorg_pid, caddy_pid and the nginx
# of $work/nginx.pid when the script ends, however it ends.

# require_tools TOOL...: stop with the fix when one is missing.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$(basename "$0"): $tool is missing; run scripts/deps --bench" >&2; exit 1; }
  done
}

work=$(mktemp -d)
bench_cleanup() {
  [[ -n "${synthorg_pid:-}" ]] && kill "$synthorg_pid" 2>/dev/null || true
  [[ -n "${caddy_pid:-}" ]] && kill "$caddy_pid" 2>/dev/null || true
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

# wrk_run NAME URL [wrk options...] -> "requests/s p99_ms", for `seconds` with 64 connections;
# the full output stays in $work/NAME.txt, and wrk's own CPU time in $work/NAME.cpu (wrk_cost).
wrk_run() {
  local name=$1 url=$2
  shift 2
  local TIMEFORMAT='%U %S'
  { time wrk -t2 -c64 -d"${seconds}s" --latency "$@" "$url" > "$work/$name.txt"; } 2> "$work/$name.cpu"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$name.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$work/$name.txt")
  echo "$rps $p99"
}

# start_nginx HTTP_DIRECTIVES: nginx 1.22 with one worker, access log off, every path in $work
# (pid, error log, temp files), and HTTP_DIRECTIVES (server blocks and the like) inside `http {}`.
# Stopped by the cleanup trap.
start_nginx() {
  cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
$1
}
NGINX
  nginx -c "$work/nginx.conf"
}

# wrk_cost NAME -> the CPU time (user + system) wrk itself spent per request in that wrk_run, in
# µs: on a machine where wrk shares the cores with the server, no server can answer more than
# cores / that figure requests a second.
wrk_cost() {
  local requests
  requests=$(awk '/requests in/ {print $1}' "$work/$1.txt")
  awk -v n="$requests" '{printf "%.1f", ($1 + $2) * 1e6 / n}' "$work/$1.cpu"
}

# measured_run NAME PID URL [wrk options...] -> "requests/s p99_ms user_µs kernel_µs": wrk_run,
# plus the CPU the process PID spent per request during it, split into user space and kernel.
# Steadier than requests/s on shared cores: it does not depend on who got the CPU when.
measured_run() {
  local name=$1 pid=$2
  shift 2
  local user0 kernel0 user1 kernel1 result requests
  read -r user0 kernel0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  result=$(wrk_run "$name" "$@")
  read -r user1 kernel1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  requests=$(awk '/requests in/ {print $1}' "$work/$name.txt")
  awk -v r="$result" -v n="$requests" -v t="$(getconf CLK_TCK)" -v u=$((user1 - user0)) -v k=$((kernel1 - kernel0)) \
    'BEGIN {printf "%s %.2f %.2f\n", r, u * 1e6 / t / n, k * 1e6 / t / n}'
}
