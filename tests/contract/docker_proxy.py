#!/usr/bin/python3
"""A Docker Engine API proxy that holds every request to the API 1.41 contract, on real traffic.

It listens on a unix socket and forwards each request to the real engine (/var/run/docker.sock),
after checking it against ../shared/contracts/docker-engine-api-v1.41.yaml (Swagger 2.0) with
the checker the other contract servers use (openapi_contract.py): the path, after its /v1.41
prefix, must match a path template with that method (GET/HEAD /_ping and GET /version may go
without the prefix: clients ask them to learn the version); every query parameter must be
declared, of its declared type, `filters` a JSON map[string][]string naming only the filters
the operation lists; required headers present; the body of the declared media type and valid
against the `in: body` schema with every object schema closed (no unknown fields). A request
that breaks the contract is recorded as a violation and still forwarded, so that one run shows
all of them. Answers stream back as they come (followed logs, waits, pull progress): the
chunked framing is relayed chunk by chunk, client connections are kept alive, and a client that
hangs up mid-answer takes its engine connection with it (so the engine ends a follow or a wait).

Violations and requests, as tests/contract/run_kit.sh expects of a contract server:
  GET /__contract/violations -> {"violations": [...]}  on the ready file's "url" (loopback
  GET /__contract/requests   -> {"requests": [...]}    TCP) and on the proxy socket itself;
and each violation is appended, a line each, to the ready file's "violations_file".

Usage: docker_proxy.py [SOCKET] [--ready-file FILE] [--workdir DIR] [--spec FILE] [--upstream PATH]
SOCKET defaults to DIR/docker.sock. Once it listens it writes FILE (JSON, atomically): {"url",
"socket", "host": "unix://SOCKET", "violations_file", "workdir", "ca_file": "", "env": {}, "pid"}.
Without the contract it says why and exits 77 (ctest's SKIP_RETURN_CODE).
"""

import argparse
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
from openapi_contract import (SKIP, Contract, ContractHandler, ContractServer, default_contracts_dir,  # noqa: E402
                              write_ready_file)

API_VERSION = "1.41"
SPEC_NAME = f"docker-engine-api-v{API_VERSION}.yaml"
UNVERSIONED = ("/_ping", "/version")  # clients ask these before they know which version to speak
VERSIONED = re.compile(r"^/v([0-9]+\.[0-9]+)(/.*)$")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "expect", "content-length"}


class DockerContract(Contract):
    def path_parameter_pattern(self, template, name):
        # Image, distribution and plugin names carry slashes (the engine routes them as {name:.*}).
        if name == "name" and template.startswith(("/images/", "/distribution/", "/plugins/")):
            return ".+"
        return super().path_parameter_pattern(template, name)

    def query_value_problems(self, name, value, parameter):
        if name != "filters":
            return []
        try:
            filters = json.loads(value)
        except ValueError as e:
            return [f"not JSON ({e}); filters are a JSON map[string][]string"]
        if not isinstance(filters, dict) or not all(
                isinstance(values, list) and all(isinstance(v, str) for v in values) for values in filters.values()):
            return ["not a JSON map[string][]string"]
        known = re.findall(r"^\s*-\s*`([A-Za-z][\w.-]*)", parameter.get("description", ""), re.M)
        unknown = sorted(set(filters) - set(known)) if known else []
        return [f"filter {key!r} is not one this operation lists ({', '.join(known)})" for key in unknown]

    def check_docker_request(self, method, target, headers, body):
        """Problems with one request as the engine gets it (target: path and query)."""
        url = urllib.parse.urlsplit(target)
        path, problems = url.path, []
        versioned = VERSIONED.match(path)
        if versioned:
            version, path = versioned.groups()
            if version != API_VERSION:
                problems.append(f"the path asks for API {version}; the contract is {API_VERSION}")
        elif path not in UNVERSIONED:
            problems.append(f"the path has no /v{API_VERSION} prefix (only {' and '.join(UNVERSIONED)} may go "
                            f"without it)")
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        checked = self.check_request(method, path, pairs, headers.get("Content-Type"), body, headers)
        return checked, [f"{method} {path}: {p}" for p in problems] + [f"{checked.where}: {p}" for p in checked.problems]


# --------------------------------------------------------------------------- HTTP plumbing

class Headers(list):
    """The header lines as sent, (name, value) in order; get() ignores case."""

    def get(self, name, default=None):
        name = name.lower()
        return next((value for key, value in self if key.lower() == name), default)

    def tokens(self, name):
        return {t.strip().lower() for t in (self.get(name) or "").split(",") if t.strip()}


class ClientGone(Exception):
    pass


class ProtocolError(Exception):
    pass


