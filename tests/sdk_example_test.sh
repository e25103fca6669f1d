#!/usr/bin/env bash
# Installs the SDK from this build into a temporary prefix, builds sdk/examples/hello-plugin
# against the *installed* SDK, runs the conformance kit on it, and loads it in the installed
# kernel; then builds sdk/examples/orchestrator-process the same way and runs the orchestrator
# kit on it. Usage: sdk_example_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
# The kit's image builder comes with the SDK, so an author's CI can build the kit's image too.
"$work/prefix/bin/synthorg-kit-image" --help | grep -q "synthorg plugins check" ||
  { echo "sdk example: synthorg-kit-image is not installed with the SDK" >&2; exit 1; }
# Kit failures name the kit's files as installed (synthorg/conformance/orchestrator_kit.cpp:N).
[[ -f $work/prefix/include/synthorg/conformance/orchestrator_kit.cpp ]] ||
  { echo "sdk example: the kit's sources are not installed beside kit.hpp" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$source_dir/sdk/examples/hello-plugin" -B "$work/example" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build "$work/example"
ctest --test-dir "$work/example" --output-on-failure

cat > "$work/company.yaml" <<YAML
company_name: Example
kernel:
  plugin_dirs: [example]
plugins:
  hello:
    config: {greeting: Bonjour}
YAML
output=$("$work/prefix/bin/synthorg" -c "$work/company.yaml" serve --exit-after-start 2>&1)
echo "$output"
grep -q 'msg="Plugin started" plugin=hello' <<<"$output"
grep -q 'msg="Hello started" greeting=Bonjour' <<<"$output"
"$work/prefix/bin/synthorg" -c "$work/company.yaml" plugins check "$work/example/hello.so"

# The reference orchestrator, built the same way, passes the orchestrator kit run by the
# installed kernel (its workloads are local processes running /bin/busybox).
cmake -S "$source_dir/sdk/examples/orchestrator-process" -B "$work/orchestrator" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build "$work/orchestrator"
"$work/prefix/bin/synthorg" plugins check --kind orchestrator "$work/orchestrator/orchestrator-process.so"
echo "sdk example: installed SDK builds, checks and loads the out-of-tree plugins"
