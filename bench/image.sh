#!/usr/bin/env bash
# The container image's figures: size (uncompressed, as `docker image inspect` reports it) and
# the time from `docker run` to the first 200 from /api/v1/readyz on a published loopback port,
# over several fresh containers (each on a new volume, so each start creates its database).
# Targets: under 60 MB; under 1 s. Results go in docs/performance.md by hand.
#
#   bench/image.sh [BUILD_DIR] [RUNS]     (default build/default, 7)
#
# Needs dockerd (scripts/services). Builds the image from BUILD_DIR under a throwaway tag.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=$(cd "${1:-$root/build/default}" && pwd)
runs=${2:-7}
tag=synthorg-bench:$$
work=$(mktemp -d)
names=()
cleanup() {
  for name in "${names[@]}"; do docker rm -f "$name" >/dev/null 2>&1 || true; docker volume rm -f "$name" >/dev/null 2>&1 || true; done
  docker image rm -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$root/packaging/docker/build-image" --build-dir "$build_dir" --context "$work/context" --tag "$tag" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$tag")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

times=()
kernel_times=()
for i in $(seq 1 "$runs"); do
  name=synthorg-bench-$$-$i
  names+=("$name")
  began=$(date +%s%N)
  docker run -d --name "$name" --read-only --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp \
    -v "$name:/data" -p "127.0.0.1:$port:3001" "$tag" >/dev/null
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/api/v1/readyz" || true)" == 200 ]]; do
    (( $(date +%s%N) - began < 30000000000 )) || { echo "no readiness within 30 s" >&2; docker logs "$name" >&2; exit 1; }
    sleep 0.005
  done
  times+=($((($(date +%s%N) - began) / 1000000)))
  # The kernel's own start-up, from its log: process start to every plugin started.
  kernel_times+=("$(docker logs "$name" 2>&1 | sed -n 's/.*msg="All plugins started".* ms=\([0-9.]*\).*/\1/p' | head -1)")
  docker stop --time 10 "$name" >/dev/null
  docker rm "$name" >/dev/null
  docker volume rm "$name" >/dev/null
done

sorted=($(printf '%s\n' "${times[@]}" | sort -n))
median=${sorted[$((runs / 2))]}
echo "image size: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1000000 }') MB; target < 60 MB)"
echo "docker run -> /readyz 200, ms: ${times[*]}"
echo "  median ${median} ms, min ${sorted[0]} ms, max ${sorted[$((runs - 1))]} ms (target < 1000 ms)"
echo "kernel start-up inside the container (log 'All plugins started'), ms: ${kernel_times[*]}"
