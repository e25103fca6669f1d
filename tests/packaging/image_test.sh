#!/usr/bin/env bash
# The container image end to end, on the real dockerd: built from this build tree with
# packaging/docker/build-image, run hardened (--read-only, --cap-drop ALL, no-new-privileges,
# tmpfs /tmp, a volume on /data, the port published on 127.0.0.1 only), ready, signed in (when
# the image has the auth plugin), stopped with SIGTERM (exit 0, "Shutdown complete"), and
# started again on the same volume with the data intact. Everything it creates is removed,
# whatever happens. Usage: image_test.sh BUILD_DIR REPO
set -euo pipefail
build_dir=$1 repo=$2
synthorg=$build_dir/bin/synthorg

say() { echo "image_test: $*"; }
fail() { echo "image_test: FAIL: $*" >&2; exit 1; }

if ! curl -sf --max-time 5 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null; then
  fail "dockerd is not answering on /var/run/docker.sock (start it with scripts/services)"
fi

run_id=$$-$RANDOM
tag=synthorg-test:$run_id
volume=synthorg-test-data-$run_id
work=$(mktemp -d)
containers=()
cleanup() {
  local status=$?
  for name in "${containers[@]}"; do
    if ((status != 0)); then
      echo "--- logs of $name" >&2
      docker logs "$name" >&2 2>&1 || true
    fi
    docker rm -f "$name" >/dev/null 2>&1 || true
  done
  docker volume rm -f "$volume" >/dev/null 2>&1 || true
  docker image rm -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A run killed outright (a ctest timeout sends SIGKILL) cannot clean up: its leftovers carry
# its pid, and go once that pid is gone.
for name in $(docker ps -a --filter label=synthorg.test.pid --format '{{.Names}}'); do
  pid=$(docker inspect --format '{{index .Config.Labels "synthorg.test.pid"}}' "$name")
  kill -0 "$pid" 2>/dev/null || docker rm -f "$name" >/dev/null 2>&1 || true
done
for name in $(docker volume ls -q --filter label=synthorg.test.pid); do
  pid=$(docker volume inspect --format '{{index .Labels "synthorg.test.pid"}}' "$name")
  kill -0 "$pid" 2>/dev/null || docker volume rm -f "$name" >/dev/null 2>&1 || true
done
for image in $(docker images --format '{{.Repository}}:{{.Tag}}' synthorg-test); do
  pid=${image#synthorg-test:}
  pid=${pid%%-*}
  kill -0 "$pid" 2>/dev/null || docker image rm -f "$image" >/dev/null 2>&1 || true
done
docker volume create --label "synthorg.test.pid=$$" "$volume" >/dev/null

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() {
  python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[key]
print(value)' "$@"
}

# 1. Build, and check what the image declares.
"$repo/packaging/docker/build-image" --build-dir "$build_dir" --context "$work/context" --tag "$tag"
size=$(docker image inspect --format '{{.Size}}' "$tag")
say "image size: $size bytes ($((size / 1000000)) MB)"
((size < 60 * 1000 * 1000)) || fail "the image is $((size / 1000000)) MB; the budget is 60 MB"
[[ "$(docker image inspect --format '{{.Config.User}}' "$tag")" == 65532:65532 ]] || fail "the image does not run as 65532"
[[ "$(docker image inspect --format '{{json .Config.Entrypoint}}' "$tag")" == '["synthorg","serve"]' ]] ||
  fail "entrypoint is $(docker image inspect --format '{{json .Config.Entrypoint}}' "$tag")"
# Its own HEALTHCHECK, exec form (no shell), with the SynthOrg guide's timings for the backend.
healthcheck=$(docker image inspect --format '{{json .Config.Healthcheck}}' "$tag")
[[ "$healthcheck" == '{"Test":["CMD","synthorg","probe","--port","3001","--path","/api/v1/readyz"],"Interval":10000000000,"Timeout":5000000000,"StartPeriod":30000000000,"Retries":3}' ]] ||
  fail "the image's HEALTHCHECK is $healthcheck"
image_env=$(docker image inspect --format '{{json .Config.Env}}' "$tag")
for expected in SYNTHORG_HTTP_ADDRESS=0.0.0.0 SYNTHORG_WEB_ADDRESS=0.0.0.0 SYNTHORG_GRPC_ADDRESS=0.0.0.0 \
  SYNTHORG_DB_PATH=/data/synthorg.db SYNTHORG_BACKUP_DIR=/data/backups SYNTHORG_LOG_DIR=/data/logs; do
  [[ "$image_env" == *"\"$expected\""* ]] || fail "the image lacks ENV $expected: $image_env"
done
# Product telemetry's fallback environment tag, baked from HEAD's release tag (none: dev).
baked=$("$repo/packaging/docker/build-image" --print-deployment-env "$(git -C "$repo" describe --tags --exact-match HEAD 2>/dev/null || true)")
[[ "$image_env" == *"\"SYNTHORG_TELEMETRY_ENV_BAKED=$baked\""* ]] ||
  fail "the image lacks ENV SYNTHORG_TELEMETRY_ENV_BAKED=$baked (DEPLOYMENT_ENV): $image_env"

hardened=(--read-only --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp:rw,noexec,nosuid,nodev,size=16m
  -v "$volume:/data")
one_shot() { docker run --rm --label "synthorg.test.pid=$$" "${hardened[@]}" "${extra[@]}" --entrypoint synthorg "$tag" "$@"; }

# 2. With the auth plugin in the image, enable it through a mounted company.yaml, as an
# operator would; without it, the embedded default configuration is used.
extra=()
auth=false
# Read whole first: `grep -q` would stop reading early, and under pipefail the writer's SIGPIPE
# would make the test think the plugin is missing.
listed=$(docker run --rm --entrypoint synthorg "$tag" plugins list --json)
if grep -q '"name": "auth"' <<<"$listed"; then
  auth=true
  cat >"$work/company.yaml" <<'YAML'
company_name: Image test
select: {store: store-sqlite}
plugins:
  http-api:
    config: {address: 0.0.0.0, port: 3001}
  store-sqlite:
    config: {path: /data/synthorg.db}
  auth: {}
YAML
  chmod 0644 "$work/company.yaml"
  extra=(-v "$work/company.yaml:/etc/synthorg/company.yaml:ro" -e SYNTHORG_CONFIG_PATH=/etc/synthorg/company.yaml
    -e "SYNTHORG_JWT_SECRET=$("$synthorg" keygen jwt)" -e "SYNTHORG_SETTINGS_KEY=$("$synthorg" keygen fernet)")
  say "the image has the auth plugin: enabled through a mounted company.yaml"
else
  say "SKIP sign-in: the image has no auth plugin yet (plugins/auth not built); the data check uses a backup instead"
fi

port=$(free_port)
base=http://127.0.0.1:$port
start() {
  local name=synthorg-test-$run_id-$1
  containers+=("$name")
  local began
  began=$(date +%s%N)
  docker run -d --name "$name" --label "synthorg.test.pid=$$" "${hardened[@]}" "${extra[@]}" -p "127.0.0.1:$port:3001" "$tag" >/dev/null
  local status=
  for _ in $(seq 1 300); do
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$base/api/v1/readyz" || true)
    [[ "$status" == 200 ]] && break
    [[ "$(docker inspect --format '{{.State.Running}}' "$name")" == true ]] || fail "$name exited during start-up"
    sleep 0.05
  done
  [[ "$status" == 200 ]] || fail "$name: /api/v1/readyz answered '$status', not 200, within 15 s"
  say "$name ready in $((($(date +%s%N) - began) / 1000000)) ms (docker run to /readyz 200)"
  current=$name
}
stop() {
  docker stop --time 20 "$current" >/dev/null
  local code
  code=$(docker inspect --format '{{.State.ExitCode}}' "$current")
  [[ "$code" == 0 ]] || fail "$current exited with $code after SIGTERM"
  local logs
  logs=$(docker logs "$current" 2>&1)
  grep -q 'msg="Shutting down" reason=SIGTERM' <<<"$logs" || fail "$current did not log the SIGTERM"
  grep -q 'msg="Shutdown complete"' <<<"$logs" || fail "$current did not log Shutdown complete"
  say "$current stopped by SIGTERM: exit 0, shutdown logged"
}

# 3. First start: hardened, ready, the health-check command works without a shell, data written.
start first
[[ "$(docker inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$current")" == true ]] || fail "root filesystem not read-only"
docker exec "$current" synthorg probe >/dev/null || fail "'synthorg probe' (the compose health check) failed in the container"
docker exec "$current" synthorg probe --path /api/v1/healthz >/dev/null || fail "healthz probe failed"
if ! doctor=$(docker exec "$current" synthorg doctor); then
  echo "$doctor" >&2
  fail "synthorg doctor finds the running container unhealthy"
fi
grep -q '^OK    database' <<<"$doctor" || fail "doctor did not reach the database: $doctor"
grep -q '^WARN  http port .*answers /api/v1/healthz' <<<"$doctor" || fail "doctor did not recognise the running server: $doctor"
say "synthorg doctor inside the container: healthy"
# The image's own HEALTHCHECK (exec form, no shell): a bare `docker run` becomes healthy.
health=
for _ in $(seq 1 60); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$current")
  [[ "$health" == healthy ]] && break
  sleep 1
done
[[ "$health" == healthy ]] || fail "$current: Docker's health status is '$health', not healthy, 60 s after start"
say "the image's HEALTHCHECK: $current is healthy (Docker's own status)"
mountpoint=$(docker volume inspect --format '{{.Mountpoint}}' "$volume")
if [[ -d "$mountpoint" ]]; then
  [[ "$(stat -c %u "$mountpoint/synthorg.db")" == 65532 ]] || fail "the database on the volume is not owned by 65532"
fi
if [[ "$auth" == true ]]; then
  credentials='{"username": "admin", "password": "image-test-password-1"}'
  code=$(curl -s -o "$work/setup.json" -w '%{http_code}' -H 'content-type: application/json' -d "$credentials" "$base/api/v1/auth/setup")
  [[ "$code" == 201 ]] || fail "setup answered $code: $(cat "$work/setup.json")"
  token=$(curl -sf -H 'content-type: application/json' -d "$credentials" "$base/api/v1/auth/login" | json_field token)
  [[ -n "$token" ]] || fail "no token from login"
  curl -sf -X PUT -H "authorization: Bearer $token" -H 'content-type: application/json' -d '{"value": 3}' \
    "$base/api/v1/settings/backup/keep" >/dev/null || fail "cannot change backup.keep through the API"
  say "signed in as the first admin and set backup.keep=3 through the API"
fi
stop

# 4. Between the two runs, a backup of the volume, by the same image (only the Store starts).
backup_id=$(one_shot backup create --json | json_field id)
[[ "$backup_id" =~ ^[0-9a-f]{12}$ ]] || fail "backup create gave no id: '$backup_id'"
say "backup $backup_id created on the volume"

# 5. Second start on the same volume: the data is still there.
start second
one_shot_list=$(docker exec "$current" synthorg backup list --json) || fail "backup list failed beside the server"
grep -q "\"$backup_id\"" <<<"$one_shot_list" || fail "backup $backup_id is not listed after the restart"
if [[ "$auth" == true ]]; then
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d "$credentials" "$base/api/v1/auth/setup")
  [[ "$code" == 409 ]] || fail "setup answered $code after the restart; the admin should still exist (409)"
  token=$(curl -sf -H 'content-type: application/json' -d "$credentials" "$base/api/v1/auth/login" | json_field token)
  setting=$(curl -sf -H "authorization: Bearer $token" "$base/api/v1/settings/backup/keep")
  [[ "$(json_field value <<<"$setting")" == 3 ]] || fail "backup.keep is not 3 after the restart: $setting"
  say "after the restart: the admin signs in again and backup.keep is still 3"
fi
stop

# 6. The bare image, as `docker run` starts it with no configuration of ours: the embedded
# default, the whole product, every listener reachable from outside the container.
web_port=$(free_port)
grpc_port=$(free_port)
name=synthorg-test-$run_id-bare
containers+=("$name")
docker run -d --name "$name" --label "synthorg.test.pid=$$" "${hardened[@]}" -p "127.0.0.1:$port:3001" \
  -p "127.0.0.1:$web_port:3000" -p "127.0.0.1:$grpc_port:8081" "$tag" >/dev/null
status=
for _ in $(seq 1 300); do
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$base/api/v1/readyz" || true)
  [[ "$status" == 200 ]] && break
  sleep 0.05
done
[[ "$status" == 200 ]] || fail "the bare image: /api/v1/readyz answered '$status', not 200: $(docker logs "$name" 2>&1 | tail -5)"
logs=$(docker logs "$name" 2>&1)
for plugin in auth workloads flight-gateway web; do
  grep -q "msg=\"Plugin started\" plugin=$plugin " <<<"$logs" || fail "the bare image did not start $plugin: $logs"
done
[[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$web_port/api/v1/healthz")" == 200 ]] ||
  fail "the bare image's dashboard port is not reachable from outside the container"
# docker-proxy accepts a TCP connection whether or not anything listens behind it: ask for the
# server's HTTP/2 SETTINGS, which only a gRPC server sends.
python3 - "$grpc_port" <<'PY' || fail "the bare image's Flight SQL port does not answer HTTP/2 from outside the container"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
head = s.recv(9)
sys.exit(0 if len(head) == 9 and head[3] == 4 else 1)
PY
current=$name
stop
say "the bare image runs the whole product: API, dashboard and Flight SQL reachable, auth and workloads started"
say "PASS"
