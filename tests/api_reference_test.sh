#!/usr/bin/env bash
# docs/api-reference.md must be what scripts/api-reference writes today.
# Usage: api_reference_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
python3 "$source/scripts/api-reference" "$build" > "$fresh"
if ! diff -u "$source/docs/api-reference.md" "$fresh"; then
  echo "docs/api-reference.md is out of date: run 'make api-reference' and commit it" >&2
  exit 1
fi