class Reader:
    """A socket read with a buffer of our own, so that streaming never waits for more than the
    peer has sent. While `watch` holds the client's socket, a client that hangs up raises
    ClientGone (reading the engine's answer, the proxy would otherwise never notice)."""

    def __init__(self, sock):
        self.sock, self.buffer = sock, b""

    def fill(self, watch=None):
        while watch:
            readable, _, _ = select.select([self.sock, watch[0]], [], [])
            if self.sock in readable:
                break
            try:
                peeked = watch[0].recv(1, socket.MSG_PEEK)
            except OSError:
                peeked = b""
            if not peeked:
                raise ClientGone()
            watch.clear()  # it sent more (a pipelined request): stop watching
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def readline(self, watch=None, limit=1 << 16):
        while b"\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ProtocolError("a header line over 64 KiB")
            if not self.fill(watch):
                line, self.buffer = self.buffer, b""
                return line
        end = self.buffer.index(b"\n") + 1
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def read_some(self, limit, watch=None):
        if not self.buffer and not self.fill(watch):
            return b""
        data, self.buffer = self.buffer[:limit], self.buffer[limit:]
        return data

    def read_exact(self, size):
        data = b""
        while len(data) < size:
            more = self.read_some(size - len(data))
            if not more:
                raise ProtocolError("the connection closed inside a body")
            data += more
        return data

    def headers(self, watch=None):
        headers = Headers()
        while True:
            line = self.readline(watch).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                return headers
            if line[0] in " \t" and headers:  # an obsolete folded line
                headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))

    def chunked_body(self):
        body = b""
        while True:
            size = int(self.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += self.read_exact(size)
            self.readline()


class Proxy:
    def __init__(self, contract, listen, upstream):
        self.contract, self.listen_path, self.upstream = contract, listen, upstream
        self.lock = threading.Lock()
        self.violations, self.requests = [], []
        self.violations_file = None
        self.listener = None

    # -- bookkeeping -------------------------------------------------------------------------
    def record(self, method, target, body, problems):
        entry = {"method": method, "target": target}
        if body:
            try:
                entry["body"] = json.loads(body)
            except ValueError:
                entry["body"] = f"({len(body)} bytes, not JSON)"
        with self.lock:
            self.requests.append(entry)
            self.violations += problems
            if problems and self.violations_file:
                with open(self.violations_file, "a", encoding="utf-8") as f:
                    f.writelines(p.replace("\n", " ") + "\n" for p in problems)
        for problem in problems:
            sys.stderr.write(f"docker_proxy: VIOLATION {problem}\n")

    def control(self, method, path):
        """(status, JSON) for the /__contract/ endpoints."""
        with self.lock:
            if method == "GET" and path == "/__contract/violations":
                return 200, {"violations": list(self.violations)}
            if method == "GET" and path == "/__contract/requests":
                return 200, {"requests": list(self.requests)}
        return 404, {"message": f"no contract endpoint {method} {path}"}

    # -- serving -----------------------------------------------------------------------------
    def start(self):
        if os.path.exists(self.listen_path):
            os.unlink(self.listen_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.listen_path)
        self.listener.listen(64)
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def close(self):
        if self.listener is not None:
            self.listener.close()
            try:
                os.unlink(self.listen_path)
            except OSError:
                pass

    def serve(self, client):
        reader = Reader(client)
        try:
            while True:
                line = reader.readline()
                while line in (b"\r\n", b"\n"):
                    line = reader.readline()
                if not line:
                    return
                method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                headers = reader.headers()
                if "100-continue" in headers.tokens("Expect"):
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if "chunked" in headers.tokens("Transfer-Encoding"):
                    body = reader.chunked_body()
                else:
                    body = reader.read_exact(int(headers.get("Content-Length") or 0))
                wants_close = ("close" in headers.tokens("Connection") if version == "HTTP/1.1"
                               else "keep-alive" not in headers.tokens("Connection"))
                if target.startswith("/__contract/"):
                    status, value = self.control(method, urllib.parse.urlsplit(target).path)
                    data = json.dumps(value).encode()
                    client.sendall(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                                   f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                                   .encode() + data)
                else:
                    _, problems = self.contract.check_docker_request(method, target, headers, body)
                    self.record(method, target, body, problems)
                    if not self.forward(client, method, target, headers, body, wants_close):
                        return
                if wants_close:
                    return
        except (ClientGone, ProtocolError, ValueError, OSError):
            return
        finally:
            client.close()

    def forward(self, client, method, target, headers, body, wants_close):
        """Sends one request to the engine and streams its answer back. False: the client
        connection is done (closed, or the answer ran to the end of the connection)."""
        upgrade = "upgrade" in headers.tokens("Connection") and headers.get("Upgrade")
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in HOP_BY_HOP]
        if headers.get("Host") is None:
            lines.append("Host: docker")
        if body or headers.get("Content-Length") is not None or headers.get("Transfer-Encoding") is not None:
            lines.append(f"Content-Length: {len(body)}")
        lines += ["Connection: Upgrade", f"Upgrade: {upgrade}"] if upgrade else ["Connection: close"]
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                engine.connect(self.upstream)
                engine.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            except OSError as e:
                data = json.dumps({"message": f"docker_proxy: cannot reach the engine at {self.upstream}: {e}"})
                client.sendall(f"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
                               f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n{data}".encode())
                return False
            return self.relay(client, Reader(engine), method, wants_close)
        finally:
            engine.close()

    def relay(self, client, answer, method, wants_close):
        watch = [client]
        status_line = answer.readline(watch)
        if not status_line:
            raise ProtocolError("the engine closed without answering")
        status = int(status_line.split()[1])
        headers = answer.headers(watch)
        chunked = "chunked" in headers.tokens("Transfer-Encoding")
        length = headers.get("Content-Length")
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        to_the_end = status == 101 or not (no_body or chunked or length is not None)
        keep = not (wants_close or to_the_end)
        head = [status_line.decode("latin-1").rstrip("\r\n")]
        head += [f"{name}: {value}" for name, value in headers if name.lower() not in ("connection", "keep-alive")]
        if status == 101:
            head += ["Connection: Upgrade"]
        elif not keep:
            head += ["Connection: close"]
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if status == 101:
            self.tunnel(client, answer)
        elif chunked:
            while True:
                size_line = answer.readline(watch)
                if not size_line:
                    raise ProtocolError("the engine closed inside a chunked answer")
                client.sendall(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, then the blank line
                        line = answer.readline(watch)
                        client.sendall(line)
                        if line in (b"\r\n", b"\n", b""):
                            break
                    break
                self.copy(client, answer, size + 2, watch)  # the data and its CRLF
        elif length is not None and not no_body:
            self.copy(client, answer, int(length), watch)
        elif to_the_end:
            while data := answer.read_some(1 << 16, watch):
                client.sendall(data)
        return keep

    @staticmethod
    def copy(client, answer, size, watch):
        while size > 0:
            data = answer.read_some(min(size, 1 << 16), watch)
            if not data:
                raise ProtocolError("the engine closed inside an answer")
            client.sendall(data)
            size -= len(data)

    @staticmethod
    def tunnel(client, answer):
        """An upgraded connection (attach): bytes both ways until either side closes."""
        if answer.buffer:
            client.sendall(answer.buffer)
        engine = answer.sock
        while True:
            readable, _, _ = select.select([client, engine], [], [])
            for source in readable:
                data = source.recv(1 << 16)
                if not data:
                    return
                (engine if source is client else client).sendall(data)


class ControlHandler(ContractHandler):
    server_version = "docker-contract-proxy"

    def handle_any(self):
        self.send_json(*self.server.proxy.control(self.command, urllib.parse.urlsplit(self.path).path))


# --------------------------------------------------------------------------- start-up

def load_contract(spec):
    """The contract, or (None, why not) when it cannot be had here."""
    if not os.path.exists(spec):
        return None, (f"{os.path.abspath(spec)} is absent (../shared/contracts is not checked out here): without "
                      f"the Docker Engine API {API_VERSION} document the plugin's requests cannot be checked")
    try:
        return DockerContract(spec), None
    except ImportError as e:
        return None, f"{e}: install python3-jsonschema and python3-yaml"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("socket", nargs="?", help="the socket to listen on (default: WORKDIR/docker.sock)")
    parser.add_argument("--ready-file")
    parser.add_argument("--workdir")
    parser.add_argument("--spec", default=os.path.join(default_contracts_dir(), SPEC_NAME))
    parser.add_argument("--upstream", default="/var/run/docker.sock", help="the engine's socket")
    args = parser.parse_args()
    if not args.socket and not args.workdir:
        parser.error("give the socket to listen on, or --workdir")

    contract, why = load_contract(args.spec)
    if contract is None:
        print(f"docker_proxy: SKIPPED: {why}", flush=True)
        return SKIP
    workdir = os.path.abspath(args.workdir or os.path.dirname(os.path.abspath(args.socket)))
    os.makedirs(workdir, exist_ok=True)
    listen = os.path.abspath(args.socket or os.path.join(workdir, "docker.sock"))
    if not os.path.exists(args.upstream):
        print(f"docker_proxy: warning: the engine's socket {args.upstream} is absent", file=sys.stderr, flush=True)
    proxy = Proxy(contract, listen, args.upstream)
    proxy.violations_file = os.path.join(workdir, "violations.txt")
    open(proxy.violations_file, "w").close()
    proxy.start()
    control = ContractServer(("127.0.0.1", 0), ControlHandler)
    control.proxy = proxy

    def stop(*_):
        proxy.close()
        with proxy.lock:
            count, found = len(proxy.requests), list(proxy.violations)
        print(f"docker_proxy: {count} requests, {len(found)} contract violations", file=sys.stderr, flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = {"url": f"http://127.0.0.1:{control.server_address[1]}", "socket": listen, "host": f"unix://{listen}",
             "violations_file": proxy.violations_file, "workdir": workdir, "ca_file": "", "env": {},
             "pid": os.getpid()}
    if args.ready_file:
        write_ready_file(args.ready_file, ready)
    print(f"docker_proxy: unix://{listen} -> {args.upstream}, checked against {args.spec}", file=sys.stderr, flush=True)
    control.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
