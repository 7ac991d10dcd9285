"""Identity and access control over DICOM: user identity negotiation
(storescu --user/--password/--jwt, and a DCMTK-based SCU for C-FIND/C-GET/
C-MOVE), the access matrix of principals x operations x studies, and the
audit record of every decision."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import BASTION, Node, Server, run
from datasets import PREFIX, instance
from identity import (AUTH_CONFIG, PASSWORD, Idp, add_user, enrol, matches, scu, status_of, token, totp)
from web import Https

NORTH, SOUTH, SOUTH2 = PREFIX + "71.1", PREFIX + "72.1", PREFIX + "73.1"
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def store_study(server, node, folder, study, pid, referring, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / ("%s-%d.dcm" % (study, i)) for i in range(n)]
    for i, f in enumerate(files):
        instance(f, pid, "PAT^" + pid, study, study + ".1", "%s.1.%d" % (study, i + 1), referring=referring, seed=i)
    server.dcmtk("storescu", node, *map(str, files))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One archive for the access matrix: two sites, ten principals, three studies."""
    base = tmp_path_factory.mktemp("identity")
    idp = Idp(base)
    s = Server(base / "bastion", extra_config=AUTH_CONFIG + idp.config() +
               "\n[http]\nenabled = true\naddress = '127.0.0.1'\nport = 0\n")
    s.add_node("MODN", role="modality", site="north")
    s.add_node("MODS", role="modality", site="south")
    # A reading-room workstation used by every site's users (scope all), and one
    # that belongs to the north site (scope site).
    s.add_node("WS1", perms="echo,store,find,get,move", site="north", scope="all")
    s.add_node("WSN", perms="echo,find,get", site="north")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dest_port = sock.getsockname()[1]
    dest = s.add_node("DEST", perms="echo", move_port=dest_port)
    users = {
        "rad_north": (["radiologist"], "north", None, ()),
        "rad_south": (["radiologist"], "south", None, ()),
        "house": (["physician"], "elsewhere", "House^Gregory", ()),
        "tech_north": (["technologist"], "north", None, ()),
        "granted": (["physician"], "elsewhere", None, ()),
        "erin": (["radiologist", "emergency"], "north", None, ()),
        "admin2": (["admin"], "north", None, ()),
        "audra": (["auditor"], "north", None, ()),
        "res": (["researcher"], "north", None, ()),
    }
    secrets, recovery, tokens = {}, {}, {}
    for name, (roles, site, phys, groups) in users.items():
        otp = add_user(s, name, roles, site, phys, groups)
        secrets[name], recovery[name] = enrol(s, name, otp)
    perms = {"rad_north": "echo,find,get,move", "rad_south": "echo,find,get,move", "house": "echo,find,get",
             "tech_north": "echo,store,find,get", "granted": "echo,find,get", "erin": "echo,find,get,move",
             "admin2": "echo", "audra": "read_audit", "res": "find,get"}
    for name, p in perms.items():
        tokens[name] = token(s, name, p)
    s.bastion("grant", "add", "user:granted", "--study", SOUTH2, "--reason", "second opinion for tumour board")
    s.start()
    out = base / "dest"
    out.mkdir()
    store_study(s, s.nodes["MODN"], base / "n", NORTH, "PN1", "House^Gregory")
    store_study(s, s.nodes["MODS"], base / "s", SOUTH, "PS1", "Other^Doc")
    store_study(s, s.nodes["MODS"], base / "s2", SOUTH2, "PS2", "Other^Doc")
    # Break-glass: erin (north) opens the south study, stating why. (Her TOTP
    # code of this 30 s step was spent on enrolment: a recovery code it is.)
    p = subprocess.run([BASTION, "break-glass", "open",
                        "--config", str(s.config), "--user", "erin", "--study", SOUTH,
                        "--reason", "unconscious patient transferred from south"],
                       input="%s\n%s\n" % (PASSWORD, recovery["erin"][0]), capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    dest_proc = subprocess.Popen(["storescp", "-aet", "DEST", "+tls", dest.key, dest.cert, "+cf", s.ca, "-od",
                                  str(out), str(dest_port)], env=dict(os.environ, TCP_NODELAY="1"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    yield {"server": s, "ws": s.nodes["WS1"], "tokens": tokens, "secrets": secrets, "idp": idp, "base": base}
    dest_proc.terminate()
    dest_proc.wait(timeout=10)
    s.stop()


# Expected visibility: principal -> studies it may see (None = the node itself, no user identity).
VISIBLE = {
    None: {NORTH, SOUTH, SOUTH2},    # the node WS1 (scope all) without user identity
    "rad_north": {NORTH},
    "rad_south": {SOUTH, SOUTH2},
    "house": {NORTH},                # referring physician of the north study only
    "tech_north": {NORTH},
    "granted": {SOUTH2},             # explicit grant
    "erin": {NORTH, SOUTH},          # her site + the break-glass study
    "admin2": None,                  # no image access at all (separation of duties)
    "audra": None,
    "res": None,                     # de-identified only: not yet available, so nothing
}
CAN_MOVE = {None, "rad_north", "rad_south", "erin"}
CAN_STORE = {None, "tech_north"}


def as_user(world, name):
    return {} if name is None else {"user": name, "password": world["tokens"][name]}


def find_studies(world, name, level):
    keys = ["-k", "StudyInstanceUID="] if level != "PATIENT" else ["-k", "PatientID=", "-k",
                                                                    "NumberOfPatientRelatedStudies="]
    r = scu(world["server"], world["ws"], "find", "--root", "patient" if level == "PATIENT" else "study",
            "--level", level, *keys, **as_user(world, name))
    return r


@pytest.mark.parametrize("name", list(VISIBLE))
def test_access_matrix(world, name):
    visible = VISIBLE[name]
    everything = {NORTH: "PN1", SOUTH: "PS1", SOUTH2: "PS2"}
    # C-FIND at each level: exactly the visible studies, no trace of the others.
    for level in LEVELS:
        r = find_studies(world, name, level)
        assert "ASSOCIATION accepted" in r.stdout, r.stdout + r.stderr
        st, _ = status_of(r)
        if visible is None:
            assert st == "0x0124" and not matches(r), (level, r.stdout)
            continue
        assert st == "0x0000", (level, r.stdout)
        # (Instances the store checks below add live in studies of patient PX: ignored here.)
        rows = [m for m in matches(r) if m.get("00100020") != "PX" and m.get("0020000D", "").rsplit(".", 1)[0] !=
                PREFIX + "79"]
        if level == "PATIENT":
            assert {m["00100020"] for m in rows} == {everything[s] for s in visible}, (level, rows)
            for m in rows:  # counts reveal nothing outside the scope
                assert m["00201200"] == "1", m
        else:
            assert {m["0020000D"] for m in rows} == visible, (level, rows)
        text = r.stdout
        for hidden in set(everything) - visible:
            assert hidden not in text and everything[hidden] not in text
    # C-GET and C-MOVE of each study: in scope -> all instances; out of scope -> 0124H, nothing sent.
    for study in everything:
        allowed = visible is not None and study in visible
        g = scu(world["server"], world["ws"], "get", "--level", "STUDY", "-k", "StudyInstanceUID=" + study,
                **as_user(world, name))
        st, completed = status_of(g)
        if allowed:
            assert (st, completed) == ("0x0000", 2), (study, g.stdout)
        else:
            assert st == "0x0124" and "RECEIVED" not in g.stdout, (study, g.stdout)
        m = scu(world["server"], world["ws"], "move", "--level", "STUDY", "-k", "StudyInstanceUID=" + study,
                "--dest", "DEST", **as_user(world, name))
        st, completed = status_of(m)
        if allowed and name in CAN_MOVE:
            assert (st, completed) == ("0x0000", 2), (study, m.stdout)
        else:
            assert st == "0x0124", (study, m.stdout)
    http_matrix(world, name, visible, everything)
    # C-STORE of a new instance.
    f = world["base"] / ("new-%s.dcm" % name)
    n = list(VISIBLE).index(name) + 1
    instance(f, "PX", "PAT^PX", PREFIX + "79.%d" % n, PREFIX + "79.%d.1" % n, PREFIX + "79.%d.1.1" % n)
    r = scu(world["server"], world["ws"], "store", str(f), **as_user(world, name))
    expected = "0x0000" if name in CAN_STORE else "0x0124"
    assert ("STATUS " + expected) in r.stdout.replace("0X", "0x"), r.stdout


def http_matrix(world, name, visible, everything):
    """The same principal over every DICOMweb route: exactly the same studies as over DIMSE."""
    if name is None:
        return  # a node without user identity has no HTTP identity
    h, tok = Https(world["server"]), world["tokens"][name]
    st, rows = h.json("GET", "/dicom-web/studies?StudyInstanceUID=" + "\\".join(everything), token=tok)
    if visible is None:
        assert st == 403, (name, st)
    else:
        assert st == 200 and {r["0020000D"]["Value"][0] for r in rows} == visible, (name, rows)
    for level in ("series", "instances"):
        st, rows = h.json("GET", "/dicom-web/%s?PatientID=" % level, token=tok)
        seen = {r["0020000D"]["Value"][0] for r in rows or []} & set(everything) if st == 200 else set()
        assert seen == (visible or set()), (name, level, st)
    for study in everything:
        allowed = visible is not None and study in visible
        series = study + ".1"
        sop = study + ".1.1"
        for path in ("/dicom-web/studies/%s" % study, "/dicom-web/studies/%s/metadata" % study,
                     "/dicom-web/studies/%s/series/%s" % (study, series),
                     "/dicom-web/studies/%s/series/%s/instances/%s/rendered" % (study, series, sop),
                     "/wado?requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s&contentType=application/dicom"
                     % (study, series, sop)):
            st, _, _ = h.request("GET", path, token=tok)
            assert st == (200 if allowed else 404), (name, path, st)


def test_user_through_a_site_node_sees_the_intersection(world):
    s, wsn = world["server"], world["server"].nodes["WSN"]
    for name, expected in (("rad_south", set()), ("rad_north", {NORTH}), ("erin", {NORTH}), (None, {NORTH})):
        r = scu(s, wsn, "find", "--level", "STUDY", "-k", "StudyInstanceUID=", **as_user(world, name))
        assert status_of(r)[0] == "0x0000", r.stdout
        assert {m["0020000D"] for m in matches(r)} & {NORTH, SOUTH, SOUTH2} == expected, (name, r.stdout)
        g = scu(s, wsn, "get", "--level", "STUDY", "-k", "StudyInstanceUID=" + SOUTH, **as_user(world, name))
        assert status_of(g)[0] == "0x0124", (name, g.stdout)
    # WSN may not move: the user's move permission does not survive the intersection.
    m = scu(s, wsn, "move", "--level", "STUDY", "-k", "StudyInstanceUID=" + NORTH, "--dest", "DEST",
            **as_user(world, "rad_north"))
    assert status_of(m)[0] == "0x0124", m.stdout


def test_every_decision_is_audited_with_its_rule(world):
    r = scu(world["server"], world["ws"], "find", "--level", "STUDY", "-k", "StudyInstanceUID=",
            **as_user(world, "admin2"))
    assert status_of(r)[0] == "0x0124"
    events = world["server"].audit_events()
    finds = [e for e in events if e["action"] == "find"]
    assert finds and all("rule" in e for e in finds)
    assert any(e.get("user") == "admin2" and e["rule"] == "deny:no-permission:find" for e in finds)
    assert any(e.get("user") == "rad_north" and e["rule"].startswith("allow:scope:find") for e in finds)
    for action in ("get", "move", "store", "echo"):
        assert all("rule" in e for e in events if e["action"] == action and e["outcome"] != "failure"), action
    bg = [e for e in events if e["action"] == "break-glass"]
    assert bg and bg[0]["severity"] == "high" and "unconscious" in bg[0]["detail"]


def test_database_dump_holds_no_secret(world):
    s = world["server"]
    dump = b"".join(p.read_bytes() for p in s.data.glob("index.sqlite*"))
    assert dump
    for name, tok in world["tokens"].items():
        assert tok.encode() not in dump, name
        assert world["secrets"][name].encode() not in dump, name
    assert PASSWORD.encode() not in dump
    assert b"$argon2id$v=19$" in dump  # what is there instead


def test_init_creates_only_an_admin_that_must_enrol(tmp_path):
    out = run([BASTION, "init", str(tmp_path / "fresh"), "--port", "0"]).stdout
    otp = re.search(r"one-time password: (\S+)", out).group(1)
    assert len(otp) >= 20
    cfg = str(tmp_path / "fresh" / "bastion.toml")
    users = run([BASTION, "user", "list", "--config", cfg]).stdout.strip().splitlines()
    assert len(users) == 1 and users[0].startswith("admin\t") and "state=must-enrol" in users[0], users
    again = run([BASTION, "init", str(tmp_path / "fresh"), "--port", "0"]).stdout
    assert "one-time password" not in again and "kept" in again


def test_password_and_totp_as_dicom_passcode_work_once(world):
    s, ws = world["server"], world["ws"]
    f = world["base"] / "pw.dcm"
    instance(f, "PN1", "PAT^PN1", NORTH, NORTH + ".1", PREFIX + "78.1")
    time.sleep(30.5 - time.time() % 30)  # the code of the enrolment's 30 s step was spent: take the next one
    code = totp(world["secrets"]["tech_north"])
    ok = s.dcmtk("storescu", ws, "--user", "tech_north", "--password", PASSWORD + code, "-rsp", str(f), check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    again = s.dcmtk("storescu", ws, "--user", "tech_north", "--password", PASSWORD + code, "-rsp", str(f),
                    check=False)
    assert again.returncode != 0 and "reject" in (again.stdout + again.stderr).lower()
    wrong = s.dcmtk("storescu", ws, "--user", "tech_north", "--password", "WRONG" + code, str(f), check=False)
    assert wrong.returncode != 0


def test_positive_response_is_returned_when_requested(world):
    r = scu(world["server"], world["ws"], "echo", pos=True, **as_user(world, "rad_north"))
    assert "ASSOCIATION accepted" in r.stdout and "IDENTITY-RESPONSE present" in r.stdout, r.stdout
    assert status_of(r)[0] == "0x0000"


def test_jwt_identities(world):
    s, ws, idp, base = world["server"], world["ws"], world["idp"], world["base"]

    def attempt(tok, name):
        f = base / (name + ".jwt")
        f.write_text(tok)
        return scu(s, ws, "find", "--level", "STUDY", "-k", "StudyInstanceUID=", jwt_file=f, pos=True)

    good = attempt(idp.token("jwtrad"), "good")
    assert "ASSOCIATION accepted" in good.stdout, good.stdout
    seen = {m["0020000D"] for m in matches(good)} & {NORTH, SOUTH, SOUTH2}
    assert seen == {NORTH}  # roles and site from the claims
    now = int(time.time())
    forged = {
        "expired": idp.token("jwtrad", exp=now - 600, iat=now - 900, nbf=now - 900),
        "alg-none": idp.unsigned("jwtrad"),
        "hs256-public-key": idp.hs256_with_public_key("jwtrad"),
        "wrong-aud": idp.token("jwtrad", aud="another-app"),
        "wrong-iss": idp.token("jwtrad", iss="https://evil.test"),
        "kid-injection": idp.token("jwtrad", headers={"kid": "../../../../dev/null"}),
        "jku": idp.token("jwtrad", headers={"jku": "https://evil.test/jwks.json"}),
    }
    for name, tok in forged.items():
        r = attempt(tok, name)
        assert "ASSOCIATION rejected" in r.stdout and not matches(r), (name, r.stdout)
    # storescu --jwt, the DCMTK tool itself.
    f = base / "jwt-store.dcm"
    instance(f, "PN1", "PAT^PN1", NORTH, NORTH + ".1", PREFIX + "78.2")
    (base / "good2.jwt").write_text(idp.token("jwttech", roles=["technologist"]))
    ok = s.dcmtk("storescu", ws, "--jwt", str(base / "good2.jwt"), "-rsp", str(f), check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (base / "expired.jwt").write_text(forged["expired"])
    bad = s.dcmtk("storescu", ws, "--jwt", str(base / "expired.jwt"), str(f), check=False)
    assert bad.returncode != 0


def test_any_identity_on_plaintext_listener_is_refused(tmp_path):
    s = Server(tmp_path / "b", extra_config=AUTH_CONFIG + "\n")
    text = s.config.read_text().replace("[limits]", "[dicom.plain]\naddress = '127.0.0.1'\nport = 0\n"
                                        "allow = ['127.0.0.1/32']\n\n[limits]", 1)
    s.config.write_text(text)
    s.bastion("node", "add", "--ae", "LEGACY", "--cidr", "127.0.0.1/32", "--perm", "echo,find")
    otp = add_user(s, "alice", ["radiologist"], "main")
    secret, _ = enrol(s, "alice", otp)
    tok = token(s, "alice", "echo,find")
    s.start()
    try:
        plain = run(["echoscu", "-aet", "LEGACY", "-aec", "BASTION", "127.0.0.1", str(s.plain_port)], check=False)
        assert plain.returncode == 0, plain.stdout + plain.stderr  # the node itself may echo
        r = scu(s, Node("LEGACY", "", ""), "echo", user="alice", password=tok, port=s.plain_port, tls=False)
        assert "ASSOCIATION rejected" in r.stdout, r.stdout
        pw = scu(s, Node("LEGACY", "", ""), "echo", user="alice", password=PASSWORD + totp(secret),
                 port=s.plain_port, tls=False)
        assert "ASSOCIATION rejected" in pw.stdout, pw.stdout
        f = tmp_path / "x.dcm"
        instance(f, "P", "P^P", PREFIX + "77.1", PREFIX + "77.1.1", PREFIX + "77.1.1.1")
        st = run(["storescu", "-aet", "LEGACY", "-aec", "BASTION", "--user", "alice", "--password", tok,
                  "127.0.0.1", str(s.plain_port), str(f)], check=False)
        assert st.returncode != 0 and "reject" in (st.stdout + st.stderr).lower()
    finally:
        s.stop()
