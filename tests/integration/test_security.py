"""What must be refused, and what must never reach the disk."""
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import Server, assert_tls_policy, run
from datasets import PREFIX, instance, write_multi_patient_set
from dul import Association
from hostile import CT, cases
import packs



def echo(server, node, **kw):
    return server.dcmtk("echoscu", node, check=False, **kw)


def test_no_plaintext_listener_by_default_and_only_the_tls_port(started):
    assert started.plain_port == 0
    out = run(["ss", "-ltnpH"]).stdout
    mine = [l for l in out.splitlines() if "pid=%d," % started.proc.pid in l]
    assert len(mine) == 1 and ("127.0.0.1:%d" % started.port) in mine[0]


def test_refuses_plain_tcp_on_the_tls_port(started):
    r = run(["echoscu", "-aet", "MOD1", "-aec", "BASTION", "127.0.0.1", str(started.port)], check=False)
    assert r.returncode != 0
    assert echo(started, started.nodes["MOD1"]).returncode == 0  # still serving


def test_refuses_tls_without_client_certificate(started):
    r = run(["echoscu", "-aet", "MOD1", "-aec", "BASTION", "+tla", "+cf", started.ca, "127.0.0.1",
             str(started.port)], check=False)
    assert r.returncode != 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(started.ca)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", started.port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw) as s:
                s.sendall(b"\x01\x00\x00\x00\x00\x04abcd")
                assert s.recv(10) == b""  # TLS 1.3: the alert arrives on first read
                raise ConnectionError("closed")


def test_refuses_untrusted_certificate(started, tmp_path):
    key, crt = tmp_path / "evil.key", tmp_path / "evil.crt"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=MOD1"])
    r = run(["echoscu", "-aet", "MOD1", "-aec", "BASTION", "+tls", str(key), str(crt), "-pw", "+cf", started.ca,
             "127.0.0.1", str(started.port)], check=False)
    assert r.returncode != 0


def test_refuses_tls_1_1_and_prefers_1_3(started):
    node = started.nodes["MOD1"]
    base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % started.port, "-cert", node.cert, "-key", node.key,
            "-CAfile", started.ca]
    old = run(base + ["-tls1_1"], check=False, input="")
    assert old.returncode != 0
    assert "Cipher    : 0000" in old.stdout or "no protocols available" in old.stderr, old.stdout + old.stderr
    new = run(base + ["-brief"], check=False, input="")
    assert "Protocol version: TLSv1.3" in new.stdout + new.stderr


def test_sslscan_shows_only_tls12_13_and_allowed_suites(tmp_path):
    # A scan is hundreds of failed handshakes: raise the per-source failure
    # limit, or the scanner (rightly) gets blocked halfway.
    s = Server(tmp_path / "b", limits={"max_failed_associations": 100000})
    node = s.add_node("MOD1")
    s.start()
    try:
        # With a client certificate, so that TLS 1.2 handshakes complete and
        # their suites are enumerated too.
        r = run(["sslscan", "--no-colour", "--no-heartbleed", "--certs=" + node.cert, "--pk=" + node.key,
                 "127.0.0.1:%d" % s.port], timeout=300)
    finally:
        s.stop()
    accepted = assert_tls_policy(r.stdout)
    assert {p for p, _ in accepted} == {"TLSv1.2", "TLSv1.3"}, r.stdout
    groups = re.findall(r"^TLSv1\.[23]\s+\d+ bits\s+(\S+)", r.stdout.split("Server Key Exchange Group(s):")[1].split("SSL Certificate")[0], re.M)
    assert groups and set(groups) <= {"x25519", "secp256r1", "secp384r1"}, groups


def test_refuses_wrong_identity_combinations(server, tmp_path):
    mod1 = server.add_node("MOD1")
    mod2 = server.add_node("MOD2")
    server.add_node("FARAWAY", cidr="10.0.0.0/8")
    server.start()
    assert echo(server, mod1).returncode == 0
    # Unknown AE title, with a valid certificate.
    assert server.dcmtk("echoscu", mod1, check=False).returncode == 0
    unknown = run(["echoscu", "-aet", "NOBODY", "-aec", "BASTION", *server.tls_args(mod1), "127.0.0.1",
                   str(server.port)], check=False)
    assert unknown.returncode != 0 and "Calling AE Title Not Recognized" in unknown.stdout + unknown.stderr
    # Known AE title with another node's certificate.
    stolen = run(["echoscu", "-aet", "MOD1", "-aec", "BASTION", *server.tls_args(mod2), "127.0.0.1",
                  str(server.port)], check=False)
    assert stolen.returncode != 0
    # Known AE title and its own certificate, but from an address outside its CIDR.
    far_key, far_crt = server.issue("FARAWAY")
    far = run(["echoscu", "-aet", "FARAWAY", "-aec", "BASTION", "+tls", str(far_key), str(far_crt), "+cf", server.ca,
               "127.0.0.1", str(server.port)], check=False)
    assert far.returncode != 0
    # Wrong called AE title.
    assert server.dcmtk("echoscu", mod1, check=False, called="OTHER").returncode != 0
    log = server.audit_text()
    assert log.count('"outcome":"denied"') >= 4
    assert "client certificate does not match the node" in log
    assert "node connected from a wrong address" in log


