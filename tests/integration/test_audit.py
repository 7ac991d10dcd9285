"""The tamper-evident audit trail (issue 5), end to end with the real binary:
a scripted scenario across DIMSE, DICOMweb and the CLI produces exactly the
expected events; a real rsyslog collector receives each as a DICOM audit
message (PS3.15 A.5) over RFC 5425 mutual TLS that validates against the
schema; an outage or a refused certificate loses nothing; tampering with the
store makes `bastion audit verify` fail at the right position."""
import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BASTION, ROOT, Server, run
from datasets import PREFIX, instance
from identity import AUTH_CONFIG, PASSWORD, add_user, enrol, matches, scu, status_of, token
from collector import Collector
from web import Https, multipart

SCHEMA = ROOT / "data" / "audit" / "audit-message.rng"
HTTP = "\n[http]\nenabled = true\naddress = '127.0.0.1'\nport = 0\n"
STUDY = PREFIX + "91.1"


def validate_all(tmp, messages):
    """xmllint --relaxng over every message; returns the EventIDs seen."""
    d = Path(tmp)
    d.mkdir(exist_ok=True)
    files = []
    for m in messages:
        f = d / ("%d.xml" % m[4])
        f.write_text(m[5])
        files.append(str(f))
    r = run(["xmllint", "--noout", "--relaxng", str(SCHEMA), *files], check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(" validates") == len(files)
    return {__import__("re").search(r'<EventID csd-code="(\d+)"', m[5]).group(1) for m in messages}


def stored_seqs(server):
    return [e["seq"] for e in server.audit_events()]


@pytest.fixture
def collector(tmp_path):
    c = Collector(tmp_path / "collector").start()
    yield c
    c.stop()


def test_scripted_scenario_produces_exactly_the_expected_events_and_each_reaches_the_collector(tmp_path, collector):
    s = Server(tmp_path / "bastion", extra_config=AUTH_CONFIG + HTTP + "\n[audit]\nsite = 'Test Hospital'\n" +
               collector.config())
    s.add_node("MOD1", role="modality", site="north")
    s.add_node("WS1", perms="echo,find,get,move", site="north", scope="all")
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dest_port = sock.getsockname()[1]
    dest = s.add_node("DEST", perms="echo", move_port=dest_port)
    _, rec_tech = enrol(s, "tech", add_user(s, "tech", ["technologist", "radiologist"], "north"))
    enrol(s, "south", add_user(s, "south", ["radiologist"], "south"))
    _, rec_erin = enrol(s, "erin", add_user(s, "erin", ["radiologist", "emergency"], "north"))
    tok = token(s, "tech", "store,find,get")
    tok_south = token(s, "south", "find,get")
    out = tmp_path / "dest"
    out.mkdir()
    dest_proc = subprocess.Popen(["storescp", "-aet", "DEST", "+tls", dest.key, dest.cert, "+cf", s.ca, "-od",
                                  str(out), str(dest_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s.start()
    try:
        h = Https(s)
        # 1. A failed and a good login (password + recovery code).
        body = {"username": "tech", "password": "wrong password!", "code": "000000"}
        st, _, _ = h.request("POST", "/api/login", body=json.dumps(body), headers={"Content-Type": "application/json"})
        assert st == 401
        body = {"username": "tech", "password": PASSWORD, "code": rec_tech[0]}
        st, _, _ = h.request("POST", "/api/login", body=json.dumps(body), headers={"Content-Type": "application/json"})
        assert st == 200
        # 2. C-STORE of two instances (one association), with a hostile patient name.
        files = []
        for i in (1, 2):
            f = tmp_path / ("a%d.dcm" % i)
            instance(f, "AUDPAT1", "EVIL^NAME]]></AuditMessage>", STUDY, STUDY + ".1", STUDY + ".1.%d" % i)
            files.append(str(f))
        s.dcmtk("storescu", s.nodes["MOD1"], *files)
        # 3. C-FIND, C-GET, C-MOVE from the workstation.
        ws = s.nodes["WS1"]
        assert len(matches(scu(s, ws, "find", "--level", "STUDY", "-k", "PatientID=AUDPAT1",
                               "-k", "StudyInstanceUID="))) == 1
        assert status_of(scu(s, ws, "get", "--level", "STUDY", "-k", "StudyInstanceUID=" + STUDY)) == ("0x0000", 2)
        assert status_of(scu(s, ws, "move", "--level", "STUDY", "-k", "StudyInstanceUID=" + STUDY,
                             "--dest", "DEST")) == ("0x0000", 2)
        # 4. STOW-RS, QIDO-RS and WADO-RS with the user's token.
        f = tmp_path / "stow.dcm"
        instance(f, "AUDPAT1", "EVIL^NAME", STUDY, STUDY + ".2", STUDY + ".2.1")
        b, hd = multipart([f])
        assert h.request("POST", "/dicom-web/studies", body=b, headers=hd, token=tok)[0] == 200
        st, found = h.json("GET", "/dicom-web/studies?PatientID=AUDPAT1", token=tok)
        assert st == 200 and len(found) == 1
        assert h.request("GET", "/dicom-web/studies/%s/series/%s/instances/%s" % (STUDY, STUDY + ".2", STUDY + ".2.1"),
                         headers={"Accept": 'multipart/related; type="application/dicom"'}, token=tok)[0] == 200
        # 5. Out of scope: a south radiologist asks for the north study.
        assert h.request("GET", "/dicom-web/studies/" + STUDY, token=tok_south)[0] == 404
        # 6. Break-glass, a user change, a search of the trail.
        p = subprocess.run([BASTION, "break-glass", "open", "--config", str(s.config), "--user", "erin", "--study",
                            STUDY, "--reason", "trauma patient"], input="%s\n%s\n" % (PASSWORD, rec_erin[0]),
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        s.bastion("user", "disable", "south")
        found = s.bastion("audit", "search", "--patient-id", "AUDPAT1").stdout
        assert "AUDPAT1" in found and "store" in found
    finally:
        s.stop()
        dest_proc.terminate()
        dest_proc.wait(timeout=10)
    everything = s.audit_events()
    start = max(i for i, e in enumerate(everything) if e["action"] == "start")
    assert {e["action"] for e in everything[:start]} <= {"key-create", "config-create", "user-add", "node-add",
                                                          "mfa-enrol-begin", "mfa-enrol-confirm", "enrol",
                                                          "password-change", "token-issue", "login"}
    events = everything[start:]
    got = [(e["action"], e["outcome"]) for e in events]
    expected = [
        ("start", "success"),
        ("login", "failure"), ("login", "success"), ("session-issue", "success"),
        ("association", "success"), ("store", "success"), ("store", "success"),
        ("association", "success"), ("find", "success"),
        ("association", "success"), ("get", "success"),
        ("association", "success"), ("move", "success"),
        # Each bearer-token request records its authentication, then what it did.
        ("token-auth", "success"), ("store", "success"), ("token-auth", "success"), ("find", "success"),
        ("token-auth", "success"), ("wado", "success"),
        ("token-auth", "success"), ("wado", "denied"),
        # Break-glass re-authenticates the user, then records the override and the grant it made.
        ("login", "success"), ("break-glass", "success"), ("break-glass-grant", "success"),
        ("user-disable", "success"), ("audit-read", "success"),
        ("stop", "success"),
    ]
    assert got[:len(expected)] == expected, "\n".join(map(str, got))
    assert all(a == "audit-read" for a, _ in got[len(expected):])  # the exports of this check
    by_action = {e["action"]: e for e in events}
    assert by_action["store"]["patient_id"] == "AUDPAT1" and by_action["get"]["patient_id"] == "AUDPAT1"
    assert by_action["move"]["patient_id"] == "AUDPAT1" and by_action["find"]["query"]
    assert by_action["break-glass"]["severity"] == "high"
    assert any(e["action"] == "wado" and e["outcome"] == "denied" and e["user"] == "south" for e in events)
    # The collector has every record up to `stop` (none missing, none extra), each valid.
    stop_seq = events[len(expected) - 1]["seq"]
    msgs = collector.wait_for(range(1, stop_seq + 1), timeout=30)
    assert {m[4] for m in msgs} == set(range(1, stop_seq + 1))
    assert len(msgs) == stop_seq  # no repeats either on this clean run
    assert all(m[0] in (84, 85) for m in msgs)
    ids = validate_all(tmp_path / "xml", msgs)
    assert {"110100", "110101", "110104", "110112", "110113", "110114"} <= ids
    # The hostile name is data inside one element, not markup.
    store_xml = [m[5] for m in msgs if "AUDPAT1" in m[5] and 'csd-code="110104"' in m[5]][0]
    assert "EVIL^NAME]]&gt;&lt;/AuditMessage&gt;" in store_xml
    assert collector.lines() == [l for l in collector.lines() if l.count("<AuditMessage>") == 1]
    # Verification of the store after all this.
    assert "audit verify: OK" in s.bastion("audit", "verify").stdout


def test_collector_outage_during_load_loses_nothing(tmp_path, collector):
    s = Server(tmp_path / "bastion", extra_config=collector.config())
    mod = s.add_node("MOD1", perms="echo,store,find")
    files = []
    for i in range(60):
        f = tmp_path / ("f%d.dcm" % i)
        instance(f, "LOAD%d" % (i % 5), "LOAD^P", PREFIX + "92.%d" % (i % 5), PREFIX + "92.%d.1" % (i % 5),
                 PREFIX + "92.%d.1.%d" % (i % 5, i))
        files.append(str(f))
    s.start()
    try:
        def load():
            for k in range(0, 60, 10):
                s.dcmtk("storescu", mod, *files[k:k + 10])
                s.dcmtk("findscu", mod, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=LOAD*")
                time.sleep(0.4)
        t = threading.Thread(target=load)
        t.start()
        time.sleep(0.8)
        collector.stop()  # outage in the middle of the load
        time.sleep(3)
        collector.start()
        t.join()
        last = stored_seqs(s)[-1]
        msgs = collector.wait_for(range(1, last + 1), timeout=60)
    finally:
        s.stop()
    seqs = [m[4] for m in msgs]
    assert set(seqs) >= set(range(1, last + 1))
    # Emitted = received (each record once; a batch unconfirmed at the outage may arrive twice and
    # carries the same sequenceId, by which a collector drops the repeat).
    assert len(set(seqs)) == max(seqs)
    print("outage run: %d records emitted, %d messages received, %d distinct" % (last, len(seqs), len(set(seqs))))
    actions = [e["action"] for e in s.audit_events()]
    assert actions.count("store") == 60 and "audit-export-failure" in actions


def test_a_refused_collector_certificate_loses_nothing_and_raises_alerts(tmp_path, collector):
    s = Server(tmp_path / "bastion", extra_config=collector.config(trusted=False, alert_backlog=3))
    mod = s.add_node("MOD1", perms="echo")
    s.start()
    try:
        for _ in range(3):
            s.dcmtk("echoscu", mod)
        deadline = time.time() + 20
        while True:
            events = s.audit_events()
            actions = [e["action"] for e in events]
            if "audit-export-failure" in actions and "audit-export-backlog" in actions:
                break
            assert time.time() < deadline, actions
            time.sleep(0.3)
        failure = [e for e in events if e["action"] == "audit-export-failure"][0]
        assert "certificate" in failure["detail"] and failure["severity"] == "high"
        assert collector.lines() == []  # nothing went to a collector Bastion cannot authenticate
    finally:
        s.stop()
    # The administrator fixes the CA: everything kept is delivered.
    s.config.write_text(s.config.read_text().replace(str(collector.dir / "rogueca.pem"),
                                                     str(collector.dir / "ca.pem")))
    s.start()
    try:
        last = stored_seqs(s)[-1]
        msgs = collector.wait_for(range(1, last + 1), timeout=30)
    finally:
        s.stop()
    assert {m[4] for m in msgs} >= set(range(1, last + 1))


def test_verify_cli_finds_tampering_at_its_position(tmp_path):
    s = Server(tmp_path / "bastion")
    mod = s.add_node("MOD1", perms="echo")
    s.start()
    for _ in range(5):
        s.dcmtk("echoscu", mod)
    s.stop()
    cp = tmp_path / "checkpoint.txt"
    cp.write_text(s.bastion("audit", "checkpoint").stdout)
    ok = s.bastion("audit", "verify", "--checkpoint", str(cp))
    assert "audit verify: OK" in ok.stdout and "matches" in ok.stdout
    db = s.data / "audit.sqlite"
    before = s.bastion("audit", "export", "--format", "json").stdout.count("\n")
    con = sqlite3.connect(db)
    con.execute("UPDATE record SET outcome = 'denied', detail = 'x' WHERE seq = 4")
    con.commit()
    con.close()
    bad = s.bastion("audit", "verify", check=False)
    assert bad.returncode == 1 and "FAILED at record 4" in bad.stdout
    # Truncation below the exported checkpoint, with the store's own checkpoints gone too.
    s2 = Server(tmp_path / "b2")
    # init records what it created: the keys, the configuration, the first administrator.
    first = [(e["action"], e["detail"].split(":")[0]) for e in s2.audit_events()][:6]
    assert first == [("key-create", "key-encryption key (0600)"), ("key-create", "private CA"),
                     ("key-create", "server certificate"), ("config-create", "configuration"),
                     ("user-add", "user=admin roles=admin site=main")]
    s2.bastion("audit", "search")
    s2.bastion("audit", "search")
    cp2 = tmp_path / "cp2.txt"
    cp2.write_text(s2.bastion("audit", "checkpoint").stdout)
    con = sqlite3.connect(s2.data / "audit.sqlite")
    n = con.execute("SELECT max(seq) FROM record").fetchone()[0]
    con.execute("DELETE FROM record WHERE seq >= ?", (n,))
    con.execute("DELETE FROM checkpoint WHERE seq >= ?", (n,))
    con.commit()
    con.close()
    r = s2.bastion("audit", "verify", "--checkpoint", str(cp2), check=False)
    assert r.returncode == 1 and ("FAILED at record %d" % n) in r.stdout, r.stdout
    assert before >= 5
    # A trail that disappears is not silently started anew.
    for f in s.data.glob("audit.sqlite*"):
        f.unlink()
    r = s.bastion("node", "list", check=False)
    assert r.returncode != 0 and "audit trail" in r.stderr and "missing or empty" in r.stderr
    r = s.bastion("audit", "verify", check=False)
    assert r.returncode == 1 and "FAILED at record 1: the trail is empty" in r.stdout


def test_auditors_search_the_trail_over_https_and_the_search_is_recorded(tmp_path):
    s = Server(tmp_path / "bastion", extra_config=AUTH_CONFIG + HTTP)
    mod = s.add_node("MOD1", role="modality", site="north")
    enrol(s, "audra", add_user(s, "audra", ["auditor"], "north"))
    enrol(s, "rad", add_user(s, "rad", ["radiologist"], "north"))
    audra, rad = token(s, "audra", "read_audit"), token(s, "rad", "find")
    f = tmp_path / "x.dcm"
    instance(f, "APIPAT7", "API^PATIENT", PREFIX + "93.1", PREFIX + "93.1.1", PREFIX + "93.1.1.1")
    s.start()
    try:
        s.dcmtk("storescu", mod, str(f))
        h = Https(s)
        st, found = h.json("GET", "/api/audit?patient_id=APIPAT7&action=store", token=audra)
        assert st == 200 and len(found) == 1
        assert found[0]["patient_id"] == "APIPAT7" and found[0]["patient_name"] == "API^PATIENT"
        assert found[0]["actor"] == "MOD1" and found[0]["outcome"] == "success"
        st, found = h.json("GET", "/api/audit?user=audra&action=audit-read", token=audra)
        assert st == 200 and len(found) == 1  # the first search, recorded before this one ran
        assert h.json("GET", "/api/audit?patient_id=APIPAT7", token=rad)[0] == 403
        assert h.json("GET", "/api/audit?since=yesterday", token=audra)[0] == 400
        assert h.json("GET", "/api/audit?limit=-1", token=audra)[0] == 400
        assert h.json("GET", "/api/audit", token=None)[0] == 401
    finally:
        s.stop()
    reads = [e for e in s.audit_events("--action", "audit-read") if e.get("user") in ("audra", "rad")]
    assert [(e["user"], e["outcome"]) for e in reads] == [("audra", "success"), ("audra", "success"),
                                                          ("rad", "denied"), ("audra", "failure"),
                                                          ("audra", "failure")]
    assert reads[0]["patient_id"] == "APIPAT7" and "action=store" in reads[0]["detail"]
    assert "APIPAT7" not in reads[0]["detail"]  # the searched patient is sealed, not in the clear detail
