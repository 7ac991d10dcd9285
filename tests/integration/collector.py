"""A private rsyslogd (Debian rsyslog + rsyslog-gnutls) on 127.0.0.1 as an RFC 5425
collector with mutual TLS, for the audit export tests. Its own PKI (made with the
openssl CLI): a CA, the collector's certificate, a client certificate for Bastion,
and a rogue CA that signed nothing the collector trusts."""
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import run

HEADER = re.compile(r'^<(8[45])>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(?:Z|[+-]\d\d:\d\d)) (\S+) bastion (\d+) '
                    r'IHE\+RFC-3881 \[meta sequenceId="(\d+)"\] \ufeff(<AuditMessage>.*</AuditMessage>)$')


def _ca(d, name):
    run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(d / (name + ".key")), "-out", str(d / (name + ".pem")), "-days", "30", "-subj", "/CN=" + name,
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])


def _leaf(d, name, ca, cn, usage, san):
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(d / (name + ".key")), "-out", str(d / (name + ".csr")), "-subj", "/CN=" + cn])
    (d / (name + ".ext")).write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                      "extendedKeyUsage=%s\nsubjectAltName=%s\n" % (usage, san))
    run(["openssl", "x509", "-req", "-in", str(d / (name + ".csr")), "-CA", str(d / (ca + ".pem")), "-CAkey",
         str(d / (ca + ".key")), "-CAcreateserial", "-out", str(d / (name + ".pem")), "-days", "30", "-extfile",
         str(d / (name + ".ext"))])
    (d / (name + ".key")).chmod(0o600)


class Collector:
    def __init__(self, base):
        self.dir = Path(base)
        (self.dir / "work").mkdir(parents=True, exist_ok=True)
        _ca(self.dir, "ca")
        _ca(self.dir, "rogueca")
        _leaf(self.dir, "server", "ca", "127.0.0.1", "serverAuth", "IP:127.0.0.1,DNS:localhost")
        _leaf(self.dir, "client", "ca", "bastion", "clientAuth", "DNS:bastion")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.out = self.dir / "messages.log"
        self.proc = None
        d = self.dir
        (d / "rsyslog.conf").write_text(f'''global(
  workDirectory="{d}/work"
  maxMessageSize="1m"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{d}/ca.pem"
  defaultNetstreamDriverCertFile="{d}/server.pem"
  defaultNetstreamDriverKeyFile="{d}/server.key"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid"
       maxFrameSize="1100000")
template(name="RawLine" type="string" string="%rawmsg:::drop-last-lf%\\n")
input(type="imtcp" address="127.0.0.1" port="{self.port}" ruleset="collect")
ruleset(name="collect") {{
  action(type="omfile" file="{self.out}" template="RawLine" asyncWriting="off" flushOnTXEnd="on")
}}
''')

    def config(self, trusted=True, alert_backlog=100000):
        """The [[audit.syslog]] table that points Bastion at this collector."""
        return ("\n[[audit.syslog]]\nhost = '127.0.0.1'\nport = %d\nca = '%s'\ncert = '%s'\nkey = '%s'\n"
                "alert_backlog = %d\n" % (self.port, self.dir / ("ca.pem" if trusted else "rogueca.pem"),
                                          self.dir / "client.pem", self.dir / "client.key", alert_backlog))

    def start(self):
        self.log = open(self.dir / "rsyslogd.log", "ab")
        self.proc = subprocess.Popen(["rsyslogd", "-n", "-f", str(self.dir / "rsyslog.conf"), "-i",
                                      str(self.dir / "work" / "rsyslogd.pid")],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("rsyslogd did not start: " + (self.dir / "rsyslogd.log").read_text())
                time.sleep(0.02)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        self.proc = None

    def lines(self):
        return self.out.read_text(errors="replace").splitlines() if self.out.exists() else []

    def messages(self):
        """[(pri, timestamp, host, pid, sequenceId, xml)] for every line; AssertionError on a malformed one."""
        out = []
        for line in self.lines():
            m = HEADER.match(line)
            assert m, "not an RFC 5424 IHE audit message: %r" % line[:300]
            out.append((int(m.group(1)), m.group(2), m.group(3), int(m.group(4)), int(m.group(5)), m.group(6)))
        return out

    def wait_for(self, seqs, timeout=60):
        """Waits until every position in `seqs` has arrived; returns the messages."""
        deadline = time.time() + timeout
        while True:
            got = self.messages()
            if set(seqs) <= {m[4] for m in got}:
                return got
            if time.time() > deadline:
                missing = sorted(set(seqs) - {m[4] for m in got})
                raise AssertionError("collector is missing %d record(s), e.g. %s" % (len(missing), missing[:10]))
            time.sleep(0.2)
