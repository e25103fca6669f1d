#!/usr/bin/env bash
# The web plugin serving a 2 KiB index.html and a 100 KiB asset, against nginx (one worker) and
# Caddy file_server serving the same directory, side by side in one run with wrk (64
# connections, keep-alive, no compression asked: every server sends the same bytes). synthorg
# runs one I/O thread, like nginx's one worker; Caddy uses every core (Go's default). Access logs
# are off everywhere. Then the dashboard's first load, compressed, as a browser fetches it.
# Usage: bench/web_static.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build=$(realpath "${1:-build/default}")
seconds=${2:-10}
source "$(dirname "$0")/lib.sh"
require_tools wrk nginx caddy

synthorg_port=29811
nginx_port=29812
caddy_port=29813
root="$work/root"
mkdir -p "$root/assets"
# 2 KiB of HTML with the nonce placeholder (synthorg substitutes it; the others send it as is).
python3 - "$root" <<'PY'
import os, sys
root = sys.argv[1]
head = '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="csp-nonce" content="__CSP_NONCE__">' \
       '<title>SynthOrg</title><script type="module" src="/assets/app.js"></script></head><body><div id="root"></div>'
filler = ''.join(f'<p>line {i} of the page body</p>' for i in range(200))
html = (head + filler)[:2048 - len('</body></html>')] + '</body></html>'
open(os.path.join(root, 'index.html'), 'w').write(html)
open(os.path.join(root, 'assets', 'app.js'), 'wb').write(os.urandom(50 * 1024).hex().encode()[:100 * 1024])
PY

cat > "$work/company.yaml" <<YAML
company_name: Bench
kernel:
  threads: ${SYNTHORG_THREADS:-1}
plugins:
  web:
    config: {address: 127.0.0.1, port: $synthorg_port, root: "$root", access_log: false}
YAML
SYNTHORG_LOG_LEVEL=warn "$build/bin/synthorg" --config "$work/company.yaml" serve &
synthorg_pid=$!

start_nginx "  include /etc/nginx/mime.types;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:$nginx_port;
    root $root;
    location / { try_files \$uri /index.html; }
  }"

cat > "$work/Caddyfile" <<CADDY
{
  admin off
  auto_https off
}
http://127.0.0.1:$caddy_port {
  root * $root
  file_server
}
CADDY
XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
for port in $synthorg_port $nginx_port $caddy_port; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/index.html" >/dev/null && break; sleep 0.1; done
done
for port in $synthorg_port $nginx_port $caddy_port; do
  cmp -s <(curl -sf "http://127.0.0.1:$port/assets/app.js") "$root/assets/app.js" || { echo "port $port serves other bytes" >&2; exit 1; }
done

echo "wrk -t2 -c64 -d${seconds}s --latency; synthorg $("$build/bin/synthorg" version | head -1 | awk '{print $2}'), $(nginx -v 2>&1 | sed 's/.*: //'), caddy $(caddy version | awk '{print $1}')"
for file in index.html assets/app.js; do
  for port in $synthorg_port $nginx_port $caddy_port; do wrk -t2 -c64 -d2s "http://127.0.0.1:$port/$file" >/dev/null; done
  read -r s_rps s_p99 s_user s_kernel <<<"$(measured_run s "$synthorg_pid" "http://127.0.0.1:$synthorg_port/$file")"
  read -r n_rps n_p99 <<<"$(wrk_run n "http://127.0.0.1:$nginx_port/$file")"
  read -r c_rps c_p99 <<<"$(wrk_run c "http://127.0.0.1:$caddy_port/$file")"
  size=$(stat -c %s "$root/$file")
  echo
  echo "/$file ($size bytes)"
  echo "| server | requests/s | p99 latency |"
  echo "|---|---:|---:|"
  echo "| synthorg web (1 I/O thread) | $s_rps | ${s_p99} ms |"
  echo "| nginx, 1 worker | $n_rps | ${n_p99} ms |"
  echo "| caddy file_server | $c_rps | ${c_p99} ms |"
  python3 -c "print(f'ratios: synthorg/nginx {$s_rps/$n_rps:.2f}x (target >= 1.00x), synthorg/caddy {$s_rps/$c_rps:.2f}x (target >= 2.00x), p99 synthorg/nginx {$s_p99/$n_p99:.2f}x (target <= 1.00x)')"
  # What the load generator itself costs: wrk runs on the same cores, so its CPU per request
  # caps every server here, whatever the server does.
  s_cost=$(wrk_cost s) n_cost=$(wrk_cost n) c_cost=$(wrk_cost c)
  python3 -c "print(f'wrk CPU per request: {$s_cost} µs against synthorg, {$n_cost} against nginx, {$c_cost} against caddy; ceiling for any server with wrk on these $(nproc) cores: {$(nproc)*1e6/$s_cost:.0f} requests/s')"
  echo "synthorg CPU per request: $s_user µs in user space, $s_kernel µs in the kernel (socket I/O)"
done

# The dashboard's first load: index.html and everything it links, as a browser asks (br, gzip).
dashboard="$build/lib/synthorg/plugins/web-dashboard"
if [[ -f "$dashboard/index.html" ]]; then
  total=$(python3 - "$dashboard" <<'PY'
import os, re, sys
root = sys.argv[1]
html = open(os.path.join(root, 'index.html')).read()
total = len(html.encode())
for ref in re.findall(r'(?:src|href)="(/[^"]+)"', html):
    path = os.path.join(root, ref.lstrip('/'))
    for candidate in (path + '.br', path + '.gz', path):
        if os.path.exists(candidate):
            total += os.path.getsize(candidate)
            break
print(total)
PY
)
  echo
  python3 -c "print(f'dashboard first load: {$total/1024:.1f} KiB compressed (target < 300 KiB)')"
fi
