#!/usr/bin/env bash
# Builds the test images the Docker tests and the orchestrator kit use, from Debian's
# busybox-static (no registry is reachable here): synthorg-test/busybox:latest holds
# /bin/busybox with its applets, /etc/passwd and /etc/group (root and nobody), and /tmp.
# Idempotent: an image built from the same busybox binary is kept.
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
stamp=$(sha256sum "$busybox" | cut -c1-16)
if [[ $(docker image inspect --format '{{index .Config.Labels "synthorg.test.busybox"}}' "$image" 2>/dev/null) == "$stamp" ]]; then
  echo "build.sh: $image is up to date"
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
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
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
  docker import --change "LABEL synthorg.test.busybox=$stamp" --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "build.sh: built $image from $busybox"