def grep_tree(root, needles):
    hits = []
    for path in Path(root).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [(str(path), n) for n in needles if n.encode() in data]
    return hits


def test_canary_patient_never_reaches_disk_in_plaintext(started, tmp_path):
    node = started.nodes["MOD1"]
    canary = tmp_path / "canary.dcm"
    instance(canary, "CANARYID7731", "CANARY^XYLOPHONE", PREFIX + "555", PREFIX + "555.1", PREFIX + "555.1.1",
             birth="19191231", accession="CANACC9911", referring="CANREFDOC^Q")
    started.dcmtk("storescu", node, str(canary))
    from test_dimse import find
    rows = find(started, node, "STUDY", ["PatientID=CANARYID7731", "PatientName=", "StudyInstanceUID="])
    assert len(rows) == 1 and str(rows[0].PatientName) == "CANARY^XYLOPHONE"  # stored and findable
    started.stop()  # flush everything the server holds
    needles = ["CANARYID7731", "CANARY^XYLOPHONE", "XYLOPHONE", "19191231", "CANACC9911", "CANREFDOC"]
    assert grep_tree(started.data, needles) == []
    assert grep_tree(started.base / "serve.log", needles) == []
    r = run(["grep", "-r", "-a", "-c", "-E", "CANARY|XYLOPHONE|19191231|CANACC9911", str(started.data)], check=False)
    assert all(line.endswith(":0") for line in r.stdout.split()), r.stdout
    # The audit trail does name the patient (store, query), sealed: it opens only with the key.
    mine = started.audit_events("--patient-id", "CANARYID7731")
    assert {e["action"] for e in mine} >= {"store", "find"}
    assert all(e["patient_id"] == "CANARYID7731" for e in mine)
    assert any(e.get("patient_name") == "CANARY^XYLOPHONE" for e in mine)


def test_flipped_byte_fails_retrieval_and_verify_reports_it(started, tmp_path):
    from test_dimse import Stunnel, getscu
    node = started.nodes["MOD1"]
    files = write_multi_patient_set(tmp_path / "set")
    started.dcmtk("storescu", node, *[str(p) for p in files.values()])
    assert started.bastion("verify").returncode == 0
    record = [r for r in packs.records(started.data / "blobs") if r["kind"] == "blob"][0]
    packs.flip_content_byte(record)
    tunnel = Stunnel(started, node, tmp_path)
    try:
        out = tmp_path / "get"
        r = getscu(tunnel, node, out, ["QueryRetrieveLevel=PATIENT", "PatientID=PAT*"], ["-P"])
        assert len(list(out.iterdir())) == len(files) - 1, r.stdout + r.stderr
    finally:
        tunnel.close()
    v = started.bastion("verify", check=False)
    assert v.returncode != 0
    assert "altered" in v.stdout and record["id"] in v.stdout
    assert "integrity" in started.audit_text()


def test_hostile_files_get_failure_status_and_server_keeps_serving(started, tmp_path):
    node = started.nodes["MOD1"]
    marker = time.time()
    for name, sop, dataset in cases():
        assoc = Association("127.0.0.1", started.port, node.ae, "BASTION", [(CT, ["1.2.840.10008.1.2.1"])],
                            tls=started.tls(node))
        if name == "truncated_odd":
            # An odd-length data set breaks the DIMSE framing itself: DCMTK
            # aborts the association (the clear error at that layer).
            with pytest.raises(ConnectionError):
                assoc.store_raw(1, CT, sop, dataset)
            assoc.sock.close()
        else:
            status = assoc.store_raw(1, CT, sop, dataset)
            assoc.release()
            assert status != 0 and (status & 0xF000) in (0xA000, 0xC000), (name, hex(status))
        assert echo(started, node).returncode == 0, name
    assert started.alive()
    assert packs.blobs(started.data / "blobs") == set()  # nothing partial stored
    assert not any(p.stat().st_mtime >= marker for p in Path("/tmp").glob("pwn*"))
    good = tmp_path / "good.dcm"
    instance(good, "P", "N^N", PREFIX + "8", PREFIX + "8.1", PREFIX + "8.1.1")
    started.dcmtk("storescu", node, str(good))
    assert "failure" in started.audit_text()


