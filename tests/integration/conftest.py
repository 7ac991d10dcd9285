"""Fixtures that run the real `bastion` binary on 127.0.0.1 with real clients.

Every server binds to 127.0.0.1 with an ephemeral port and is stopped (and
waited for) by the fixture that started it.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASTION = os.environ.get("BASTION_BIN", str(ROOT / "build" / "release" / "bastion"))
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


def run(cmd, check=True, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=kw.pop("env", DCMTK_ENV), **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (cmd, r.returncode, r.stdout, r.stderr))
    return r


class Node:
    def __init__(self, ae, key, cert):
        self.ae, self.key, self.cert = ae, str(key), str(cert)


class Server:
    """A Bastion installation in a temp directory, with helpers for clients."""

    def __init__(self, base, extra_config="", limits=None):
        self.base = Path(base)
        run([BASTION, "init", str(self.base), "--port", "0"])
        self.config = self.base / "bastion.toml"
        self.port_file = self.base / "port"
        text = self.config.read_text()
        text = text.replace("[tls]", "port_file = '%s'\n\n[tls]" % self.port_file, 1)
        for k, v in (limits or {}).items():
            text = "\n".join(("%s = %s" % (k, v)) if line.startswith(k + " =") else line for line in text.splitlines())
        self.config.write_text(text + "\n" + extra_config)
        self.ca = str(self.base / "pki" / "ca.crt")
        self.data = self.base / "data"
        self.proc = None
        self.port = None
        self.plain_port = None
        self.nodes = {}

    def bastion(self, *args, check=True):
        # Commands with subcommands take --config after the subcommand ("node add --config ...").
        nested = args[0] in ("node", "user", "token", "role", "grant", "break-glass", "audit")
        return run([BASTION, *args[:1], *args[1:2], "--config", str(self.config), *args[2:]] if nested
                   else [BASTION, args[0], "--config", str(self.config), *args[1:]], check=check)

    def audit_events(self, *filters):
        """The audit trail as dicts (bastion audit export --format json); PHI decrypted."""
        out = self.bastion("audit", "export", "--format", "json", "--limit", "100000000", *filters).stdout
        return [json.loads(line) for line in out.splitlines()]

    def audit_text(self):
        return self.bastion("audit", "export", "--format", "json", "--limit", "100000000").stdout

    def issue(self, name, server=False):
        key, cert = self.base / ("%s.key" % name), self.base / ("%s.crt" % name)
        if not cert.exists():
            run([BASTION, "node", "issue-cert", "--config", str(self.config), "--name", name,
                 "--out-key", str(key), "--out-cert", str(cert)] + (["--server"] if server else []))
        return key, cert

    def add_node(self, ae, perms="echo,store,find,get,move", cidr="127.0.0.1/32", cert_of=None, move_port=None,
                 site="main", role=None, scope="site"):
        key, cert = self.issue(cert_of or ae, server=bool(move_port))
        args = ["node", "add", "--ae", ae, "--cidr", cidr, "--cert", str(cert), "--site", site, "--scope", scope]
        args += ["--role", role] if role else ["--perm", perms]
        if move_port:
            args += ["--move-host", "127.0.0.1", "--move-port", str(move_port)]
        self.bastion(*args)
        node = Node(ae, key, cert)
        self.nodes[ae] = node
        return node

    def start(self):
        if self.port_file.exists():
            self.port_file.unlink()
        self.log = open(self.base / "serve.log", "ab")
        self.proc = subprocess.Popen([BASTION, "serve", "--config", str(self.config)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("bastion serve did not start: " + (self.base / "serve.log").read_text())
            time.sleep(0.05)
        ports = dict(line.split("=") for line in self.port_file.read_text().split())
        self.port, self.plain_port = int(ports["tls"]), int(ports["plain"])
        self.https_port = int(ports.get("https", 0))
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tls_args(self, node):
        return ["+tls", node.key, node.cert, "+cf", self.ca]

    def dcmtk(self, tool, node, *args, check=True, called="BASTION", port=None, timeout=120):
        cmd = [tool, "-aet", node.ae, "-aec", called, *self.tls_args(node), "127.0.0.1", str(port or self.port), *args]
        return run(cmd, check=check, timeout=timeout)

    def tls(self, node):
        return {"ca": self.ca, "cert": node.cert, "key": node.key}


def pytest_configure(config):
    # The sanitizer run selects a subset (BASTION_INTEGRATION_SUBSET is a -k expression).
    subset = os.environ.get("BASTION_INTEGRATION_SUBSET")
    if subset and not config.option.keyword:
        config.option.keyword = subset


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "bastion")
    yield s
    s.stop()


@pytest.fixture
def started(server):
    server.add_node("MOD1")
    server.start()
    return server


ALLOWED_TLS12 = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                 "ECDHE-RSA-AES256-GCM-SHA384"}
ALLOWED_TLS13 = {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}


def assert_tls_policy(sslscan_output):
    """sslscan saw TLS 1.2 and 1.3 only, the allowed suites only, 1.3 preferred. Returns the accepted suites."""
    import re
    out = sslscan_output
    protocols = dict(re.findall(r"^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)", out, re.M))
    assert protocols.get("TLSv1.2") == "enabled" and protocols.get("TLSv1.3") == "enabled", out
    for p in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
        assert protocols.get(p, "disabled") == "disabled", out
    accepted = re.findall(r"^(?:Preferred|Accepted)\s+(TLSv1\.[0-3])\s+\d+ bits\s+(\S+)", out, re.M)
    assert accepted and accepted[0][0] == "TLSv1.3", out  # preferred first
    for proto, suite in accepted:
        assert suite in (ALLOWED_TLS13 if proto == "TLSv1.3" else ALLOWED_TLS12), (proto, suite)
    return accepted
