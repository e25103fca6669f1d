#!/usr/bin/python3
"""Our JWTs against an independent implementation: Debian's python3-jwt (PyJWT).
A real `synthorg serve` runs http-api, store-sqlite and auth; a token it issues must decode in
PyJWT with the shared secret, and tokens PyJWT makes (with and without a role) must be accepted
by GET /api/v1/auth/me, while ones signed otherwise are refused.
Usage: jwt_interop_test.py SYNTHORG_BINARY PLUGIN_DIR"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import jwt

synthorg, plugin_dir = sys.argv[1], sys.argv[2]
secret = "interop-" + "k" * 56  # 64 characters, like a `synthorg keygen jwt` value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
base = f"http://127.0.0.1:{port}"


def call(method, path, body=None, token=None, cookie=None):
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    if cookie is not None:
        headers["Cookie"] = "synthorg_session=" + cookie
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


work = tempfile.mkdtemp(prefix="synthorg-jwt-interop-")
config = os.path.join(work, "company.yaml")
with open(config, "w") as f:
    f.write(f"""company_name: Interop
kernel:
  plugin_dirs: [{plugin_dir}]
plugins:
  http-api:
    config: {{address: 127.0.0.1, port: {port}}}
  store-sqlite:
    config: {{path: {work}/s.db}}
  auth:
    # PyJWT plays another issuer (PondPilot's auth): its subs are no users of ours.
    config: {{argon2_memory_kib: 4096, argon2_iterations: 1, accept_external_tokens: true, external_max_role: admin}}
""")
env = dict(os.environ, SYNTHORG_JWT_SECRET=secret, SYNTHORG_HTTP_ACCESS_LOG="false")
log = open(os.path.join(work, "serve.log"), "w+")
server = subprocess.Popen([synthorg, "--config", config, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
try:
    # http-api listens before auth has mounted its routes: wait for /me to ask for a sign-in.
    for _ in range(200):
        try:
            if call("GET", "/api/v1/auth/me")[0] == 401:
                break
        except OSError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the server did not come up")
    assert server.poll() is None, "the server exited"

    status, body, _ = call("POST", "/api/v1/auth/setup", {"username": "admin", "password": "interop password 1"})
    assert status == 201, (status, body)
    status, body, headers = call("POST", "/api/v1/auth/login", {"username": "admin", "password": "interop password 1"})
    assert status == 200, (status, body)
    ours = body["token"]

    # (a) Ours decodes in PyJWT with the secret, exp and iat checked by PyJWT itself.
    assert jwt.get_unverified_header(ours) == {"alg": "HS256", "typ": "JWT"}, jwt.get_unverified_header(ours)
    claims = jwt.decode(ours, secret, algorithms=["HS256"], options={"require": ["sub", "iat", "exp", "jti"]})
    assert claims["role"] == "admin" and claims["sub"] == body["user"]["id"], claims
    assert claims["exp"] - claims["iat"] == 12 * 3600, claims
    assert abs(claims["iat"] - time.time()) < 60, claims
    try:
        jwt.decode(ours, secret + "x", algorithms=["HS256"])
        raise AssertionError("PyJWT accepted our token under another secret")
    except jwt.InvalidSignatureError:
        pass
    assert "synthorg_session=" + ours in headers["Set-Cookie"], headers["Set-Cookie"]

    # (b) PyJWT's tokens work with us: without a role (a viewer), with one, by bearer and by cookie.
    now = int(time.time())
    plain = jwt.encode({"sub": "pondpilot-42", "iat": now, "exp": now + 600}, secret, algorithm="HS256")
    for how in ({"token": plain}, {"cookie": plain}):
        status, me, _ = call("GET", "/api/v1/auth/me", **how)
        assert status == 200, (how, status, me)
        assert me["id"] == "pondpilot-42" and me["role"] == "viewer" and me["username"] is None, me
    with_role = jwt.encode({"sub": "pondpilot-43", "role": "operator", "exp": now + 600}, secret, algorithm="HS256")
    status, me, _ = call("GET", "/api/v1/auth/me", token=with_role)
    assert status == 200 and me["role"] == "operator", (status, me)
    # PyJWT may put the claims in any order and spacing; only the bytes signed matter.
    spaced = jwt.encode({"exp": now + 600, "sub": "pondpilot-44", "nbf": now - 5, "extra": {"a": [1, 2]}}, secret,
                        algorithm="HS256", headers={"kid": "k1"})
    assert call("GET", "/api/v1/auth/me", token=spaced)[0] == 200

    # (c) and the ones we must refuse.
    refused = {
        "another secret": jwt.encode({"sub": "x", "exp": now + 600}, "not-the-secret-" + "z" * 40, algorithm="HS256"),
        "HS512 (not configured)": jwt.encode({"sub": "x", "exp": now + 600}, secret, algorithm="HS512"),
        "HS384 (not configured)": jwt.encode({"sub": "x", "exp": now + 600}, secret, algorithm="HS384"),
        "expired": jwt.encode({"sub": "x", "exp": now - 3600}, secret, algorithm="HS256"),
        "not yet valid": jwt.encode({"sub": "x", "exp": now + 7200, "nbf": now + 3600}, secret, algorithm="HS256"),
        "no exp": jwt.encode({"sub": "x"}, secret, algorithm="HS256"),
        "no sub": jwt.encode({"exp": now + 600}, secret, algorithm="HS256"),
        "alg none": jwt.encode({"sub": "x", "role": "admin", "exp": now + 600}, None, algorithm="none"),
    }
    for why, token in refused.items():
        status, problem, _ = call("GET", "/api/v1/auth/me", token=token)
        assert status == 401, (why, status, problem)

    # (d) A PyJWT token logged out stays out.
    assert call("POST", "/api/v1/auth/logout", token=plain)[0] == 204
    assert call("GET", "/api/v1/auth/me", token=plain)[0] == 401
    print("jwt interop: ok (PyJWT %s)" % jwt.__version__)
finally:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
    if server.returncode not in (0, -15) or sys.exc_info()[0] is not None:
        log.seek(0)
        sys.stderr.write(log.read()[-4000:])
    log.close()
    shutil.rmtree(work, ignore_errors=True)
