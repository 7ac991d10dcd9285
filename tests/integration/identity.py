"""Accounts, enrolment, API tokens, JWTs and the DCMTK-based SCU, for tests."""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import time
from pathlib import Path

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import BASTION, run

SCU = os.environ.get("BASTION_SCU", str(Path(BASTION).parent / "tests" / "bastion_scu"))
PASSWORD = "tulip river lantern 42"
ISSUER, AUDIENCE = "https://idp.hospital.test/realms/radiology", "bastion"

# Cheap hashing and short lock-outs so that tests run fast; production keeps the defaults.
AUTH_CONFIG = """
[auth]
argon2_ops = 1
argon2_mem_kib = 1024
lock_after = 5
lock_first_s = 2
lock_max_s = 4
source_failures = 1000
"""


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Idp:
    """A stand-in for the hospital's identity provider: an EC key, its JWKS, signed tokens."""

    def __init__(self, folder):
        self.key = ec.generate_private_key(ec.SECP256R1())
        nums = self.key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "kid": "idp-1", "use": "sig", "alg": "ES256",
               "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}
        self.jwks = Path(folder) / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": [jwk]}))
        self.public_pem = self.key.public_key().public_bytes(
            encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo)

    def config(self):
        return "\n[auth.oidc]\njwks = '%s'\nissuer = '%s'\naudiences = ['%s']\n" % (self.jwks, ISSUER, AUDIENCE)

    def claims(self, user, **over):
        now = int(time.time())
        c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "id-" + user, "preferred_username": user, "iat": now,
             "nbf": now - 5, "exp": now + 300, "roles": ["radiologist"], "site": "north"}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def token(self, user, headers=None, **over):
        return pyjwt.encode(self.claims(user, **over), self.key, algorithm="ES256",
                            headers={"kid": "idp-1", **(headers or {})})

    def unsigned(self, user):
        head = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "idp-1"}).encode())
        return head + "." + b64url(json.dumps(self.claims(user)).encode()) + "."

    def hs256_with_public_key(self, user):
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "idp-1"}).encode())
        body = b64url(json.dumps(self.claims(user)).encode())
        sig = hmac.new(self.public_pem, (head + "." + body).encode(), hashlib.sha256).digest()
        return head + "." + body + "." + b64url(sig)


def totp(secret):
    return run(["oathtool", "--totp", "-b", secret]).stdout.strip()


def add_user(server, name, roles, site="north", physician=None, groups=()):
    args = ["user", "add", name, *sum((["--role", r] for r in roles), []), "--site", site]
    if physician:
        args += ["--physician-name", physician]
    for g in groups:
        args += ["--group", g]
    out = server.bastion(*args).stdout
    return re.search(r"one-time password: (\S+)", out).group(1)


def enrol(server, name, otp, password=PASSWORD):
    """Runs `bastion user enrol` as the user would: returns (TOTP secret, recovery codes)."""
    p = subprocess.Popen([BASTION, "user", "enrol", name, "--config", str(server.config)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write("%s\n%s\n%s\n" % (otp, password, password))
    p.stdin.flush()
    secret = None
    for line in p.stdout:
        if line.startswith("secret: "):
            secret = line.split()[1]
            break
    assert secret, p.stderr.read()
    out, err = p.communicate(totp(secret) + "\n", timeout=60)
    assert p.returncode == 0, out + err
    return secret, re.findall(r"recovery: (\S+)", out)


def token(server, name, perms):
    out = server.bastion("token", "create", name, "--name", "tests", "--perm", perms).stdout
    return re.search(r"token: (\S+)", out).group(1)


def scu(server, node, *args, user=None, password=None, jwt_file=None, pos=False, port=None, tls=True):
    cmd = [SCU, "--host", "127.0.0.1", "--port", str(port or server.port), "--aet", node.ae, "--aec", "BASTION",
           "--timeout", "20"]
    if tls:
        cmd += ["--tls", "--ca", server.ca, "--cert", node.cert, "--key", node.key]
    if user:
        cmd += ["--user", user]
    if password is not None:
        cmd += ["--password", password]
    if jwt_file:
        cmd += ["--jwt", str(jwt_file)]
    if pos:
        cmd += ["--pos-response"]
    return run(cmd + list(args), check=False, timeout=60)


def status_of(r):
    m = re.search(r"^STATUS (0x[0-9A-Fa-f]{4})(?: completed=(-?\d+))?", r.stdout, re.M)
    return (m.group(1).upper().replace("0X", "0x"), int(m.group(2)) if m.group(2) else None) if m else (None, None)


def matches(r):
    return [json.loads(line[6:]) for line in r.stdout.splitlines() if line.startswith("MATCH ")]
