#!/usr/bin/python3
"""ctest contract.orchestrator-docker: orchestrator-docker's real traffic held to the Docker
Engine API 1.41 contract.

Starts the contract proxy (docker_proxy.py) on a socket of its own in front of the real engine,
runs the Docker gtests with the plugin pointed at it (SYNTHORG_TEST_DOCKER_HOST), and, when the
conformance runner given has the orchestrator kit, the kit on orchestrator-docker through it
too. Fails when either fails or when the proxy recorded any request the contract does not
allow (listed, each with how often it was sent). Left out: the tests that restart dockerd,
point the plugin at a missing socket, or use it as a user who may not open the socket.

Usage: docker_contract_test.py SYNTHORG_TESTS [--runner SYNTHORG_CONFORMANCE --plugin ORCHESTRATOR_DOCKER_SO]
                               [--spec FILE] [--upstream /var/run/docker.sock]
Without ../shared/contracts (or $SYNTHORG_CONTRACTS_DIR) it says why and exits 77 (skipped).
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
from docker_proxy import SPEC_NAME, VERSIONED, Proxy, load_contract  # noqa: E402
from openapi_contract import SKIP, default_contracts_dir  # noqa: E402

GTEST_FILTER = ("DockerTest.*:-DockerTest.EngineRestartMidOperation:DockerTest.AMissingSocket*:"
                "DockerTest.PermissionDenied*")


def say(text):
    print(f"docker_contract_test: {text}", flush=True)


def has_orchestrator_kit(runner):
    if not runner or not os.access(runner, os.X_OK):
        return False
    help_text = subprocess.run([runner, "--help"], capture_output=True, text=True).stdout
    return "orchestrator" in help_text


def operation_of(contract, entry):
    """The path template a recorded request matched (its path as sent when none did)."""
    path = urllib.parse.urlsplit(entry["target"]).path
    versioned = VERSIONED.match(path)
    path = versioned.group(2) if versioned else path
    return contract.operation(entry["method"], path)[0] or path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tests", help="synthorg-tests")
    parser.add_argument("--runner", help="synthorg-conformance")
    parser.add_argument("--plugin", help="orchestrator-docker.so, for the kit")
    parser.add_argument("--spec", default=os.path.join(default_contracts_dir(), SPEC_NAME))
    parser.add_argument("--upstream", default="/var/run/docker.sock")
    args = parser.parse_args()

    contract, why = load_contract(args.spec)
    if contract is None:
        say(f"SKIPPED: {why}")
        return SKIP
    failures = []
    with tempfile.TemporaryDirectory(prefix="synthorg-docker-contract-") as workdir:
        listen = os.path.join(workdir, "docker.sock")
        proxy = Proxy(contract, listen, args.upstream)
        proxy.start()
        host = "unix://" + listen
        say(f"the plugin talks to {host}, a proxy checking every request against {args.spec}")
        try:
            status = subprocess.call([args.tests, f"--gtest_filter={GTEST_FILTER}"],
                                     env={**os.environ, "SYNTHORG_TEST_DOCKER_HOST": host})
            if status != 0:
                failures.append(f"the Docker gtests failed (status {status})")
            if has_orchestrator_kit(args.runner) and args.plugin:
                say("the orchestrator conformance kit on orchestrator-docker, through the proxy")
                status = subprocess.call([args.runner, "--kind", "orchestrator", "--plugin", args.plugin,
                                          "--config", json.dumps({"host": host})])
                if status != 0:
                    failures.append(f"the orchestrator kit failed on orchestrator-docker (status {status})")
            else:
                say("no orchestrator conformance kit given (--runner/--plugin): the gtests only")
        finally:
            proxy.close()
        with proxy.lock:
            requests, violations = list(proxy.requests), list(proxy.violations)

    operations = collections.Counter(f"{entry['method']} {operation_of(contract, entry)}" for entry in requests)
    say(f"{len(requests)} requests went through the proxy: "
        + ", ".join(f"{operation} x{count}" for operation, count in sorted(operations.items())))
    if violations:
        counts = collections.Counter(violations)
        say(f"{len(violations)} requests broke the Docker Engine API {contract.document['info']['version']} "
            f"contract ({len(counts)} distinct problems):")
        for problem, count in counts.items():  # in the order first seen
            print(f"  - {problem}  (x{count})", flush=True)
        failures.append("the plugin sent requests the contract does not allow")
    elif not requests:
        failures.append("no request reached the proxy: the plugin was not pointed at it")
    else:
        say("no contract violations")
    for failure in failures:
        say(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
