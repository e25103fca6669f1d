#!/usr/bin/python3
"""A Fly Machines API contract server for orchestrator-fly's tests.

It keeps Machines the way the real API does and checks every request it gets against the
official OpenAPI document (../shared/contracts/fly-machines-openapi.json): the path and
method must exist, query parameters must be declared and of the declared type, and bodies must
validate with every object schema that has `properties` treated as closed (no unknown fields).
Its own answers are checked against the same document, so the simulation cannot drift from
what Fly sends. Problems are recorded and served at GET /__contract/violations.

Machines run for real, as local processes: config.init.cmd (with entrypoint/exec as Fly
combines them), or the machine's one config.processes entry as its user, runs with config.env
plus SYNTHORG_LISTEN_HOST=<private_ip>, and each machine
gets its own loopback address 127.0.2.N as private_ip, so a workload listening on it is
reachable at the endpoint the plugin reports. Exit codes land in an exit event
(events[].request.exit_event.exit_code), where flyd puts them.

Test hooks under /__contract/ (never checked against the spec, no auth):
  GET  /__contract/violations   -> {"violations": [...]}
  GET  /__contract/requests     -> the requests received (method, path, query, scheme, body)
  POST /__contract/fail-next    {"status": 412, "body": {...}, "method": "POST", "path": "/v1/..."}
                                 answers the next matching API request with that (method and
                                 path are optional filters; "count" repeats it)
  POST /__contract/seed         {"config": {...}, "name": "..."} creates a machine without the
                                 checks (e.g. one SynthOrg does not manage)

Usage: fly_server.py --ready-file FILE --workdir DIR [--spec FILE] [--token TOKEN] [--app NAME]
                     [--http]
Writes FILE (JSON: url, ca_file, env) once it listens. Exits 77 when the contract is absent.
The checks live in openapi_contract.py (shared with the other contract servers) and
fly_contract.py (what is Fly's own), the machines in fly_machines.py.
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import traceback
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from fly_contract import FlyContract  # noqa: E402
from fly_machines import WAIT_LIMIT_SECONDS, ApiError, Simulator  # noqa: E402
from openapi_contract import (SKIP, ContractHandler, ContractServer, default_contracts_dir,  # noqa: E402
                              make_certificates, server_tls_context, write_ready_file)


# --------------------------------------------------------------------------- HTTP

MACHINES = re.compile(r"^/v1/apps/([^/]+)/machines$")
MACHINE = re.compile(r"^/v1/apps/([^/]+)/machines/([^/]+)(?:/(wait|stop|start|events))?$")
APP = re.compile(r"^/v1/apps/([^/]+)$")


def expected_authorization(token):
    """What fly-go's AuthorizationHeader sends; a `FlyV1 ` token goes as it is."""
    if token.startswith("FlyV1 "):
        return token
    for part in token.split(","):
        if part.split("_", 1)[0] in ("fm1r", "fm2"):
            return "FlyV1 " + token
    return "Bearer " + token


class Server(ContractServer):
    name = "fly_server"

    def __init__(self, address, contract, simulator, token):
        super().__init__(address, Handler)
        self.contract, self.simulator, self.token = contract, simulator, token
        self.violations, self.requests, self.faults = [], [], []
        self.record_lock = threading.Lock()
        self.tls = None  # an ssl.SSLContext, or plain HTTP

    def violation(self, text):
        with self.record_lock:
            self.violations.append(text)
        sys.stderr.write(f"fly_server: VIOLATION {text}\n")