def test_association_limits_and_artim(tmp_path):
    s = Server(tmp_path / "b", limits={"max_associations_per_node": 2, "artim_timeout_s": 2})
    node = s.add_node("MOD1")
    s.start()
    try:
        held = [Association("127.0.0.1", s.port, "MOD1", "BASTION", [("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])],
                            tls=s.tls(node)) for _ in range(2)]
        with pytest.raises(ConnectionRefusedError):
            Association("127.0.0.1", s.port, "MOD1", "BASTION", [("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])],
                        tls=s.tls(node))
        assert held[0].echo() == 0
        for a in held:
            a.release()
        assert echo(s, node).returncode == 0
        # A connection that never sends an A-ASSOCIATE-RQ is dropped after ARTIM.
        idle = socket.create_connection(("127.0.0.1", s.port))
        idle.settimeout(15)
        start = time.time()
        assert idle.recv(1) == b""
        assert time.time() - start < 10
        idle.close()
        assert echo(s, node).returncode == 0
    finally:
        s.stop()


def test_kill_9_while_storing_loses_nothing_acknowledged(started, tmp_path):
    node = started.nodes["MOD1"]
    folders = []
    for shard in range(4):
        folder = tmp_path / ("shard%d" % shard)
        folder.mkdir()
        for i in range(60):
            instance(folder / ("%d.dcm" % i), "K%d" % shard, "KILL^TEST", PREFIX + "9%d" % shard,
                     PREFIX + "9%d.1" % shard, PREFIX + "9%d.1.%d" % (shard, i + 1), rows=64, seed=i)
        folders.append(folder)
    procs = [subprocess.Popen(["storescu", "-v", "-aet", "MOD1", "-aec", "BASTION", *started.tls_args(node),
                               "127.0.0.1", str(started.port), "+sd", str(f)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TCP_NODELAY="1"))
             for f in folders]
    time.sleep(0.8)
    started.proc.send_signal(signal.SIGKILL)
    started.proc.wait()
    acked = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        current = None
        for line in out.splitlines():
            m = re.search(r"Sending file: (\S+)", line)
            if m:
                current = m.group(1)
            elif "Received Store Response (Success)" in line and current:
                acked.append(current)
    assert acked, "no store was acknowledged before the kill; the test proves nothing"
    started.start()
    assert started.bastion("verify").returncode == 0
    from test_dimse import find
    import pydicom
    stored = set()
    for shard in range(4):
        rows = find(started, node, "IMAGE", ["StudyInstanceUID=" + PREFIX + "9%d" % shard, "SOPInstanceUID="])
        stored |= {r.SOPInstanceUID for r in rows}
    for path in acked:
        assert pydicom.dcmread(path).SOPInstanceUID in stored, path
    # Each stored instance has exactly one success record: committed without a
    # sync of its own, or appended at restart from the note kept with its
    # object if the kill came between its index commit and its audit append.
    stores = [e for e in started.audit_events() if e["action"] == "store" and e["outcome"] == "success"
              and e.get("study", "").startswith(PREFIX + "9")]
    assert len(stores) == len(stored), (len(stores), len(stored))
    assert len({e["detail"].split()[1] for e in stores}) == len(stores)  # one per object


def test_silent_and_trickling_peers_do_not_block_others(tmp_path):
    s = Server(tmp_path / "b", limits={"artim_timeout_s": 3})
    node = s.add_node("MOD1")
    s.start()
    try:
        silent = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(5)]
        trickle = socket.create_connection(("127.0.0.1", s.port))
        stop = threading.Event()

        def drip():  # a TLS record header, one byte at a time
            for b in b"\x16\x03\x01\x02\x00":
                if stop.wait(0.5):
                    return
                try:
                    trickle.send(bytes([b]))
                except OSError:
                    return
        t = threading.Thread(target=drip)
        t.start()
        time.sleep(0.3)
        start = time.time()
        assert echo(s, node).returncode == 0
        assert time.time() - start < 2.5  # not queued behind the silent peers' ARTIM
        for sock in silent + [trickle]:
            sock.settimeout(10)
        start = time.time()
        for sock in silent:
            assert sock.recv(1) == b""
        assert trickle.recv(1) == b""  # closed at its deadline, whatever it trickles
        assert time.time() - start < 6
        stop.set()
        t.join()
        for sock in silent + [trickle]:
            sock.close()
        assert echo(s, node).returncode == 0
    finally:
        s.stop()


def test_connections_awaiting_association_are_capped_per_source(tmp_path):
    s = Server(tmp_path / "b", limits={"artim_timeout_s": 3, "max_associations_per_node": 3})
    node = s.add_node("MOD1")
    s.start()
    try:
        silent = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
        time.sleep(0.3)
        assert echo(s, node).returncode != 0
        assert "too many connections awaiting association" in s.audit_text()
        for sock in silent:
            sock.settimeout(10)
            assert sock.recv(1) == b""
            sock.close()
        time.sleep(0.3)
        assert echo(s, node).returncode == 0
    finally:
        s.stop()


def test_guessing_ae_titles_gets_the_source_blocked_for_a_while(tmp_path):
    s = Server(tmp_path / "b", limits={"max_failed_associations": 5, "block_s": 2})
    node = s.add_node("MOD1")
    s.start()
    try:
        for guess in ["PACS", "ORTHANC", "STORESCP", "ANY-SCP", "DCM4CHEE"]:
            r = run(["echoscu", "-aet", guess, "-aec", "BASTION", *s.tls_args(node), "127.0.0.1", str(s.port)],
                    check=False)
            assert r.returncode != 0
        assert echo(s, node).returncode != 0  # even a valid node, from the blocked address
        log = s.audit_text()
        assert '"action":"throttle"' in log and "source blocked after repeated failed associations" in log
        time.sleep(2.5)
        assert echo(s, node).returncode == 0
    finally:
        s.stop()
