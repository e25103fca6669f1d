#!/usr/bin/python3
"""A Kubernetes API server for orchestrator-kubernetes' tests, held to the official OpenAPI document.

Every request is checked against ../shared/contracts/kubernetes-core-v1-openapi.json: the
operation must exist, each query parameter must be declared with the right type, and each
body must validate against its schema with every object schema that declares `properties`
treated as closed (a misspelt or invented field fails). A request that breaks the contract
is answered 400 and recorded; GET /__contract/violations lists what was recorded, and the
process exits non-zero at the end when the list is not empty. The checks live in
openapi_contract.py, shared with the other contract servers.

Behind the contract it keeps Pods as the API server does (resourceVersions, watches with
history, graceful deletion with preconditions, label and field selectors, logs) and plays the
kubelet (kubernetes_kubelet.py): each pod gets its own IP 127.0.1.N and its container runs here,
isolated as a runtime would run it. The container sees SYNTHORG_LISTEN_HOST=<pod IP>, so that a
server in it binds to its pod's address. Images named missing/* fail to pull (ErrImagePull);
pods asking for nvidia.com/gpu, or more than 64Gi or 16 CPUs, stay Unschedulable.

Test controls (no authentication):
  GET  /__contract/violations            recorded contract violations (JSON list)
  GET  /__contract/requests              method, path, query and body of every API request
  POST /__contract/fail-next {"status":403,"reason":"Forbidden","message":"...","count":1,"match":"/pods"}
                                         answers the next matching API call(s) with that Status
  POST /__contract/token {"token":"..."} the only bearer token accepted from now on

Usage: kubernetes_server.py --ready-file FILE [--workdir DIR] [--contracts DIR] [--token TOKEN]
                            [--image-cmd IMAGE=JSON]
--contracts defaults to $SYNTHORG_CONTRACTS_DIR, else ../shared/contracts beside the source tree.
Without the contracts document it prints why and exits 77 (ctest's SKIP_RETURN_CODE).
Once it listens it writes the ready file (atomically), as tests/contract/run_kit.sh expects:
{"url": "https://127.0.0.1:PORT", "port": PORT, "ca_file": PATH, "token": TOKEN, "token_file": PATH,
 "workdir": DIR, "pid": PID}; token_file holds the token it accepts at start.
"""
import argparse
import json
import os
import select
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
from kubernetes_kubelet import ApiError, Cluster, parse_field_selector, parse_label_selector, status_object
from openapi_contract import (SKIP, Contract, ContractHandler, ContractServer, default_contracts_dir,
                              make_certificates, server_tls_context, write_ready_file)


# ---------------------------------------------------------------------------------------------
# HTTP

class Server(ContractServer):
    name = "contract kube-apiserver"

    def __init__(self, address, context, contract, cluster, token):
        super().__init__(address, Handler)
        self.tls = context  # the handshake runs on the connection's own thread
        self.contract = contract
        self.cluster = cluster
        self.token = token
        self.lock = threading.Lock()
        self.violations = []
        self.requests = []
        self.failures = []  # armed fail-next answers


