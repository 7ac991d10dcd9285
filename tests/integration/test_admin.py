"""Administration: init, the optional plaintext listener, import, limits."""
import os
import re
from pathlib import Path

import pydicom

from conftest import BASTION, Server, run
from datasets import PREFIX, instance, write_multi_patient_set
from dul import Association


def test_init_twice_never_overwrites_keys(tmp_path):
    home = tmp_path / "b"
    first = run([BASTION, "init", str(home), "--port", "0"])
    assert "created  key-encryption key" in first.stdout
    kek = (home / "keys" / "kek.key").read_bytes()
    ca = (home / "pki" / "ca.crt").read_bytes()
    assert oct((home / "keys" / "kek.key").stat().st_mode & 0o777) == "0o600"
    assert not str(home / "keys").startswith(str(home / "data"))
    second = run([BASTION, "init", str(home), "--port", "0"])
    assert "kept     key-encryption key" in second.stdout and "created" not in second.stdout
    assert (home / "keys" / "kek.key").read_bytes() == kek
    assert (home / "pki" / "ca.crt").read_bytes() == ca


def test_serve_refuses_a_group_readable_key_file(tmp_path):
    s = Server(tmp_path / "b")
    os.chmod(s.base / "keys" / "kek.key", 0o644)
    r = run([BASTION, "serve", "--config", str(s.config)], check=False, timeout=30)
    assert r.returncode != 0 and "0600" in r.stderr


def test_plaintext_listener_only_when_configured_and_only_for_allowed_plain_nodes(tmp_path):
    s = Server(tmp_path / "b", extra_config='[dicom.plain]\naddress = "127.0.0.1"\nport = 0\nallow = ["127.0.0.1/32"]\n')
    tls_node = s.add_node("TLSNODE")
    s.bastion("node", "add", "--ae", "LEGACY", "--cidr", "127.0.0.1/32", "--perm", "echo")
    s.start()
    try:
        assert s.plain_port > 0
        legacy = run(["echoscu", "-aet", "LEGACY", "-aec", "BASTION", "127.0.0.1", str(s.plain_port)], check=False)
        assert legacy.returncode == 0, legacy.stderr
        # A node registered with a certificate may not fall back to plaintext.
        downgraded = run(["echoscu", "-aet", "TLSNODE", "-aec", "BASTION", "127.0.0.1", str(s.plain_port)],
                         check=False)
        assert downgraded.returncode != 0
        assert "registered for TLS only" in s.audit_text()
        # And the plaintext node has no business on the TLS port without a certificate.
        assert s.dcmtk("echoscu", tls_node).returncode == 0
    finally:
        s.stop()


def test_plaintext_listener_refuses_addresses_outside_its_allowlist(tmp_path):
    s = Server(tmp_path / "b", extra_config='[dicom.plain]\naddress = "127.0.0.1"\nport = 0\nallow = ["10.9.9.0/24"]\n')
    s.bastion("node", "add", "--ae", "LEGACY", "--cidr", "127.0.0.1/32", "--perm", "echo")
    s.start()
    try:
        r = run(["echoscu", "-aet", "LEGACY", "-aec", "BASTION", "127.0.0.1", str(s.plain_port)], check=False)
        assert r.returncode != 0
        assert "address not allowed on the plaintext listener" in s.audit_text()
    finally:
        s.stop()


def test_config_refuses_wildcard_bind_and_plaintext_without_allowlist(tmp_path):
    s = Server(tmp_path / "b", extra_config='[dicom.plain]\naddress = "0.0.0.0"\nport = 11112\nallow = ["10.0.0.0/8"]\n')
    r = run([BASTION, "serve", "--config", str(s.config)], check=False, timeout=30)
    assert r.returncode != 0 and "explicit address" in r.stderr
    s2 = Server(tmp_path / "c", extra_config='[dicom.plain]\naddress = "127.0.0.1"\nport = 0\n')
    r = run([BASTION, "serve", "--config", str(s2.config)], check=False, timeout=30)
    assert r.returncode != 0 and "allow list" in r.stderr


