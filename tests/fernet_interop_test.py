#!/usr/bin/python3
"""Our Fernet and keygen against an independent implementation: Debian's python3-cryptography.
Tokens must cross both ways, keys from `synthorg keygen fernet` must be accepted by Python,
and `synthorg keygen jwt` must be 64 random bytes in unpadded base64url.
Usage: fernet_interop_test.py SYNTHORG_BINARY FERNET_TOOL"""
import base64
import re
import subprocess
import sys
import time

from cryptography.fernet import Fernet, InvalidToken

synthorg, tool = sys.argv[1], sys.argv[2]


def run(args, data=b""):
    return subprocess.run(args, input=data, capture_output=True, timeout=30)


def ours(mode, key, data, *extra):
    result = run([tool, mode, key, *extra], data)
    assert result.returncode == 0, (mode, result.returncode, result.stderr.decode())
    return result.stdout


def keygen(kind):
    result = run([synthorg, "keygen", kind])
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr
    text = result.stdout.decode("ascii")
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    return text[:-1]


messages = [b"", b"hello", b"x" * 16, bytes(range(256)), "d\u00e9j\u00e0 vu \u2713".encode(), b"\0" * 100_000]

# Keys from `synthorg keygen fernet` and from Python, each used by both sides.
our_key = keygen("fernet")
assert len(our_key) == 44 and our_key.endswith("="), our_key
assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", our_key), our_key
assert len(base64.urlsafe_b64decode(our_key)) == 32
assert keygen("fernet") != our_key, "two runs must give different keys"
python_key = Fernet.generate_key().decode()

for key in (our_key, python_key):
    python = Fernet(key.encode())
    for message in messages:
        # (a) Python encrypts, we decrypt (with and without a TTL).
        token = python.encrypt(message)
        assert ours("decrypt", key, token) == message, (key, message[:20])
        assert ours("decrypt", key, token + b"\n", "60") == message
        # (b) we encrypt, Python decrypts, and checks our timestamp is now.
        token = ours("encrypt", key, message)
        assert re.fullmatch(rb"[A-Za-z0-9_-]+={0,2}", token) and len(token) % 4 == 0, token[:40]
        assert python.decrypt(token, ttl=60) == message, (key, message[:20])
        assert abs(python.extract_timestamp(token) - time.time()) < 30

# A token made under another key is refused by both, with our "invalid token" message.
other = Fernet.generate_key().decode()
result = run([tool, "decrypt", our_key], Fernet(other.encode()).encrypt(b"secret"))
assert result.returncode == 1 and b"invalid token" in result.stderr, result
assert our_key.encode() not in result.stderr
try:
    Fernet(other.encode()).decrypt(ours("encrypt", our_key, b"secret"))
    raise AssertionError("Python accepted a token under the wrong key")
except InvalidToken:
    pass

# An expired Python token is refused when we are given a TTL.
old = Fernet(our_key.encode()).encrypt_at_time(b"old", int(time.time()) - 3600)
result = run([tool, "decrypt", our_key, "60"], old)
assert result.returncode == 1 and b"invalid token: expired" in result.stderr, result

# keygen jwt: 64 random bytes, base64url without padding (86 characters).
secret = keygen("jwt")
assert re.fullmatch(r"[A-Za-z0-9_-]{86}", secret), secret
assert len(base64.urlsafe_b64decode(secret + "==")) == 64
assert keygen("jwt") != secret

print("fernet interop: Python cryptography and synthorg agree both ways; keygen output accepted")
