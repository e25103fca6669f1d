#!/usr/bin/env bash
# Builds the test images the Docker tests and the orchestrator kit use, from Debian's
# busybox-static (no registry is reachable here): synthorg-test/busybox:latest holds
# /bin/busybox with its applets, /etc/passwd and /etc/group (root and nobody), and /tmp.
# synthorg-test/fine-tune-stage:latest adds the fine-tune test stage (fine-tune-stage/stage.sh,
# which prints the progress protocol) as its command.
# Idempotent: an image built from the same busybox binary (and stage script) is kept.
# Usage: tests/images/build.sh [DOCKER_HOST]
set -euo pipefail
[[ $# -ge 1 ]] && export DOCKER_HOST=$1
image=synthorg-test/busybox:latest
busybox=/bin/busybox
if [[ ! -x $busybox ]]; then
  echo "build.sh: $busybox is missing; run scripts/deps (it installs busybox-static)" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "build.sh: the Docker engine is not reachable; run scripts/services docker" >&2
  exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
stage_script=$here/fine-tune-stage/stage.sh

# build IMAGE STAMP [CMD-JSON]: the busybox root file system (plus the stage script) imported.
build() {
  local image=$1 stamp=$2 cmd=${3:-'["/bin/sh"]'}
  if [[ $(docker image inspect --format '{{index .Config.Labels "synthorg.test.busybox"}}' "$image" 2>/dev/null) == "$stamp" ]]; then
    echo "build.sh: $image is up to date"
    return 0
  fi
  local root
  root=$(mktemp -d)
  chmod 755 "$root"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/www"
  chmod 1777 "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo "synthorg test workload" >"$root/www/index.html"
  [[ $# -lt 3 ]] || install -D -m 755 "$stage_script" "$root/opt/stage.sh"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
    docker import --change "LABEL synthorg.test.busybox=$stamp" --change 'ENV PATH=/bin' \
      --change "CMD $cmd" - "$image" >/dev/null
  rm -rf "$root"
  echo "build.sh: built $image from $busybox"
}

build "$image" "$(sha256sum "$busybox" | cut -c1-16)"
build synthorg-test/fine-tune-stage:latest "$(cat "$busybox" "$stage_script" | sha256sum | cut -c1-16)" \
  '["/bin/sh", "/opt/stage.sh"]'
