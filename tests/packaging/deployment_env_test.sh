#!/usr/bin/env bash
# The SynthOrg guide's rule for the environment an image is baked for (DEPLOYMENT_ENV →
# SYNTHORG_TELEMETRY_ENV_BAKED), as packaging/docker/build-image applies it to a release tag, and
# its refusal of a value that is none of the three. No Docker needed: image_test.sh reads the
# baked value back from a real image.
set -uo pipefail
build_image=$1/packaging/docker/build-image
failures=0
expect() {  # TAG EXPECTED
  local got
  got=$("$build_image" --print-deployment-env "$1")
  if [[ $got == "$2" ]]; then echo "ok: '$1' -> $got"; else echo "FAIL: '$1' -> $got, expected $2"; failures=$((failures + 1)); fi
}
expect v1.2.3 prod
expect 1.2.3 prod
expect v10.0.12 prod
expect v1.2.3-dev.4 pre-release
expect v1.2.3-rc.1 pre-release
expect v1.2.3-alpha.2 pre-release
expect v1.2.3-beta.x pre-release
expect v1.2.3-dev dev        # -dev without its number is not a pre-release tag form
expect v1.2.3-rc1 dev        # nor -rc without the dot
expect v1.2 dev
expect main dev
expect "" dev                # no tag on HEAD: a local build

out=$(DEPLOYMENT_ENV=staging "$build_image" --build-dir / 2>&1)
if [[ $? -ne 0 && $out == *"DEPLOYMENT_ENV"*"dev, pre-release or prod"* ]]; then
  echo "ok: DEPLOYMENT_ENV=staging is refused: $out"
else
  echo "FAIL: DEPLOYMENT_ENV=staging: $out"; failures=$((failures + 1))
fi
((failures == 0)) || { echo "$failures failed"; exit 1; }
echo "all passed"
