#!/usr/bin/python3
"""docs/configuration.md carries the table of the deployment guides' variables exactly as
`synthorg config docs --guide-variables` prints it, and every test a row names exists in this
build's test list (`ctest -N`), so no row claims a test that is not there.

Usage: guide_variables_test.py SYNTHORG REPO BUILD_DIR CTEST
"""
import re
import subprocess
import sys

synthorg, repo, build_dir, ctest = sys.argv[1:5]
failures = []

table = subprocess.run([synthorg, "config", "docs", "--guide-variables"], capture_output=True, text=True, check=True).stdout
document = open(f"{repo}/docs/configuration.md").read()
begin, end = "<!-- generated: synthorg config docs --guide-variables -->\n", "<!-- end generated -->"
if begin not in document or end not in document:
    failures.append("docs/configuration.md has no generated guide-variables block")
else:
    embedded = document.split(begin, 1)[1].split(end, 1)[0]
    if embedded != table:
        failures.append("docs/configuration.md's guide-variables table is stale: replace the block with the output of "
                        "`synthorg config docs --guide-variables`")

listed = subprocess.run([ctest, "-N"], cwd=build_dir, capture_output=True, text=True, check=True).stdout
tests = set(re.findall(r"Test\s+#\d+: (\S+)", listed))
rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
variables = set()
for row in rows:
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    variable, test = cells[0], cells[-1].strip("`")
    variables.add(variable)
    if test not in tests:
        failures.append(f"{variable}: its test {test} is not in this build's tests (ctest -N)")

# Both guides' names are all there (the list the guides print, by name).
for name in ["SYNTHORG_JWT_SECRET", "SYNTHORG_SETTINGS_KEY", "SYNTHORG_DB_PATH", "SYNTHORG_MEMORY_DIR",
             "SYNTHORG_PERSISTENCE_BACKEND", "SYNTHORG_MEMORY_BACKEND", "SYNTHORG_LOG_DIR", "SYNTHORG_LOG_LEVEL",
             "BACKEND_PORT", "WEB_PORT", "MEM0_TELEMETRY", "DOCKER_HOST", "SYNTHORG_TELEMETRY_ENABLED",
             "SYNTHORG_TELEMETRY_ENV", "SYNTHORG_TELEMETRY_ENV_BAKED", "SYNTHORG_DATABASE_URL",
             "SYNTHORG_POSTGRES_SSL_MODE", "SYNTHORG_NATS_URL", "SYNTHORG_NATS_STREAM_PREFIX", "SYNTHORG_ARTIFACT_DIR",
             "SYNTHORG_TRACE_OTLP_ENDPOINT", "SYNTHORG_TRACE_SERVICE_NAME", "SYNTHORG_TRACE_SAMPLING_RATIO",
             "SYNTHORG_CONFIG_PATH", "SYNTHORG_WORKERS", "SYNTHORG_FINE_TUNE_HEALTH_PORT", "SYNTHORG_FINE_TUNE_IMAGE",
             "SYNTHORG_IMAGE_TAG", "SYNTHORG_API_CORS_ALLOWED_ORIGINS", "DEPLOYMENT_ENV", "JWT_SECRET", "PORT",
             "GRPC_PORT", "CONTAINER_IMAGE", "CONTAINER_IDLE_TIMEOUT", "CONTAINER_MEMORY_LIMIT", "CONTAINER_CPU_LIMIT",
             "CONTAINER_NETWORK", "DATABASE_URL", "CLAUDE_API_KEY", "OPENAI_API_KEY"]:
    if not any(f"`{name}`" in variable for variable in variables):
        failures.append(f"{name}: no row")

for failure in failures:
    print("FAIL:", failure)
print(f"guide variables: {len(rows)} rows, {len(failures)} problems")
sys.exit(1 if failures else 0)
