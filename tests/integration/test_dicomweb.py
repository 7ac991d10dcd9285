"""DICOMweb over HTTPS (first part): the login API, STOW-RS, QIDO-RS and
WADO-RS on the same services, index and Policy as DIMSE, with curl-free
stdlib HTTPS clients and the DCMTK tools on the DIMSE side."""
import io
import json
import re
import socket
import ssl
import time
from pathlib import Path

import pydicom
import pytest

from conftest import BASTION, Server, assert_tls_policy, run
from datasets import PREFIX, instance
from identity import AUTH_CONFIG, PASSWORD, Idp, add_user, enrol, matches, scu, token, totp
from web import Https, multipart, parts

SAMPLES = Path("/usr/lib/python3/dist-packages/pydicom/data/test_files")
SAMPLE_NAMES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "JPGExtended.dcm"]
HTTP_CONFIG = "\n[http]\nenabled = true\naddress = '127.0.0.1'\nport = 0\nmax_body = 100000000\n"
NORTH = PREFIX + "81.1"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    base = tmp_path_factory.mktemp("web")
    idp = Idp(base)
    s = Server(base / "bastion", extra_config=AUTH_CONFIG + idp.config() + HTTP_CONFIG)
    s.add_node("MODN", role="modality", site="north")
    s.add_node("WS1", perms="echo,find,get", site="north", scope="all")
    secrets, tokens = {}, {}
    for name, roles, site in (("tech", ["technologist", "radiologist"], "north"), ("south", ["radiologist"], "south")):
        secrets[name], _ = enrol(s, name, add_user(s, name, roles, site))
        tokens[name] = token(s, name, "echo,store,find,get" if name == "tech" else "echo,find,get")
    revoked = token(s, "tech", "find")
    tid = s.bastion("token", "list", "tech").stdout.strip().splitlines()[-1].split("\t")[0]
    s.bastion("token", "revoke", tid)
    s.start()
    yield {"server": s, "https": Https(s), "tokens": tokens, "secrets": secrets, "revoked": revoked, "idp": idp,
           "base": base}
    s.stop()


ROUTES = [("GET", "/dicom-web/studies"), ("GET", "/dicom-web/series"), ("GET", "/dicom-web/instances"),
          ("GET", "/dicom-web/studies/1.2.3"), ("GET", "/dicom-web/studies/1.2.3/series"),
          ("GET", "/dicom-web/studies/1.2.3/instances"), ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4"),
          ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances"),
          ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5"),
    ("GET", "/dicom-web/studies/1.2.3/metadata"), ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/metadata"),
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/metadata"),
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/rendered"),
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/thumbnail"),
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/frames/1/rendered"),
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/bulkdata/7FE00010"),
    ("GET", "/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4"), ("OPTIONS", "/dicom-web"),
    ("DELETE", "/dicom-web/studies/1.2.3"),
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/frames/1"),
          ("POST", "/dicom-web/studies"), ("POST", "/dicom-web/studies/1.2.3"), ("GET", "/api/session"),
          ("GET", "/api/audit")]


def test_every_route_refuses_missing_bad_revoked_expired_tokens(web):
    h = web["https"]
    now = int(time.time())
    bad = {"none": None, "garbage": "bat_0000_0000", "revoked": web["revoked"],
           "expired-jwt": web["idp"].token("x", exp=now - 600, iat=now - 900, nbf=now - 900),
           "foreign-jwt": Idp(web["base"] / "..").token("x")}
    for method, path in ROUTES:
        for name, tok in bad.items():
            st, headers, _ = h.request(method, path, token=tok, body=b"" if method == "POST" else None)
            assert st == 401, (method, path, name, st)
            assert headers["strict-transport-security"].startswith("max-age=")
            assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"


