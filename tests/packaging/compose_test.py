#!/usr/bin/env python3
"""packaging/docker/compose.yml carries every hardening key the deployment guide asks for.

Debian 12 has no Compose v2 plugin (only docker-compose 1.29, a different program), so unless
`docker compose` happens to be installed this checks the file as YAML, key by key; with the
plugin it also runs `docker compose config`. The configuration files the services mount are
validated by the synthorg binary itself. Usage: compose_test.py PACKAGING_DOCKER_DIR SYNTHORG
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

docker_dir, synthorg = sys.argv[1], sys.argv[2]
compose_path = os.path.join(docker_dir, "compose.yml")
text = open(compose_path).read()
compose = yaml.safe_load(text)
failures = []
passed = 0


def check(condition, what):
    global passed
    if condition:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what)


services = compose.get("services", {})
check(set(services) == {"backend", "web"}, f"services are backend and web, not {sorted(services)}")
check("synthorg-net" in compose.get("networks", {}), "network synthorg-net is declared")
check("synthorg-data" in compose.get("volumes", {}), "volume synthorg-data is declared")

limits = {"backend": ("2.0", "4G", 256), "web": ("0.5", "256M", 64)}
ports = {"backend": ("BACKEND_PORT", 3001), "web": ("WEB_PORT", 3000)}
for name, service in services.items():
    where = f"services.{name}"
    check(service.get("read_only") is True, f"{where}.read_only is true")
    check("no-new-privileges:true" in service.get("security_opt", []), f"{where}.security_opt has no-new-privileges:true")
    check(service.get("cap_drop") == ["ALL"], f"{where}.cap_drop is [ALL]")
    check(not service.get("cap_add"), f"{where} adds no capability")
    check(not service.get("privileged"), f"{where} is not privileged")
    check(service.get("network_mode") is None and service.get("pid") is None, f"{where} shares no host namespace")
    check(str(service.get("user")) == "65532:65532", f"{where}.user is 65532:65532")
    check(service.get("networks") == ["synthorg-net"], f"{where} is on synthorg-net only")
    # The SynthOrg guide's SYNTHORG_IMAGE_TAG picks the image's tag, latest by default.
    check(service.get("image") == "${SYNTHORG_IMAGE_REPOSITORY:-synthorg}:${SYNTHORG_IMAGE_TAG:-latest}",
          f"{where}.image takes its tag from SYNTHORG_IMAGE_TAG (got {service.get('image')})")
    tmpfs = service.get("tmpfs", [])
    check(bool(tmpfs), f"{where} has a tmpfs (the root filesystem is read-only)")
    for mount in tmpfs:
        options = set(mount.split(":", 1)[1].split(",")) if ":" in mount else set()
        check({"noexec", "nosuid", "nodev"} <= options, f"{where}.tmpfs {mount} is noexec,nosuid,nodev")
    logging = service.get("logging", {})
    check(logging.get("driver") == "json-file", f"{where}.logging.driver is json-file")
    check(logging.get("options", {}).get("max-size") == "10m", f"{where}.logging max-size is 10m")
    check(str(logging.get("options", {}).get("max-file")) == "3", f"{where}.logging max-file is 3")
    cpus, memory, pids = limits[name]
    resources = service.get("deploy", {}).get("resources", {}).get("limits", {})
    check(str(resources.get("cpus")) == cpus, f"{where} CPU limit is {cpus}")
    check(str(resources.get("memory")) == memory, f"{where} memory limit is {memory}")
    check(resources.get("pids") == pids, f"{where} PID limit is {pids}")
    health = service.get("healthcheck", {})
    test = health.get("test", [])
    # The image has no shell: CMD-SHELL would never run.
    check(test[:2] == ["CMD", "synthorg"], f"{where}.healthcheck runs the synthorg binary with CMD, not a shell")
    # web probes the web plugin's own listener, not the API behind it.
    path = "/api/v1/readyz" if name == "backend" else "/healthz"
    check(path in test, f"{where}.healthcheck probes {path}")
    # The SynthOrg guide: backend 10 s / 5 s / 3 / 30 s, web 10 s / 3 s / 3 / 10 s.
    timings = {"backend": ("10s", "5s", 3, "30s"), "web": ("10s", "3s", 3, "10s")}[name]
    got = (health.get("interval"), health.get("timeout"), health.get("retries"), health.get("start_period"))
    check(got == timings, f"{where}.healthcheck interval/timeout/retries/start_period are {timings}, not {got}")
    variable, container_port = ports[name]
    published = service.get("ports", [])
    check(any(re.fullmatch(r"\$\{BIND_ADDRESS:-127\.0\.0\.1\}:\$\{" + variable + r":-\d+\}:" + str(container_port), p)
              for p in published), f"{where} publishes {container_port} from {variable} on loopback by default")
    for volume in service.get("volumes", []):
        check("docker.sock" not in volume, f"{where} does not mount the Docker socket (it stays commented)")

check(any(re.fullmatch(r"\$\{BIND_ADDRESS:-127\.0\.0\.1\}:\$\{GRPC_PORT:-8081\}:8081", p)
          for p in services["backend"].get("ports", [])),
      "backend publishes Flight SQL's 8081 from GRPC_PORT on loopback by default (PondPilot's gRPC port)")
check(services["web"].get("depends_on", {}).get("backend", {}).get("condition") == "service_healthy",
      "web depends on backend being healthy")
check("synthorg-data:/data" in services["backend"].get("volumes", []), "backend keeps /data on synthorg-data")
check(re.search(r"^\s*# - /var/run/docker.sock:/var/run/docker.sock", text, re.M) is not None,
      "the Docker socket mount is there, commented")
check(re.search(r"RISK:.*controls the host", text) is not None, "the Docker socket's risk is spelled out")

environment = services["backend"].get("environment", {})
for variable in ["SYNTHORG_JWT_SECRET", "SYNTHORG_SETTINGS_KEY", "SYNTHORG_DB_PATH", "SYNTHORG_MEMORY_DIR",
                 "SYNTHORG_LOG_DIR", "SYNTHORG_LOG_LEVEL", "SYNTHORG_DATABASE_URL"]:
    check(variable in environment, f"backend passes {variable}")

# Every variable compose.yml interpolates is documented in .env.example, and no secret is filled in.
example = {}
for line in open(os.path.join(docker_dir, ".env.example")):
    line = line.strip()
    if line and not line.startswith("#"):
        key, _, value = line.partition("=")
        example[key] = value
used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
check(used <= set(example), f".env.example lists every variable compose.yml uses (missing: {sorted(used - set(example))})")
check(example.get("SYNTHORG_JWT_SECRET") == "" and example.get("SYNTHORG_SETTINGS_KEY") == "",
      ".env.example leaves the secrets empty")
check(example.get("BIND_ADDRESS") == "127.0.0.1", ".env.example binds to loopback")

# The files the services mount are valid for this kernel and its plugins.
env = dict(os.environ, SYNTHORG_JWT_SECRET="x" * 40)
env.pop("SYNTHORG_CONFIG_PATH", None)
env.pop("SYNTHORG_DATABASE_URL", None)
for config in ["company.yaml", "web.yaml"]:
    result = subprocess.run([synthorg, "-c", os.path.join(docker_dir, config), "config", "validate"],
                            capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    check(result.returncode == 0, f"{config} validates: {result.stdout}{result.stderr}".strip())
check(subprocess.run([synthorg, "probe", "--help"], capture_output=True).returncode == 0,
      "`synthorg probe`, the health-check command, exists")

plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
if plugin.returncode == 0:
    with tempfile.TemporaryDirectory() as work:
        env_file = os.path.join(work, ".env")
        with open(env_file, "w") as out:
            for key, value in example.items():
                out.write(f"{key}={value or 'x' * 44}\n")
        result = subprocess.run(["docker", "compose", "--env-file", env_file, "-f", compose_path, "config", "-q"],
                                capture_output=True, text=True)
        check(result.returncode == 0, f"docker compose config: {result.stderr.strip()}")
else:
    print("note: no Compose v2 plugin here (Debian 12 ships only docker-compose v1): checked as YAML only")

print(f"compose: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
