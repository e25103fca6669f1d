#!/usr/bin/env bash
# Cold start to "all plugins started" and resident memory, with 1 and with 20 trivial plugins.
# Usage: bench/kernel_startup.sh [BUILD_DIR]   (needs hyperfine: scripts/deps --bench)
set -euo pipefail
build=${1:-build/default}
bin="$build/bin/synthorg"
fixtures="$build/tests/fixtures/trivial"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for count in 0 1 20; do
  dir="$work/plugins-$count"
  mkdir -p "$dir"
  plugins=""
  for i in $(seq -w 1 20 | head -n "$count"); do
    ln -s "$(realpath "$fixtures/trivial-$i.so")" "$dir/"
    plugins+="  trivial-$i: {}"$'\n'
  done
  printf 'company_name: Bench\nkernel:\n  plugin_dirs: [%s]\nplugins:\n%s' "$dir" "${plugins:-  {\}}" > "$work/company-$count.yaml"
  [[ $count == 0 ]] && printf 'company_name: Bench\nkernel:\n  plugin_dirs: [%s]\nplugins: {}\n' "$dir" > "$work/company-0.yaml"
done

echo "## Whole process: exec, load, start every plugin, stop, exit (hyperfine)"
hyperfine -N --warmup 5 --runs 50 --export-markdown "$work/startup.md" \
  -n "0 plugins" "$bin -c $work/company-0.yaml serve --exit-after-start" \
  -n "1 plugin" "$bin -c $work/company-1.yaml serve --exit-after-start" \
  -n "20 plugins" "$bin -c $work/company-20.yaml serve --exit-after-start" >/dev/null
cat "$work/startup.md"

echo
echo "## Kernel's own figure: serve() entry to 'All plugins started' (median of 20 runs, ms)"
for count in 0 1 20; do
  for _ in $(seq 20); do
    "$bin" -c "$work/company-$count.yaml" serve --exit-after-start 2>&1 | sed -n 's/.*msg="All plugins started".* ms=\([0-9.]*\).*/\1/p'
  done | sort -n | awk -v n="$count" '{a[NR]=$1} END {printf "%2d plugins: %.2f ms\n", n, a[int((NR+1)/2)]}'
done

echo
echo "## Resident memory after start (VmRSS)"
for count in 0 1 20; do
  "$bin" -c "$work/company-$count.yaml" serve > "$work/log-$count" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "All plugins started" "$work/log-$count" && break; sleep 0.05; done
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid"
  printf "%2d plugins: %s KiB (%.1f MiB)\n" "$count" "$rss" "$(echo "$rss/1024" | bc -l)"
done
