#!/usr/bin/env bash
# docs/config-reference.md is what `synthorg config docs` prints for the plugins this build
# installs: regenerate it and fail on any difference. Usage: config_reference_test.sh SYNTHORG REPO
set -euo pipefail
synthorg=$1 repo=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# From an empty directory with no SYNTHORG_CONFIG_PATH: the embedded default configuration,
# so the plugin directory is the one installed beside the binary.
(cd "$work" && env -u SYNTHORG_CONFIG_PATH "$synthorg" config docs >"$work/config-reference.md")
if ! diff -u "$repo/docs/config-reference.md" "$work/config-reference.md"; then
  echo "docs/config-reference.md is stale: regenerate it with 'make config-reference' and commit it" >&2
  exit 1
fi
echo "docs/config-reference.md is up to date ($(wc -l <"$work/config-reference.md") lines)"
