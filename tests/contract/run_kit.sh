#!/usr/bin/env bash
# Runs the orchestrator conformance kit on a plugin against a contract server, then checks that
# the server recorded no contract violations. Generic: any contract server that follows the
# protocol below works (tests/contract/fly_server.py does).
#
# Usage: tests/contract/run_kit.sh <synthorg-conformance> <server.py> <plugin.so> <config-template> [runner args...]
#
# The server is started as `/usr/bin/python3 <server.py> --ready-file FILE --workdir DIR` and
#   - writes FILE (JSON, atomically) once it listens: {"url": ..., "ca_file": ..., "env": {...}, ...};
#   - serves GET <url>/__contract/violations -> {"violations": [...]} (or a bare list);
#   - exits 77 when its contract is absent: this script then exits 77 too (ctest: skipped).
# <config-template> is the plugin's configuration as JSON; @KEY@ is replaced by the ready
# file's top-level string KEY in upper case (@URL@, @CA_FILE@, @APP@, @WORKDIR@...). The
# ready file's "env" entries are exported for the kit (the API token, say). Runner args (a
# --gtest_filter, --kit-image...) follow the template.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: $0 <synthorg-conformance> <server.py> <plugin.so> <config-template> [runner args...]" >&2
  exit 2
fi
runner=$1 server=$2 plugin=$3 template=$4
shift 4
name=$(basename "$server" .py)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/synthorg-contract.XXXXXX")
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

/usr/bin/python3 "$server" --ready-file "$workdir/ready.json" --workdir "$workdir/server" &
server_pid=$!
for _ in $(seq 1 300); do
  [[ -s "$workdir/ready.json" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    status=0
    wait "$server_pid" || status=$?
    server_pid=
    if [[ $status -eq 77 ]]; then
      echo "run_kit: SKIPPED: $name says its contract is absent (see above)"
      exit 77
    fi
    echo "run_kit: $name exited with status $status before it was ready" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ ! -s "$workdir/ready.json" ]]; then
  echo "run_kit: $name was not ready within 30 s" >&2
  exit 1
fi

# The configuration with the server's values filled in, and the environment it asks for.
config=$(/usr/bin/python3 - "$workdir/ready.json" "$template" <<'EOF'
import json, sys
ready = json.load(open(sys.argv[1]))
text = sys.argv[2]
for key, value in ready.items():
    if isinstance(value, str):
        text = text.replace("@" + key.upper() + "@", value)
json.loads(text)  # the result must still be JSON
print(text)
EOF
)
while IFS= read -r -d '' assignment; do
  export "$assignment"
done < <(/usr/bin/python3 -c '
import json, sys
for k, v in json.load(open(sys.argv[1])).get("env", {}).items():
    sys.stdout.write(f"{k}={v}\0")' "$workdir/ready.json")

kit_status=0
"$runner" --kind orchestrator --plugin "$plugin" --config "$config" "$@" || kit_status=$?

violations=$(/usr/bin/python3 - "$workdir/ready.json" <<'EOF'
import json, ssl, sys, urllib.request
ready = json.load(open(sys.argv[1]))
context = ssl.create_default_context(cafile=ready["ca_file"]) if ready.get("ca_file") else None
with urllib.request.urlopen(ready["url"] + "/__contract/violations", context=context, timeout=10) as answer:
    found = json.load(answer)
found = found.get("violations", []) if isinstance(found, dict) else found
for line in found:
    print(line)
EOF
) || { echo "run_kit: could not read the violations from $name" >&2; exit 1; }

if [[ -n "$violations" ]]; then
  echo "run_kit: $name recorded contract violations:" >&2
  while IFS= read -r line; do echo "  - $line"; done <<<"$violations" >&2
  exit 1
fi
echo "run_kit: $name recorded no contract violations"
if [[ $kit_status -ne 0 ]]; then
  echo "run_kit: the conformance kit failed (status $kit_status)" >&2
fi
exit "$kit_status"
