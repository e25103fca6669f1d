#!/usr/bin/python3
"""Workloads through the proxy, against the same work done directly, side by side in one run.

1. Cold: POST /api/v1/workloads, then the first GET through the proxy, against creating,
   starting and asking the same hardened container directly on the Engine API (unix socket).
   Alternated, medians compared.
2. Warm: a small GET through /api/v1/workloads/{id}/proxy/ against Caddy's reverse_proxy to the
   same container, wrk with 64 then 8 keep-alive connections, alternated.
3. Memory: the kernel's RSS before and after holding 100 workloads.

The workload is bench/upstream.c, built static and imported as an image here. Needs Debian's
/usr/bin/python3 (PyJWT), wrk, caddy, cc and a running Docker engine (scripts/services docker). Usage: bench/workloads_proxy.py [BUILD_DIR] [SECONDS]
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import concurrent.futures

import jwt

BUILD = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else "build/default")
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
IMAGE = "synthorg-bench/upstream:latest"
COMMAND = ["/upstream", "8080"]
SECRET = "bench-secret-" + os.urandom(16).hex()
INSTANCE = f"bench{os.getpid()}"
PORT, CADDY_PORT = 29811, 29812  # below the ephemeral range, see bench/http_healthz.sh


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path="/var/run/docker.sock"):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def engine(method, path, body=None):
    connection = UnixConnection()
    connection.request(method, "/v1.41" + path, body=json.dumps(body) if body is not None else None,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return json.loads(data) if data else None


def token(user):
    now = int(time.time())
    return jwt.encode({"sub": user, "role": "viewer", "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


def call(method, path, user, host="127.0.0.1", port=PORT):
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request(method, path, headers={"Authorization": f"Bearer {token(user)}", "Content-Length": "0"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def first_answer(host, port, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            connection = http.client.HTTPConnection(host, port, timeout=2)
            connection.request("GET", "/")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("the direct container never answered")


def direct_cold(n):
    """The same spec the plugin sends: hardened, a published port on 127.0.0.1. No CPU limit on
    either side: the warm figures measure the proxies, not a half-core busybox."""
    spec = {"Image": IMAGE, "Cmd": COMMAND, "User": "65534:65534", "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"synthorg.instance": INSTANCE},
            "HostConfig": {"Memory": 512 << 20, "PidsLimit": 256,
                           "ReadonlyRootfs": True, "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"],
                           "Tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=64m"},
                           "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}
    started = time.monotonic()
    created = engine("POST", f"/containers/create?name=bench-direct-{INSTANCE}-{n}", spec)
    engine("POST", f"/containers/{created['Id']}/start")
    ports = engine("GET", f"/containers/{created['Id']}/json")["NetworkSettings"]["Ports"]["8080/tcp"]
    first_answer("127.0.0.1", int(ports[0]["HostPort"]))
    elapsed = time.monotonic() - started
    engine("DELETE", f"/containers/{created['Id']}?force=true")
    return elapsed


def proxied_cold(n):
    user = f"cold-{n}"
    started = time.monotonic()
    status, body = call("POST", "/api/v1/workloads", user)
    assert status == 201, body
    workload = json.loads(body)
    status, body = call("GET", f"/api/v1/workloads/{workload['id']}/proxy/", user)
    assert status == 200, body
    elapsed = time.monotonic() - started
    call("DELETE", f"/api/v1/workloads/{workload['id']}", user)
    return elapsed


def wrk(url, headers, work, name, connections=64):
    args = ["wrk", "-t2", f"-c{connections}", f"-d{SECONDS}s", "--latency", url]
    for header in headers:
        args[1:1] = ["-H", header]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    (work / f"{name}.txt").write_text(out) if hasattr(work, "write_text") else None
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    unit = "us" if p99.endswith("us") else "ms" if p99.endswith("ms") else "s"
    errors = [line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
    return rps, float(p99[: -len(unit)]) * scale[unit], errors


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def build_image(work):
    root = os.path.join(work, "image")
    os.makedirs(root)
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "upstream.c")
    subprocess.run(["cc", "-O2", "-static", "-pthread", "-o", os.path.join(root, "upstream"), source], check=True)
    tar = subprocess.Popen(["tar", "-C", root, "--owner=0", "--group=0", "-cf", "-", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "--change", 'CMD ["/upstream", "8080"]', "-", IMAGE], stdin=tar.stdout,
                   check=True, capture_output=True)
    tar.wait()


def main():
    work = tempfile.mkdtemp()
    build_image(work)
    config = os.path.join(work, "company.yaml")
    with open(config, "w") as out:
        out.write(f"""company_name: Bench
kernel:
  blocking_threads: 16
select: {{store: store-sqlite, orchestrator: orchestrator-docker}}
plugins:
  http-api:
    config: {{address: 127.0.0.1, port: {PORT}}}
  store-sqlite:
    config: {{path: {work}/bench.db}}
  auth: {{config: {{accept_external_tokens: true}}}}  # tokens minted here for made-up users
  orchestrator-docker:
    config: {{pull_missing: false}}
  workloads:
    config: {{image: "{IMAGE}", command: {json.dumps(COMMAND)}, port: 8080, instance: {INSTANCE},
             idle_timeout: 1h, max_per_host: 120, stop_grace: 0s, cpu_limit: 0}}