class Handler(ContractHandler):
    server_version = "fly-contract"
    verbose_env = "FLY_CONTRACT_VERBOSE"
    json_content_type = "application/json; charset=utf-8"

    def handle_any(self):
        method = self.command
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path.startswith("/__contract/"):
            return self.hook(method, path, raw)
        server = self.server
        body_text = raw.decode("utf-8", "replace")
        authorization = self.headers.get("Authorization") or ""
        with server.record_lock:
            try:
                recorded_body = json.loads(body_text) if body_text else None
            except ValueError:
                recorded_body = body_text
            server.requests.append({"method": method, "path": path, "query": pairs,
                                    "scheme": authorization.split(" ", 1)[0] if authorization else "",
                                    "body": recorded_body})
        checked = server.contract.check_request(method, path, pairs, self.headers.get("Content-Type"), body_text,
                                                self.headers)
        for problem in checked.problems:
            server.violation(f"{checked.where}: {problem}")
        # Authorization: a wrong token is an answer (401); the right token in the wrong form is a
        # client bug, recorded as a violation (and refused, so it cannot go unnoticed).
        expected = expected_authorization(server.token)
        if authorization != expected:
            bare = server.token[len("FlyV1 "):] if server.token.startswith("FlyV1 ") else server.token
            scheme, _, sent = authorization.partition(" ")
            if sent in (bare, server.token) or authorization == bare:
                server.violation(f"{method} {path}: Authorization sent as {scheme if sent else '(no scheme)'!r}; "
                                 f"fly-go sends this token as {expected.split(' ', 1)[0]!r}")
            return self.send_json(401, {"error": "You must be authenticated to view this."})
        fault = self.take_fault(method, path)
        if fault is not None:
            return self.send_json(fault.get("status", 500), fault.get("body"))
        try:
            status, value, headers = self.route(method, path, pairs, body_text)
        except ApiError as e:
            status, value, headers = e.status, e.body, None
            for problem in server.contract.check_error(value):
                server.violation(problem)
        except Exception:  # the simulator's own bug: say so loudly
            traceback.print_exc()
            server.violation(f"server crashed on {method} {path}")
            status, value, headers = 500, {"error": "contract server crashed"}, None
        else:
            for problem in server.contract.check_response(method, path, status, value):
                server.violation(problem)
        self.send_json(status, value, headers)

    def take_fault(self, method, path):
        with self.server.record_lock:
            for fault in self.server.faults:
                if fault.get("method", method) == method and re.search(fault.get("path", ""), path):
                    fault["count"] = fault.get("count", 1) - 1
                    if fault["count"] <= 0:
                        self.server.faults.remove(fault)
                    return fault
        return None

    def route(self, method, path, pairs, body_text):
        query = dict(pairs)
        sim = self.server.simulator
        try:
            request = json.loads(body_text) if body_text else {}
        except ValueError:
            raise ApiError(400, "the body is not JSON")
        match = APP.match(path)
        if match and method == "GET":
            return 200, sim.app_json(match.group(1)), None
        match = MACHINES.match(path)
        if match:
            if method == "GET":
                machines, cursor = sim.list(match.group(1), query)
                return 200, machines, ({"fly-next-cursor": cursor} if cursor else None)
            if method == "POST":
                return 200, sim.create(match.group(1), request), None
        match = MACHINE.match(path)
        if match:
            app, machine_id, action = match.groups()
            if action is None and method == "GET":
                with sim.lock:
                    return 200, sim.get(app, machine_id).to_json(), None
            if action is None and method == "DELETE":
                sim.destroy(app, machine_id, query.get("force") == "true")
                return 200, None, None
            if action == "wait" and method == "GET":
                timeout = int(query.get("timeout", WAIT_LIMIT_SECONDS))
                states = {s for name, value in pairs if name == "state" for s in value.split(",")} or {"started"}
                return 200, sim.wait(app, machine_id, states, timeout), None
            if action == "stop" and method == "POST":
                sim.stop(app, machine_id, request)
                return 200, None, None
            if action == "start" and method == "POST":
                sim.start(app, machine_id)
                return 200, None, None
            if action == "events" and method == "GET":
                with sim.lock:
                    events = sim.get(app, machine_id).events
                    return 200, events[: int(query.get("limit", len(events)))], None
        raise ApiError(404, f"the contract server does not simulate {method} {path}")

    def hook(self, method, path, raw):
        server = self.server
        if method == "GET" and path == "/__contract/violations":
            with server.record_lock:
                return self.send_json(200, {"violations": list(server.violations)})
        if method == "GET" and path == "/__contract/requests":
            with server.record_lock:
                return self.send_json(200, {"requests": list(server.requests)})
        if method == "POST" and path == "/__contract/fail-next":
            fault = json.loads(raw or b"{}")
            with server.record_lock:
                server.faults.append(fault)
            return self.send_json(200, {"queued": len(server.faults)})
        if method == "POST" and path == "/__contract/seed":
            request = json.loads(raw or b"{}")
            return self.send_json(200, server.simulator.create(server.simulator.app, request, checked=False))
        return self.send_json(404, {"error": f"no contract hook {method} {path}"})


# --------------------------------------------------------------------------- start-up

def default_spec():
    return os.environ.get("FLY_OPENAPI") or os.path.join(default_contracts_dir(), "fly-machines-openapi.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=default_spec())
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--token", default=os.environ.get("FLY_CONTRACT_TOKEN", "fly-contract-test-token"))
    parser.add_argument("--app", default="synthorg-test")
    parser.add_argument("--http", action="store_true", help="plain HTTP instead of TLS")
    args = parser.parse_args()

    if not os.path.exists(args.spec):
        print(f"fly_server: SKIP: the Fly Machines contract {args.spec} is absent "
              f"(../shared/contracts is not checked out here), so orchestrator-fly cannot be checked "
              f"against it", file=sys.stderr)
        return SKIP
    try:
        contract = FlyContract(args.spec)
    except ImportError as e:
        print(f"fly_server: SKIP: {e}; install python3-jsonschema", file=sys.stderr)
        return SKIP
    os.makedirs(args.workdir, exist_ok=True)
    simulator = Simulator(args.app, args.workdir)
    server = Server(("127.0.0.1", 0), contract, simulator, args.token)
    ready = {"app": args.app, "token": args.token, "workdir": args.workdir, "ca_file": ""}
    if args.http:
        ready["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    else:
        paths = make_certificates(args.workdir, "fly contract")
        server.tls = server_tls_context(paths)
        ready["url"] = f"https://127.0.0.1:{server.server_address[1]}"
        ready["ca_file"] = paths["ca"]
    ready["env"] = {"FLY_API_TOKEN": args.token, "FLY_APP_NAME": args.app}

    def stop(*_):
        simulator.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    write_ready_file(args.ready_file, ready)
    print(f"fly_server: listening on {ready['url']} (app {args.app})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        simulator.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
