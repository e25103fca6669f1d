#!/usr/bin/env bash
# The .deb on this machine: built by CPack from this build tree, installed with dpkg -i,
# started as the synthorg user with the installed configuration (the way the systemd unit
# does; systemd itself does not run here), ready on a loopback port, checked by
# `synthorg doctor`, stopped with SIGTERM, and purged. Needs root (exit 77 otherwise).
# A synthorg user the package created is removed again. Usage: deb_test.sh BUILD_DIR
set -euo pipefail
build_dir=$1

say() { echo "deb_test: $*"; }
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "deb_test: SKIPPED: dpkg -i needs root"; exit 77; }

work=$(mktemp -d)
chmod 0755 "$work"
server=
user_existed=false
getent passwd synthorg >/dev/null && user_existed=true
installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' synthorg 2>/dev/null || true)" == installed ]]; }
# dpkg takes a lock; another apt or dpkg on the machine makes it wait, not fail.
dpkg_retry() {
  for _ in $(seq 1 60); do
    if dpkg "$@" 2>"$work/dpkg.err"; then return 0; fi
    grep -q 'lock' "$work/dpkg.err" || { cat "$work/dpkg.err" >&2; return 1; }
    sleep 2
  done
  cat "$work/dpkg.err" >&2
  return 1
}
cleanup() {
  local status=$?
  if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then kill -KILL "$server" 2>/dev/null || true; fi
  if ((status != 0)) && [[ -s "$work/serve.log" ]]; then echo "--- synthorg serve log" >&2; cat "$work/serve.log" >&2; fi
  if installed || dpkg-query -W synthorg >/dev/null 2>&1; then dpkg_retry --purge synthorg >/dev/null || true; fi
  if [[ "$user_existed" == false ]] && getent passwd synthorg >/dev/null; then
    userdel synthorg 2>/dev/null || true
    getent group synthorg >/dev/null && groupdel synthorg 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if installed; then
  say "a synthorg package is installed already (an earlier run that was killed?): purging it first"
  dpkg_retry --purge synthorg >/dev/null
fi

# 1. Build the package; its dependencies come from dpkg-shlibdeps.
cpack --config "$build_dir/CPackConfig.cmake" -B "$work" >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log" >&2; fail "cpack failed"; }
deb=$(ls "$work"/synthorg_*.deb)
depends=$(dpkg-deb -f "$deb" Depends)
say "built $(basename "$deb"): Depends: $depends"
for needed in adduser libc6 libstdc++6 libsqlite3-0 libssl3 libyaml-cpp; do
  [[ "$depends" == *"$needed"* ]] || fail "Depends lacks $needed"
done
[[ "$(dpkg-deb -I "$deb" conffiles)" == *"/etc/synthorg/company.yaml"* ]] || fail "company.yaml is not a conffile"

# 2. Install.
dpkg_retry -i "$deb" >"$work/dpkg.log" || { cat "$work/dpkg.log" >&2; fail "dpkg -i failed"; }
installed || fail "the package is not installed after dpkg -i"
getent passwd synthorg >/dev/null || fail "postinst did not create the synthorg user"
[[ "$(stat -c '%U:%G %a' /var/lib/synthorg)" == "synthorg:synthorg 750" ]] || fail "/var/lib/synthorg is $(stat -c '%U:%G %a' /var/lib/synthorg)"
[[ "$(stat -c '%U %a' /etc/synthorg/synthorg.env)" == "root 600" ]] || fail "synthorg.env is not root-only"
unit=/lib/systemd/system/synthorg.service
for key in Environment=SYNTHORG_LOG_DIR=/var/lib/synthorg/logs NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes ReadWritePaths=/var/lib/synthorg \
  User=synthorg "ExecStart=/usr/bin/synthorg --config /etc/synthorg/company.yaml serve"; do
  grep -qxF "$key" "$unit" || fail "$unit lacks $key"
done
say "installed: user synthorg, /var/lib/synthorg, /etc/synthorg, $unit"

# 3. Run it as the unit would: the synthorg user, no new privileges, the unit's environment.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
web_port=$(free_port)
# env and setpriv exec in turn, so $! below is synthorg itself and gets the SIGTERM.
as_service=(env -i -C / PATH=/usr/sbin:/usr/bin:/sbin:/bin SYNTHORG_DB_PATH=/var/lib/synthorg/synthorg.db
  SYNTHORG_HTTP_PORT="$port" SYNTHORG_WEB_PORT="$web_port" SYNTHORG_JWT_SECRET="$(/usr/bin/synthorg keygen jwt)"
  SYNTHORG_SETTINGS_KEY="$(/usr/bin/synthorg keygen fernet)"
  setpriv --reuid=synthorg --regid=synthorg --init-groups --no-new-privs)
"${as_service[@]}" /usr/bin/synthorg --config /etc/synthorg/company.yaml serve >"$work/serve.log" 2>&1 &
server=$!
status=
for _ in $(seq 1 200); do
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/api/v1/readyz" || true)
  [[ "$status" == 200 ]] && break
  kill -0 "$server" 2>/dev/null || fail "synthorg serve exited during start-up"
  sleep 0.1
done
[[ "$status" == 200 ]] || fail "/api/v1/readyz answered '$status', not 200"
[[ "$(stat -c %U /var/lib/synthorg/synthorg.db)" == synthorg ]] || fail "the database does not belong to synthorg"
say "synthorg serve (as synthorg) is ready on 127.0.0.1:$port; database in /var/lib/synthorg"
# The dashboard comes with the package: its page, and the API through its port.
curl -sf --max-time 5 "http://127.0.0.1:$web_port/" | grep -qi '<html' || fail "no dashboard on 127.0.0.1:$web_port"
[[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$web_port/api/v1/healthz")" == 200 ]] ||
  fail "the dashboard's port does not hand /api/* to the API"
say "the dashboard answers on 127.0.0.1:$web_port, /api/* included"

if ! "${as_service[@]}" /usr/bin/synthorg --config /etc/synthorg/company.yaml doctor >"$work/doctor.log" 2>&1; then
  cat "$work/doctor.log" >&2
  fail "synthorg doctor reports the installed setup unhealthy"
fi
grep -q '^OK    database' "$work/doctor.log" || { cat "$work/doctor.log" >&2; fail "doctor did not open the database"; }
say "synthorg doctor (as synthorg) finds the install healthy"

kill -TERM "$server"
code=0
wait "$server" || code=$?
server=
((code == 0)) || fail "synthorg serve exited with $code after SIGTERM"
grep -q 'msg="Shutdown complete"' "$work/serve.log" || fail "no 'Shutdown complete' in the log"
say "stopped by SIGTERM: exit 0"

# 4. Purge: program, configuration and data go.
dpkg_retry --purge synthorg >/dev/null || fail "dpkg --purge failed"
for gone in /usr/bin/synthorg /usr/lib/synthorg /etc/synthorg /var/lib/synthorg "$unit"; do
  [[ ! -e "$gone" ]] || fail "$gone is still there after the purge"
done
say "purged: nothing left behind"
say "PASS"