""")
    env = dict(os.environ, SYNTHORG_JWT_SECRET=SECRET, SYNTHORG_HTTP_ACCESS_LOG="false", SYNTHORG_LOG_LEVEL="warn",
               SYNTHORG_WORKLOADS_REQUESTS_PER_MINUTE="1000000", SYNTHORG_WORKLOADS_BURST_SIZE="1000000")
    kernel = subprocess.Popen([f"{BUILD}/bin/synthorg", "--config", config, "serve"], env=env)
    caddy = None
    try:
        for _ in range(100):
            try:
                if call("GET", "/api/v1/healthz", "x")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)

        print("## Workloads: cold start through the proxy against the Engine API directly")
        direct_cold(-1), proxied_cold(-1)  # warm both paths (image cache, connection pools)
        direct, proxied = [], []
        for n in range(7):
            direct.append(direct_cold(n))
            proxied.append(proxied_cold(n))
        d, p = statistics.median(direct) * 1000, statistics.median(proxied) * 1000
        print("| path | median of 7 | |\n|---|---:|---|")
        print(f"| Engine API: create + start + inspect + first HTTP answer | {d:.0f} ms | |")
        print(f"| synthorg: POST /api/v1/workloads + first proxied GET | {p:.0f} ms | ratio {p / d:.2f}x "
              f"(target <= 1.20x: {'met' if p / d <= 1.2 else 'NOT MET'}) |")

        print("\n## Workloads: warm proxied GET against Caddy reverse_proxy to the same container (wrk -c64)")
        status, body = call("POST", "/api/v1/workloads", "warm")
        workload = json.loads(body)
        host_port = workload["endpoint"]["port"]
        caddyfile = os.path.join(work, "Caddyfile")
        with open(caddyfile, "w") as out:
            out.write(f"{{\n  admin off\n  auto_https off\n}}\nhttp://127.0.0.1:{CADDY_PORT} {{\n"
                      f"  reverse_proxy 127.0.0.1:{host_port}\n}}\n")
        caddy = subprocess.Popen(["caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=dict(os.environ, HOME=work, XDG_DATA_HOME=work, XDG_CONFIG_HOME=work))
        for _ in range(50):
            try:
                http.client.HTTPConnection("127.0.0.1", CADDY_PORT, timeout=1).request("GET", "/")
                break
            except OSError:
                time.sleep(0.1)
        ours = f"http://127.0.0.1:{PORT}/api/v1/workloads/{workload['id']}/proxy/index.html"
        theirs = f"http://127.0.0.1:{CADDY_PORT}/index.html"
        auth = [f"Authorization: Bearer {token('warm')}"]
        wrk(ours, auth, work, "warmup-ours")
        wrk(theirs, [], work, "warmup-caddy")
        o_rps, o_p99, o_err = wrk(ours, auth, work, "ours")
        c_rps, c_p99, c_err = wrk(theirs, [], work, "caddy")
        o8_rps, o8_p99, _ = wrk(ours, auth, work, "ours8", 8)
        c8_rps, c8_p99, _ = wrk(theirs, [], work, "caddy8", 8)
        caddy_version = subprocess.run(["caddy", "version"], capture_output=True, text=True).stdout.split()[0]
        print("| path | requests/s | p99 | errors |\n|---|---:|---:|---|")
        print(f"| synthorg proxy | {o_rps:.0f} | {o_p99:.2f} ms | {'; '.join(o_err) or 'none'} |")
        print(f"| Caddy {caddy_version} reverse_proxy | {c_rps:.0f} | {c_p99:.2f} ms | {'; '.join(c_err) or 'none'} |")
        print(f"| synthorg proxy, 8 connections | {o8_rps:.0f} | {o8_p99:.2f} ms | |")
        print(f"| Caddy reverse_proxy, 8 connections | {c8_rps:.0f} | {c8_p99:.2f} ms | |")
        print(f"ratio synthorg/Caddy: requests/s {o_rps / c_rps:.2f}x at 64 connections, {o8_rps / c8_rps:.2f}x at 8 "
              f"(target >= 1.00x: {'met' if o_rps >= c_rps and o8_rps >= c8_rps else 'NOT MET'}); p99 "
              f"{o_p99:.2f} ms at 64, {o8_p99:.2f} ms at 8 (target < 5 ms: {'met' if o8_p99 < 5 else 'NOT MET'} at 8, "
              f"{'met' if o_p99 < 5 else 'NOT MET'} at 64)")

        print("\n## Workloads: 100 held by one kernel")
        before = rss_kib(kernel.pid)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda n: call("POST", "/api/v1/workloads", f"many-{n}")[0], range(100)))
        elapsed = time.monotonic() - started
        after = rss_kib(kernel.pid)
        ok = statuses.count(201)
        print(f"{ok} of 100 started in {elapsed:.1f} s (8 at a time); kernel RSS {before / 1024:.1f} MiB -> "
              f"{after / 1024:.1f} MiB: {(after - before) / max(ok, 1):.0f} KiB per workload")
        hits = sum(call("GET", f"/api/v1/workloads/me/proxy/", f"many-{n}")[0] == 200 for n in range(100))
        print(f"each answers through the proxy: {hits} of 100")
    finally:
        if caddy:
            caddy.terminate()
        kernel.terminate()
        kernel.wait(30)
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=synthorg.instance={INSTANCE}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


if __name__ == "__main__":
    main()
