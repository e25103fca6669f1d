#!/usr/bin/env bash
# Builds the test images the Docker tests and the orchestrator kit use, from Debian's
# busybox-static (no registry is reachable here): synthorg-test/busybox:latest, built by
# sdk/conformance/synthorg-kit-image (installed with the SDK), holds /bin/busybox with its
# applets, /etc/passwd and /etc/group (root and nobody), and /tmp.
# synthorg-test/fine-tune-stage:latest adds the fine-tune test stage (fine-tune-stage/stage.sh,
# which prints the progress protocol) as its command.
# synthorg/flightsql-duckdb:latest is the Flight SQL gateway's default workload
# (packaging/flightsql-duckdb/build-image: this host's Node.js and the DuckDB server), which
# flight.gateway_docker runs; skipped, saying why, without node, npm or the Arrow Flight protos.
# Idempotent: an image built from the same busybox binary (and stage script) is kept, and so is
# a flightsql-duckdb image built from the same inputs.
# Usage: tests/images/build.sh [DOCKER_HOST]
set -euo pipefail
[[ $# -ge 1 ]] && export DOCKER_HOST=$1
if ! docker info >/dev/null 2>&1; then
  echo "build.sh: the Docker engine is not reachable; run scripts/services docker" >&2
  exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
# The kit's image, with the builder the SDK installs for plugin authors (one copy of it).
kit_image=$here/../../sdk/conformance/synthorg-kit-image
[[ -x /bin/busybox ]] || { echo "build.sh: /bin/busybox is missing; run scripts/deps (it installs busybox-static)" >&2; exit 1; }
"$kit_image" | sed 's/^synthorg-kit-image: /build.sh: /'
"$kit_image" --image synthorg-test/fine-tune-stage:latest --add "$here/fine-tune-stage/stage.sh:/opt/stage.sh" \
  --cmd '["/bin/sh", "/opt/stage.sh"]' | sed 's/^synthorg-kit-image: /build.sh: /'

# The DuckDB Flight SQL workload. Its build-image stages in a directory of our own (this may run
# as root through sudo: nothing root-owned is left in the checkout's build/).
flight_build=$here/../../packaging/flightsql-duckdb/build-image
flight_protos=
for dir in "${FLIGHT_PROTO_DIR:-}" /usr/share/synthorg/arrow-flight "$here/../../../shared/contracts/arrow-flight"; do
  if [[ -n $dir && -f $dir/Flight.proto && -f $dir/FlightSql.proto ]]; then flight_protos=$dir; break; fi
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "build.sh: skipped synthorg/flightsql-duckdb:latest: node and npm are missing (scripts/deps installs them)"
elif [[ -z $flight_protos ]]; then
  echo "build.sh: skipped synthorg/flightsql-duckdb:latest: no Flight.proto and FlightSql.proto (set FLIGHT_PROTO_DIR, or check out ../shared/contracts)"
else
  stage=$(mktemp -d)
  if output=$("$flight_build" --if-changed --protos "$flight_protos" --context "$stage/context" 2>&1); then
    rm -rf "$stage"
    grep -E 'up to date|built ' <<<"$output" | sed 's/^build-image: /build.sh: /'
  else
    rm -rf "$stage"
    echo "$output" >&2
    echo "build.sh: could not build synthorg/flightsql-duckdb:latest (packaging/flightsql-duckdb/build-image)" >&2
    exit 1
  fi
fi