def test_stow_then_qido_wado_and_cfind(web):
    h, s, tok = web["https"], web["server"], web["tokens"]["tech"]
    files = [SAMPLES / n for n in SAMPLE_NAMES if (SAMPLES / n).exists()]
    gen = web["base"] / "gen.dcm"
    instance(gen, "PWEB1", "WEB^ONE", NORTH, NORTH + ".1", NORTH + ".1.1", referring="HOUSE^G")
    files.append(gen)
    body, headers = multipart(files, quoted=False)  # viewers send unquoted type= too
    st, resp = h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)
    stored = {item["00081155"]["Value"][0]: item for item in resp.get("00081199", {}).get("Value", [])}
    assert st == 200, resp
    assert len(stored) == len(files)
    for f in files:
        ds = pydicom.dcmread(str(f))
        uid = ds.SOPInstanceUID
        url = stored[uid]["00081190"]["Value"][0]
        assert url.endswith("/instances/" + uid)
        # QIDO finds it at the image level, by its own keys.
        st, rows = h.json("GET", "/dicom-web/instances?SOPInstanceUID=%s&includefield=all" % uid, token=tok)
        assert st == 200 and len(rows) == 1 and rows[0]["0020000D"]["Value"][0] == ds.StudyInstanceUID
        # WADO-RS with transfer-syntax=*: the stored object, whose data set equals what was sent
        # (the default, Explicit VR Little Endian, is tested in test_codecs.py).
        st, rh, data = h.request("GET", url[url.index("/dicom-web"):], token=tok,
                                 headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert st == 200 and rh["content-type"].startswith("multipart/related")
        got = parts(rh["content-type"], data)
        assert len(got) == 1
        back = pydicom.dcmread(io.BytesIO(got[0]))
        assert back == ds, f
    # QIDO matching: exact, wildcard, range, UID list, limit/offset.
    st, rows = h.json("GET", "/dicom-web/studies?PatientID=PWEB1", token=tok)
    assert [r["0020000D"]["Value"][0] for r in rows] == [NORTH]
    assert rows[0]["00100010"]["Value"][0]["Alphabetic"] == "WEB^ONE"
    st, rows = h.json("GET", "/dicom-web/studies?PatientName=web*&StudyDate=20240101-20241231", token=tok)
    assert [r["0020000D"]["Value"][0] for r in rows] == [NORTH]
    st, all_rows = h.json("GET", "/dicom-web/studies?limit=100000000", token=tok)
    assert st == 200 and len(all_rows) >= 2
    st, page = h.json("GET", "/dicom-web/studies?limit=1&offset=1", token=tok)
    assert len(page) == 1 and page[0] == all_rows[1]
    st, _ = h.json("GET", "/dicom-web/studies?NoSuchKey=1", token=tok)
    assert st == 400
    # The same study over C-FIND (DIMSE), through the workstation.
    r = scu(s, s.nodes["WS1"], "find", "--level", "STUDY", "-k", "StudyInstanceUID=" + NORTH, "-k", "PatientID=")
    assert [m["00100020"] for m in matches(r)] == ["PWEB1"], r.stdout


def test_cstore_is_visible_over_qido_within_scope_only(web):
    h, s = web["https"], web["server"]
    f = web["base"] / "dimse.dcm"
    st_uid = PREFIX + "82.1"
    instance(f, "PDIMSE", "DIMSE^ONLY", st_uid, st_uid + ".1", st_uid + ".1.1")
    s.dcmtk("storescu", s.nodes["MODN"], str(f))
    st, rows = h.json("GET", "/dicom-web/studies?StudyInstanceUID=" + st_uid, token=web["tokens"]["tech"])
    assert st == 200 and len(rows) == 1
    # The south radiologist sees no trace of it: no rows, and WADO says 404 like for a study that does not exist.
    st, rows = h.json("GET", "/dicom-web/studies?StudyInstanceUID=" + st_uid, token=web["tokens"]["south"])
    assert st == 200 and rows == []
    st, rows = h.json("GET", "/dicom-web/studies?PatientID=PDIMSE", token=web["tokens"]["south"])
    assert rows == []
    st_south, _, _ = h.request("GET", "/dicom-web/studies/" + st_uid, token=web["tokens"]["south"])
    st_none, _, _ = h.request("GET", "/dicom-web/studies/" + PREFIX + "99.9", token=web["tokens"]["tech"])
    assert st_south == st_none == 404
    # A token without store permission cannot STOW.
    body, headers = multipart([f])
    st, resp = h.json("POST", "/dicom-web/studies", token=web["tokens"]["south"], body=body, headers=headers)
    assert st == 409 and resp["00081198"]["Value"][0]["00081197"]["Value"][0] == 0x0124


def test_login_cookie_and_csrf(web):
    h = web["https"]
    time.sleep(30.5 - time.time() % 30)  # the enrolment's TOTP step is spent
    code = totp(web["secrets"]["tech"])
    st, hd, body = h.request("POST", "/api/login", body=json.dumps({"username": "tech", "password": "nope",
                                                                     "code": code}),
                             headers={"Content-Type": "application/json"})
    assert st == 401 and b"invalid credentials" in body
    st, hd, body = h.request("POST", "/api/login", body=json.dumps({"username": "tech", "password": PASSWORD,
                                                                     "code": code}),
                             headers={"Content-Type": "application/json"})
    assert st == 200, body
    cookie = hd["set-cookie"]
    for attr in ("__Host-bastion-session=bss_", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in cookie, cookie
    csrf = json.loads(body)["csrf_token"]
    jar = {"Cookie": cookie.split(";")[0]}
    st, info = h.json("GET", "/api/session", headers=jar)
    assert st == 200 and info["user"] == "tech" and "store" in info["permissions"]
    f = web["base"] / "cookie.dcm"
    instance(f, "PCOOKIE", "COOKIE^ONE", PREFIX + "83.1", PREFIX + "83.1.1", PREFIX + "83.1.1.1")
    body_, headers = multipart([f])
    st, _ = h.json("POST", "/dicom-web/studies", body=body_, headers={**headers, **jar})
    assert st == 403  # the cookie alone does not make a state-changing request
    st, _ = h.json("POST", "/dicom-web/studies", body=body_, headers={**headers, **jar, "X-CSRF-Token": csrf})
    assert st == 200
    st, _ = h.json("POST", "/api/logout", headers={**jar, "X-CSRF-Token": csrf})
    assert st == 200
    st, _ = h.json("GET", "/api/session", headers=jar)
    assert st == 401


def raw(web, data, read=65536):
    ctx = ssl.create_default_context(cafile=web["server"].ca)
    with socket.create_connection(("127.0.0.1", web["server"].https_port), timeout=30) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(data)
            try:
                return tls.recv(read)
            except (ConnectionResetError, ssl.SSLError, socket.timeout):
                return b""


def test_hostile_requests_get_4xx_and_the_server_keeps_serving(web):
    h, tok = web["https"], web["tokens"]["tech"]
    auth = ("Authorization: Bearer %s\r\n" % tok).encode()
    assert raw(web, b"GET /dicom-web/studies/..%2F..%2Fetc HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")[:12] == b"HTTP/1.1 400"
    huge_cl = raw(web, b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\n" + auth +
                  b"Content-Type: multipart/related; boundary=b\r\nContent-Length: 4294967295\r\n\r\n--b\r\n")
    assert huge_cl[:12] in (b"HTTP/1.1 413", b"HTTP/1.1 400"), huge_cl[:80]
    both = raw(web, b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\n" + auth +
               b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert both[:10] == b"HTTP/1.1 4", both[:80]
    long_qs = raw(web, b"GET /dicom-web/studies?PatientID=" + b"A" * 65536 + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
    assert long_qs[:10] == b"HTTP/1.1 4", long_qs[:80]
    many = b"--b\r\n\r\nx\r\n" * 100000 + b"--b--\r\n"  # 100,000 (empty-header) parts, 1 MB
    st, _, _ = h.request("POST", "/dicom-web/studies", token=tok, body=many,
                         headers={"Content-Type": "multipart/related; type=application/dicom; boundary=b"})
    assert st == 413
    body, headers = multipart([b"x"])
    gz_headers = dict(headers, **{"Content-Encoding": "gzip"})
    st, _, _ = h.request("POST", "/dicom-web/studies", token=tok, body=b"\x1f\x8b" + b"\0" * 64, headers=gz_headers)
    assert st == 415
    st, _, _ = h.request("GET", "/dicom-web/studies/1.2.3", token=tok, headers={"Accept": "image/png"})
    assert st == 406
    # Still serving.
    st, rows = h.json("GET", "/dicom-web/studies?limit=1", token=tok)
    assert st == 200 and web["server"].alive()


def test_https_port_offers_only_tls12_13_allowed_suites_and_hsts(tmp_path):
    s = Server(tmp_path / "b", extra_config=HTTP_CONFIG)
    s.start()
    try:
        r = run(["sslscan", "--no-colour", "--no-heartbleed", "127.0.0.1:%d" % s.https_port], timeout=300)
        st, headers, _ = Https(s).request("GET", "/dicom-web/studies")
    finally:
        s.stop()
    assert_tls_policy(r.stdout)
    assert st == 401 and headers["strict-transport-security"].startswith("max-age=63072000")


def test_metadata_rendered_thumbnail_bulkdata_and_wado_uri(web):
    from pydicom.dataset import Dataset
    h, tok = web["https"], web["tokens"]["tech"]
    src = SAMPLES / "CT_small.dcm"
    ds = pydicom.dcmread(str(src))
    body, headers = multipart([src])
    st, _ = h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)
    assert st == 200
    inst = "/dicom-web/studies/%s/series/%s/instances/%s" % (ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                              ds.SOPInstanceUID)
    # The first request makes the JSON from the object and caches it (sealed) in the index; the
    # next ones are served from the cache and must say exactly the same.
    answers = []
    for url in (inst + "/metadata", "/dicom-web/studies/%s/metadata" % ds.StudyInstanceUID, inst + "/metadata"):
        st, meta = h.json("GET", url, token=tok)
        answers.append(meta)
        assert st == 200 and len(meta) == 1
        fetched = {}
        back = Dataset.from_json(meta[0], bulk_data_uri_handler=lambda tag, vr, uri: fetched.setdefault(uri, b"") or b"")
        for e in ds:
            if e.tag.group % 2 == 0 and e.tag != 0x7FE00010:  # standard attributes; pixel data is bulk
                assert back[e.tag].value == e.value, e.tag
        uri = meta[0]["7FE00010"]["BulkDataURI"]
    assert uri.endswith("/bulkdata/7FE00010")
    assert answers[0] == answers[2]
    index = b"".join(p.read_bytes() for p in web["server"].data.glob("index.sqlite*"))
    assert str(ds.PatientName).encode() not in index  # the cached JSON is sealed (the ID, 1CT1, is too short to grep)
    st, hd, data = h.request("GET", uri, token=tok)
    assert st == 200 and parts(hd["content-type"], data)[0] == ds.PixelData
    st, hd, jpg = h.request("GET", inst + "/rendered", token=tok)
    assert st == 200 and hd["content-type"] == "image/jpeg" and jpg[:3] == b"\xff\xd8\xff"
    st, hd, png = h.request("GET", inst + "/frames/1/rendered", token=tok, headers={"Accept": "image/png"})
    assert st == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (ds.Columns, ds.Rows)
    st, hd, thumb = h.request("GET", inst + "/thumbnail", token=tok, headers={"Accept": "image/png"})
    assert st == 200 and max(int.from_bytes(thumb[16:20], "big"), int.from_bytes(thumb[20:24], "big")) <= 128
    q = "/wado?requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s" % (ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                                         ds.SOPInstanceUID)
    st, hd, obj = h.request("GET", q + "&contentType=application/dicom", token=tok)
    assert st == 200 and pydicom.dcmread(io.BytesIO(obj)) == ds
    st, hd, jpg2 = h.request("GET", q, token=tok)
    assert st == 200 and jpg2[:3] == b"\xff\xd8\xff"
    st, _, _ = h.request("GET", q.replace("requestType=WADO", "requestType=NOPE"), token=tok)
    assert st == 400
    # Out of scope: the south radiologist gets 404 on every one of these.
    for url in (inst + "/metadata", inst + "/rendered", uri[uri.index("/dicom-web"):], q):
        assert h.request("GET", url, token=web["tokens"]["south"])[0] == 404, url
    # JPEG 2000 has no decoder here (DCMTK 3.6.7): a clear 406, not a broken image.
    j2k = pydicom.dcmread(str(SAMPLES / "JPEG2000.dcm"))
    body, headers = multipart([SAMPLES / "JPEG2000.dcm"])  # stored again: identical bytes are accepted
    assert h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)[0] == 200
    st, _, _ = h.request("GET", "/dicom-web/studies/%s/series/%s/instances/%s/rendered" % (
        j2k.StudyInstanceUID, j2k.SeriesInstanceUID, j2k.SOPInstanceUID), token=tok)
    assert st == 406
    st, caps = h.json("OPTIONS", "/dicom-web", token=tok)
    assert st == 200 and "qido-rs" in caps["dicomweb"]


def test_delete_needs_the_permission_keeps_the_audit_and_honours_retention(web, tmp_path):
    h, s = web["https"], web["server"]
    uid = PREFIX + "84.1"
    f = web["base"] / "del.dcm"
    instance(f, "PDEL", "DEL^ME", uid, uid + ".1", uid + ".1.1")
    body, headers = multipart([f])
    assert h.json("POST", "/dicom-web/studies", token=web["tokens"]["tech"], body=body, headers=headers)[0] == 200
    assert h.request("DELETE", "/dicom-web/studies/" + uid, token=web["tokens"]["tech"])[0] == 403
    add_user(s, "boss", ["admin"], "north")
    boss = token(s, "boss", "delete")
    st, out = h.json("DELETE", "/dicom-web/studies/" + uid, token=boss)
    assert st == 200 and out["deleted_instances"] == 1
    assert h.json("GET", "/dicom-web/studies?StudyInstanceUID=" + uid, token=web["tokens"]["tech"])[1] == []
    assert h.request("DELETE", "/dicom-web/studies/" + uid, token=boss)[0] == 404
    events = s.audit_events()
    deleted = [e for e in events if e["action"] == "delete" and e["outcome"] == "success"]
    assert deleted and deleted[-1]["study"] == uid and deleted[-1]["severity"] == "high"
    # With a retention period, a fresh study stays.
    r = Server(tmp_path / "r", extra_config=AUTH_CONFIG + HTTP_CONFIG + "\n[retention]\ndays = 30\n")
    add_user(r, "boss", ["admin"], "main")
    add_user(r, "tech", ["technologist"], "main")
    boss_r, tech_r = token(r, "boss", "delete"), token(r, "tech", "store")
    r.start()
    try:
        hr = Https(r)
        assert hr.json("POST", "/dicom-web/studies", token=tech_r, body=body, headers=headers)[0] == 200
        st, out = hr.json("DELETE", "/dicom-web/studies/" + uid, token=boss_r)
        assert st == 409 and "retention" in out["error"]
    finally:
        r.stop()


def test_dicomweb_client_npm_package_round_trip(web, tmp_path):
    """dicomweb-client (pinned in tests/node) stores, finds, retrieves, reads metadata and renders."""
    import os
    node_dir = Path(__file__).resolve().parents[1] / "node"
    files = []
    for i in range(3):
        f = tmp_path / ("n%d.dcm" % i)
        instance(f, "PNODE", "NODE^CLIENT", PREFIX + "86.1", PREFIX + "86.1.%d" % (i % 2 + 1),
                 PREFIX + "86.1.%d.%d" % (i % 2 + 1, i), seed=i)
        files.append(f)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, BASTION_URL="https://127.0.0.1:%d" % web["server"].https_port,
               BASTION_TOKEN=web["tokens"]["tech"], BASTION_FILES=":".join(map(str, files)), BASTION_PATIENT="PNODE",
               BASTION_OUT=str(out), NODE_EXTRA_CA_CERTS=web["server"].ca)
    r = run(["node", str(node_dir / "dicomweb_client_test.mjs")], env=env, timeout=120)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["stored"] == 3 and result["studies"] == [PREFIX + "86.1"], result
    assert result["series"] == 2 and result["instances"] == 3 and result["metadata"] == 3 and result["rendered"] == 3
    originals = {pydicom.dcmread(str(f)).SOPInstanceUID: pydicom.dcmread(str(f)) for f in files}
    for path in result["retrieved"]:
        back = pydicom.dcmread(path)
        assert back == originals[back.SOPInstanceUID]


def test_frames_as_stored(web):
    from pydicom.encaps import generate_pixel_data_frame
    h, tok = web["https"], web["tokens"]["tech"]
    uid = PREFIX + "87.1"
    f = web["base"] / "two-frames.dcm"
    ds = instance(f, "PFRAMES", "FRAMES^TWO", uid, uid + ".1", uid + ".1.1", rows=8)
    second = bytes(range(128))
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData + second
    ds.save_as(str(f), write_like_original=False)
    j2k_path = SAMPLES / "JPEG2000.dcm"
    body, headers = multipart([f, j2k_path])
    assert h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)[0] == 200
    base = "/dicom-web/studies/%s/series/%s/instances/%s/frames/" % (uid, uid + ".1", uid + ".1.1")
    st, hd, data = h.request("GET", base + "2,1", token=tok)
    assert st == 200, data
    got = parts(hd["content-type"], data)
    assert got == [second, ds.PixelData[:128]]
    assert h.request("GET", base + "3", token=tok)[0] == 404
    assert h.request("GET", base + "1,x", token=tok)[0] == 400
    j2k = pydicom.dcmread(str(j2k_path))
    url = "/dicom-web/studies/%s/series/%s/instances/%s/frames/1" % (j2k.StudyInstanceUID, j2k.SeriesInstanceUID,
                                                                     j2k.SOPInstanceUID)
    st, hd, data = h.request("GET", url, token=tok, headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    assert st == 200
    frame = parts(hd["content-type"], data)[0]
    expected = next(generate_pixel_data_frame(j2k.PixelData, 1))
    assert frame.rstrip(b"\0") == expected.rstrip(b"\0")  # fragments are padded to even length
    st, _, _ = h.request("GET", url, token=tok, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    assert st == 406  # no JPEG 2000 decoder in DCMTK 3.6.7: said, not faked
    assert h.request("GET", base + "1", token=web["tokens"]["south"])[0] == 404


def test_request_rate_limits_per_source_and_per_user(tmp_path):
    """Token buckets per source address and per user: 429 with Retry-After, audited once per episode."""
    limits = "rate_per_s = 4\nrate_burst = 8\nuser_rate_per_s = 1000\nuser_rate_burst = 1000\n"
    s = Server(tmp_path / "rl", extra_config=AUTH_CONFIG + HTTP_CONFIG + limits)
    add_user(s, "tech", ["technologist"], "main")
    tok = token(s, "tech", "find")
    s.start()
    try:
        h = Https(s)
        codes = [h.request("GET", "/dicom-web/studies", token=tok)[0] for _ in range(20)]
        assert codes[:8] == [200] * 8 and 429 in codes and set(codes) == {200, 429}, codes
        assert codes.count(200) <= 14, codes  # the burst plus what 4/s refills meanwhile
        st, hd, body = h.request("GET", "/dicom-web/studies", token=tok)
        assert st == 429 and int(hd["retry-after"]) >= 1 and b"too many" in body
        time.sleep(int(hd["retry-after"]) + 0.1)
        assert h.request("GET", "/dicom-web/studies", token=tok)[0] == 200
        # Even requests without credentials count: the limit is met before authentication.
        assert 429 in [h.request("GET", "/dicom-web/studies")[0] for _ in range(12)]
        throttled = s.audit_events("--action", "throttle")
        assert 1 <= len(throttled) <= 3, throttled  # one record per episode, not one per refusal
        assert all(e["source"] == "127.0.0.1" and e["outcome"] == "denied" for e in throttled)
    finally:
        s.stop()
    u = Server(tmp_path / "ru", extra_config=AUTH_CONFIG + HTTP_CONFIG + "user_rate_per_s = 2\nuser_rate_burst = 3\n")
    add_user(u, "tech", ["technologist"], "main")
    add_user(u, "other", ["technologist"], "main")
    tech, other = token(u, "tech", "find"), token(u, "other", "find")
    u.start()
    try:
        h = Https(u)
        codes = [h.request("GET", "/dicom-web/studies", token=tech)[0] for _ in range(8)]
        assert codes[:3] == [200] * 3 and codes[-1] == 429, codes
        assert h.request("GET", "/dicom-web/studies", token=other)[0] == 200  # another user is not held back
        throttled = u.audit_events("--action", "throttle")
        assert [e["user"] for e in throttled] == ["tech"], throttled
    finally:
        u.stop()


def test_sqlmap_finds_no_injection_in_qido_parameters(web, tmp_path):
    """sqlmap (Debian's) against every QIDO-RS parameter, with a valid token: nothing injectable."""
    import os
    s, tok = web["server"], web["tokens"]["tech"]
    params = ["PatientName=WEB%5EONE", "PatientID=PWEB1", "StudyDate=20240101-20241231", "ModalitiesInStudy=CT",
              "StudyInstanceUID=" + NORTH, "limit=10", "offset=0", "includefield=StudyDescription"]
    url = "https://127.0.0.1:%d/dicom-web/studies?%s" % (s.https_port, "&".join(params))
    r = run(["sqlmap", "-u", url, "--headers", "Authorization: Bearer " + tok, "--batch", "--level", "3",
             "--risk", "2", "--threads", "4", "--disable-coloring", "--flush-session",
             "--output-dir", str(tmp_path / "out"), "--tmp-dir", str(tmp_path)],
            env=dict(os.environ, HOME=str(tmp_path)), timeout=1200, check=False)
    out = r.stdout + r.stderr
    (tmp_path / "sqlmap.txt").write_text(out)
    for p in params:
        name = p.split("=")[0]
        assert "GET parameter '%s' does not seem to be injectable" % name in out, (name, out[:6000])
    assert "all tested parameters do not appear to be injectable" in out, out[-3000:]
    assert not re.search(r"appears to be '.*' injectable|is vulnerable", out), out[-3000:]
    assert s.alive()
    st, rows = web["https"].json("GET", "/dicom-web/studies?PatientID=PWEB1", token=tok)
    assert st == 200 and [r["0020000D"]["Value"][0] for r in rows] == [NORTH]


def test_stow_parts_are_stored_concurrently_and_answered_in_order(web, tmp_path):
    """A 60-part STOW-RS request: parts are stored on the store pool while the body is read; the
    response lists every part in the order sent, failures (a non-DICOM part, a conflicting duplicate)
    in place, and every acknowledged instance is found and retrieved intact."""
    h, tok = web["https"], web["tokens"]["tech"]
    study = PREFIX + "88.1"
    files, sops = [], []
    for i in range(60):
        f = tmp_path / ("p%d.dcm" % i)
        sop = "%s.1.%d" % (study, i)
        instance(f, "PSTOWPAR", "STOW^PARALLEL", study, study + ".1", sop, seed=i, rows=32)
        files.append(f)
        sops.append(sop)
    conflicting = tmp_path / "conflict.dcm"
    instance(conflicting, "PSTOWPAR", "STOW^PARALLEL", study, study + ".1", sops[5], seed=999, rows=32)
    body, headers = multipart(files[:30] + [b"not a DICOM file at all"] + files[30:] + [conflicting])
    st, resp = h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)
    assert st == 202, resp
    stored = [i["00081155"]["Value"][0] for i in resp["00081199"]["Value"]]
    assert stored == sops
    failed = resp["00081198"]["Value"]
    assert len(failed) == 2 and failed[1]["00081155"]["Value"][0] == sops[5]
    st, rows = h.json("GET", "/dicom-web/studies/%s/instances?limit=1000" % study, token=tok)
    assert sorted(r["00080018"]["Value"][0] for r in rows) == sorted(sops)
    for i in (0, 5, 59):
        st, hd, data = h.request("GET", "/dicom-web/studies/%s/series/%s.1/instances/%s" % (study, study, sops[i]),
                                 token=tok, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert st == 200 and pydicom.dcmread(io.BytesIO(parts(hd["content-type"], data)[0])) == pydicom.dcmread(str(files[i]))