def test_import_loads_a_folder_through_the_store_path(server, tmp_path):
    files = write_multi_patient_set(tmp_path / "set")
    first = next(iter(files.values()))
    raw = bytearray(first.read_bytes())
    raw[0:2] = b"MZ"  # an executable-looking preamble must not survive
    first.write_bytes(bytes(raw))
    (tmp_path / "set" / "notes.txt").write_text("not dicom")
    r = server.bastion("import", str(tmp_path / "set"), check=False)
    assert r.returncode == 1  # the text file is reported, the rest imported
    assert "imported %d, already present 0, failed 1" % len(files) in r.stdout
    again = server.bastion("import", str(tmp_path / "set"), check=False)
    assert "imported 0, already present %d" % len(files) in again.stdout
    assert server.bastion("verify").returncode == 0
    node = server.add_node("MOD1")
    server.start()
    from test_dimse import Stunnel, getscu
    tunnel = Stunnel(server, node, tmp_path)
    try:
        sop = pydicom.dcmread(str(first)).SOPInstanceUID
        out = tmp_path / "get"
        getscu(tunnel, node, out, ["QueryRetrieveLevel=IMAGE", "SOPInstanceUID=" + sop,
                                   "StudyInstanceUID=" + pydicom.dcmread(str(first)).StudyInstanceUID,
                                   "SeriesInstanceUID=" + pydicom.dcmread(str(first)).SeriesInstanceUID])
        got = list(out.iterdir())
        assert len(got) == 1
        assert got[0].read_bytes()[:128] == b"\0" * 128 or pydicom.dcmread(str(got[0])).preamble in (None, b"\0" * 128)
    finally:
        tunnel.close()


def test_object_size_limit_refuses_with_out_of_resources(tmp_path):
    s = Server(tmp_path / "b", limits={"max_object_size": 20000})
    node = s.add_node("MOD1")
    s.start()
    try:
        small, big = tmp_path / "small.dcm", tmp_path / "big.dcm"
        instance(small, "P", "N^N", PREFIX + "30", PREFIX + "30.1", PREFIX + "30.1.1", rows=16)
        instance(big, "P", "N^N", PREFIX + "30", PREFIX + "30.1", PREFIX + "30.1.2", rows=128)
        assert s.dcmtk("storescu", node, str(small)).returncode == 0
        r = s.dcmtk("storescu", node, "-v", str(big), check=False)
        assert r.returncode != 0 and "OutOfResources" in r.stdout + r.stderr, r.stdout + r.stderr
        assert s.dcmtk("echoscu", node).returncode == 0
    finally:
        s.stop()


def test_start_up_sweep_leaves_objects_alone_while_another_process_has_the_archive_open(server, tmp_path):
    """serve removes objects no index row names (left by interrupted stores) only when no other
    process has the archive open: a running `bastion import` has objects whose rows are not written yet."""
    import fcntl
    import sqlite3
    write_multi_patient_set(tmp_path / "set")
    server.bastion("import", str(tmp_path / "set"))
    # One instance's row goes: its object is now what an interrupted store leaves behind.
    db = sqlite3.connect(str(server.data / "index.sqlite"))
    db.execute("DELETE FROM instance WHERE pk = (SELECT MIN(pk) FROM instance)")
    db.commit()
    db.close()
    r = server.bastion("verify", check=False)
    assert r.returncode != 0 and r.stdout.count("orphaned") == 1, r.stdout
    log = server.base / "serve.log"
    with open(server.data / "writers.lock", "a+") as other:  # another process with the archive open
        fcntl.flock(other, fcntl.LOCK_SH)
        server.start()
        server.stop()
        assert "left for a later start" in log.read_text()
        assert "unacknowledged" not in log.read_text()
        r = server.bastion("verify", check=False)  # verify opens it too, shared
        assert r.returncode != 0 and r.stdout.count("orphaned") == 1, r.stdout
    server.start()
    server.stop()
    assert "removed 1 unacknowledged blob(s)" in log.read_text()
    assert server.bastion("verify").returncode == 0