class Handler(ContractHandler):
    server_version = "contract-kube-apiserver"

    # -- plumbing -------------------------------------------------------------------------------
    def send_status(self, status):
        self.send_json(status["code"], status)

    def start_chunked(self, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def client_gone(self):
        """While a stream is idle: has the client closed its end?"""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            self.connection.settimeout(0.05)
            try:
                return self.connection.recv(1) == b""
            finally:
                self.connection.settimeout(None)
        except (ssl.SSLWantReadError, socket.timeout):
            return False
        except OSError:
            return True

    def violation(self, problem):
        entry = {"method": self.command, "path": self.path, "problem": problem}
        with self.server.lock:
            self.server.violations.append(entry)
        sys.stderr.write(f"CONTRACT VIOLATION: {self.command} {self.path}: {problem}\n")

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return data
        return self.rfile.read(length) if length else b""

    # -- dispatch -------------------------------------------------------------------------------
    def handle_any(self):
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        raw_body = self.read_body()
        try:
            if path.startswith("/__contract/"):
                return self.control(path, raw_body)
            self.api(path, query, urllib.parse.parse_qsl(split.query, keep_blank_values=True), raw_body)
        except ApiError as error:
            self.send_status(error.status)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def control(self, path, raw_body):
        server = self.server
        if path == "/__contract/violations" and self.command == "GET":
            with server.lock:
                return self.send_json(200, list(server.violations))
        if path == "/__contract/requests" and self.command == "GET":
            with server.lock:
                return self.send_json(200, list(server.requests))
        if path == "/__contract/fail-next" and self.command == "POST":
            body = json.loads(raw_body or b"{}")
            status = status_object(int(body.get("status", 500)), body.get("reason", "InternalError"),
                                   body.get("message", "injected failure"))
            with server.lock:
                server.failures.append({"status": status, "count": int(body.get("count", 1)),
                                        "match": body.get("match", ""), "method": body.get("method", "")})
            return self.send_json(200, {"armed": status})
        if path == "/__contract/token" and self.command == "POST":
            body = json.loads(raw_body or b"{}")
            with server.lock:
                server.token = body["token"]
            return self.send_json(200, {"ok": True})
        self.send_json(404, {"error": f"no control endpoint {self.command} {path}"})

    def api(self, path, query, pairs, raw_body):
        server, contract = self.server, self.server.contract
        entry = {"method": self.command, "path": path, "query": {k: v[0] for k, v in query.items()}}
        if raw_body:
            try:
                entry["body"] = json.loads(raw_body)
            except ValueError:
                entry["body"] = raw_body.decode(errors="replace")
        with server.lock:
            server.requests.append(entry)
        # 1. The contract: operation, query, headers and body (openapi_contract.py).
        checked = contract.check_request(self.command, path, pairs, self.headers.get("Content-Type"), raw_body,
                                         self.headers)
        template, body, problems = checked.template, checked.body, checked.problems
        if template is None:
            self.violation(problems[0])
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if checked.operation is None:
            self.violation(problems[0])
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if problems:
            for problem in problems:
                self.violation(problem)
            raise ApiError(400, "BadRequest", "contract violation: " + "; ".join(problems))

        # 2. Authentication, as the API server does before anything else.
        authorization = self.headers.get("Authorization", "")
        with server.lock:
            token = server.token
        if authorization != f"Bearer {token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

        # 3. An injected failure, if one is armed for this call.
        with server.lock:
            for failure in server.failures:
                if failure["match"] in path and failure["method"] in ("", self.command):
                    failure["count"] -= 1
                    if failure["count"] <= 0:
                        server.failures.remove(failure)
                    status = failure["status"]
                    break
            else:
                status = None
        if status:
            return self.send_status(status)

        # 4. The resource.
        self.route(template, path, query, body)

    def route(self, template, path, query, body):
        cluster = self.server.cluster
        one = lambda name: query.get(name, [None])[0]
        parts = path.split("/")
        if template == "/api/v1/":
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                                        "resources": [
                                            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                                             "verbs": ["create", "delete", "deletecollection", "get", "list", "patch",
                                                       "update", "watch"], "shortNames": ["po"]},
                                            {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                                             "verbs": ["get"]}]})
        if template == "/api/v1/namespaces/{namespace}/pods":
            namespace = urllib.parse.unquote(parts[4])
            if self.command == "POST":
                return self.send_json(201, cluster.create(namespace, body))
            if self.command == "GET":
                labels = parse_label_selector(one("labelSelector"))
                fields = parse_field_selector(one("fieldSelector"))
                selector = lambda obj: labels(obj) and fields(obj)
                if one("watch") == "true":
                    return self.watch(namespace, selector, one("resourceVersion"), one("timeoutSeconds"))
                with cluster.cond:
                    items = cluster.matching(namespace, selector)
                    version = str(cluster.version)
                metadata = {"resourceVersion": version}
                limit = int(one("limit") or 0)
                if limit and len(items) > limit:
                    items = items[:limit]
                    metadata["remainingItemCount"] = 0
                return self.send_json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": metadata,
                                            "items": items})
        if template == "/api/v1/namespaces/{namespace}/pods/{name}":
            namespace, name = urllib.parse.unquote(parts[4]), urllib.parse.unquote(parts[6])
            if self.command == "GET":
                return self.send_json(200, cluster.get(namespace, name))
            if self.command == "DELETE":
                grace = one("gracePeriodSeconds")
                return self.send_json(200, cluster.delete(namespace, name, body or {},
                                                          int(grace) if grace is not None else None))
        if template == "/api/v1/namespaces/{namespace}/pods/{name}/log" and self.command == "GET":
            namespace, name = urllib.parse.unquote(parts[4]), urllib.parse.unquote(parts[6])
            return self.log(namespace, name, one("container"), one("follow") == "true", one("tailLines"),
                            one("limitBytes"))
        raise ApiError(405, "MethodNotAllowed", f"this contract server does not implement {self.command} {template}")

    # -- streams --------------------------------------------------------------------------------
    def watch(self, namespace, selector, resource_version, timeout_seconds):
        cluster = self.server.cluster
        timeout = int(timeout_seconds) if timeout_seconds is not None else 1800
        deadline = time.monotonic() + timeout
        with cluster.cond:
            if resource_version not in (None, "", "0"):
                since = int(resource_version)
                oldest = cluster.history[0][0] if cluster.history else cluster.version
                if since < oldest - 1:
                    pending = [("ERROR", status_object(410, "Expired", f"too old resource version: {since} "
                                                                       f"({oldest})"))]
                    cursor = None
                else:
                    pending = [(kind, obj) for rv, kind, ns, obj in cluster.history
                               if rv > since and ns == namespace and selector(obj)]
                    cursor = cluster.version
            else:
                pending = [("ADDED", obj) for obj in cluster.matching(namespace, selector)]
                cursor = cluster.version
        self.start_chunked("application/json")
        try:
            while True:
                for kind, obj in pending:
                    self.chunk((json.dumps({"type": kind, "object": obj}) + "\n").encode())
                if cursor is None:
                    break
                with cluster.cond:
                    if cluster.version == cursor:
                        cluster.cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                    pending = [(kind, obj) for rv, kind, ns, obj in cluster.history
                               if rv > cursor and ns == namespace and selector(obj)]
                    cursor = cluster.version
                if time.monotonic() >= deadline:
                    for kind, obj in pending:
                        self.chunk((json.dumps({"type": kind, "object": obj}) + "\n").encode())
                    break
                if not pending and self.client_gone():
                    self.close_connection = True
                    return
            self.end_chunked()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def log(self, namespace, name, container_name, follow, tail_lines, limit_bytes):
        cluster = self.server.cluster
        with cluster.cond:
            pod = cluster.get_locked(namespace, name)
            containers = [c["name"] for c in pod.obj["spec"]["containers"]]
            if container_name is None and len(containers) == 1:
                container_name = containers[0]
            if container_name not in containers:
                raise ApiError(400, "BadRequest", f"container {container_name} is not valid for pod {name}")
            if pod.proc is None:
                state = ((pod.obj["status"].get("containerStatuses") or [{}])[0].get("state") or {})
                waiting = state.get("waiting", {}).get("reason", "ContainerCreating")
                why = "trying and failing to pull image" if waiting in ("ErrImagePull", "ImagePullBackOff") else waiting
                raise ApiError(400, "BadRequest", f"container \"{container_name}\" in pod \"{name}\" is waiting to "
                                                  f"start: {why}")
            data = bytes(pod.log)
            sent = len(pod.log)
        if tail_lines is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail_lines):]) if int(tail_lines) > 0 else b""
        if limit_bytes is not None:
            data = data[:int(limit_bytes)]
        self.start_chunked("text/plain")
        try:
            self.chunk(data)
            while follow:
                with cluster.cond:
                    if len(pod.log) == sent and not pod.output_done:
                        cluster.cond.wait(0.5)
                    more = bytes(pod.log[sent:])
                    sent = len(pod.log)
                    done = pod.output_done and not more
                if more:
                    self.chunk(more)
                elif done:
                    break
                elif self.client_gone():
                    self.close_connection = True
                    return
            self.end_chunked()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contracts", default=default_contracts_dir())
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--workdir", help="where pods' root filesystems, the certificates and the token file go "
                                          "(default: a new temporary directory, removed at exit)")
    parser.add_argument("--token", default="contract-token")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--image-cmd", action="append", default=[],
                        help='IMAGE={"entrypoint": [...], "cmd": [...]} for images whose default command matters')
    args = parser.parse_args()

    document = os.path.join(args.contracts, "kubernetes-core-v1-openapi.json")
    if not os.path.exists(document):
        print(f"SKIPPED: {os.path.abspath(document)} is absent: without the official Kubernetes OpenAPI document "
              "the plugin's requests cannot be checked against the contract", flush=True)
        sys.exit(SKIP)

    contract = Contract(document)
    own_workdir = not args.workdir
    workdir = tempfile.mkdtemp(prefix="contract-kubernetes-") if own_workdir else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    token_file = os.path.join(workdir, "token")
    with open(token_file, "w") as f:
        f.write(args.token + "\n")
    image_commands = {}
    for item in args.image_cmd:
        image, _, spec = item.partition("=")
        image_commands[image] = json.loads(spec)
    cluster = Cluster(workdir, image_commands)
    paths = make_certificates(workdir, "contract-kubernetes", ("ca.crt", "server.crt", "server.key"))
    server = Server(("127.0.0.1", args.port), server_tls_context(paths), contract, cluster, args.token)
    port = server.server_address[1]

    def shutdown(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)

    ready = {"url": f"https://127.0.0.1:{port}", "port": port, "ca_file": paths["ca"], "token": args.token,
             "token_file": token_file, "workdir": workdir, "pid": os.getpid()}
    write_ready_file(args.ready_file, ready)
    print(f"contract kube-apiserver on {ready['url']} (CA {paths['ca']})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        with cluster.cond:
            pods = list(cluster.pods.values())
        for pod in pods:
            cluster.signal(pod, signal.SIGKILL)
        time.sleep(0.2)
        for pod in pods:
            cluster.cleanup_rootfs(pod)
        clean = True
        for directory, subdirectories, _ in os.walk(workdir):
            if any(os.path.ismount(os.path.join(directory, sub)) for sub in subdirectories):
                clean = False
        if clean:
            shutil.rmtree(workdir if own_workdir else os.path.join(workdir, "pods"), ignore_errors=True)
        violations = server.violations
        print(f"contract kube-apiserver: {len(server.requests)} requests, {len(violations)} contract violations",
              flush=True)
        for violation in violations:
            print(f"  {violation['method']} {violation['path']}: {violation['problem']}", flush=True)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
