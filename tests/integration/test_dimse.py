"""C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE over mutual TLS with DCMTK's own tools."""
import os
import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from conftest import run
from dul import Association
from datasets import PATIENTS, PREFIX, study_uid, write_multi_patient_set

SAMPLES = Path("/usr/lib/python3/dist-packages/pydicom/data/test_files")
SAMPLE_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                "SC_rgb_jpeg_dcmtk.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                "JPEG2000.dcm", "image_dfl.dcm", "JPEG-lossy.dcm"]
# getscu option that makes it accept a stored transfer syntax.
PREFER = {"1.2.840.10008.1.2.5": "+xr", "1.2.840.10008.1.2.4.50": "+xy", "1.2.840.10008.1.2.4.51": "+xx",
          "1.2.840.10008.1.2.4.70": "+xs", "1.2.840.10008.1.2.4.80": "+xt", "1.2.840.10008.1.2.4.90": "+xv",
          "1.2.840.10008.1.2.4.91": "+xw", "1.2.840.10008.1.2.1.99": "+xd"}


def find(server, node, level, keys, root="-S", check=True):
    """Runs findscu; returns the list of response data sets (pydicom)."""
    out = server.base / ("find-%d" % time.monotonic_ns())
    out.mkdir()
    args = [root, "-X", "-od", str(out), "-k", "QueryRetrieveLevel=" + level]
    for k in keys:
        args += ["-k", k]
    server.dcmtk("findscu", node, *args, check=check)
    return [pydicom.dcmread(str(p)) for p in sorted(out.glob("rsp*.dcm"))]


def uids(rows, attr):
    return sorted(str(getattr(r, attr)) for r in rows)


class Stunnel:
    """A TLS client tunnel, the way sites wrap TLS-less tools (getscu, movescu)."""

    def __init__(self, server, node, workdir):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = Path(workdir) / ("stunnel-%s.conf" % node.ae)
        conf.write_text("foreground = yes\npid =\n[dicom]\nclient = yes\naccept = 127.0.0.1:%d\n"
                        "connect = 127.0.0.1:%d\ncert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\n"
                        "sslVersionMin = TLSv1.2\n" % (self.port, server.port, node.cert, node.key, server.ca))
        self.proc = subprocess.Popen(["stunnel4", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("stunnel did not start")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def tunnel(started, tmp_path):
    t = Stunnel(started, started.nodes["MOD1"], tmp_path)
    yield t
    t.close()


def getscu(tunnel, node, outdir, keys, extra=()):
    outdir.mkdir(exist_ok=True)
    args = ["getscu", "+B", "-aet", node.ae, "-aec", "BASTION", "-S", "-od", str(outdir), *extra, "127.0.0.1",
            str(tunnel.port)]
    for k in keys:
        args += ["-k", k]
    return run(args, check=False)


def test_echo_over_tls_with_client_certificate(started):
    r = started.dcmtk("echoscu", started.nodes["MOD1"], "-v")
    assert "Received Echo Response (Success)" in r.stderr + r.stdout


def test_store_and_find_matching(started, tmp_path):
    node = started.nodes["MOD1"]
    files = write_multi_patient_set(tmp_path / "set")
    started.dcmtk("storescu", node, *[str(p) for p in files.values()])

    def studies(*keys, level="STUDY", root="-S"):
        return uids(find(started, node, level, ["StudyInstanceUID="] + list(keys), root), "StudyInstanceUID")

    s = lambda pid, n: study_uid(pid, n)
    assert studies("PatientID=PAT001") == sorted([s("PAT001", "1"), s("PAT001", "2")])
    assert studies("PatientName=SMITH*") == sorted([s("PAT001", "1"), s("PAT001", "2"), s("PAT002", "1")])
    assert studies("PatientName=smith^john") == sorted([s("PAT001", "1"), s("PAT001", "2")])
    assert studies("PatientName=D?E*") == [s("PAT003", "1")]
    assert studies("StudyDate=20230101-20231231") == sorted([s("PAT001", "1"), s("PAT002", "1")])
    assert studies("StudyDate=-20221231") == [s("PAT003", "1")]
    assert studies("AccessionNumber=ACC101") == [s("PAT001", "2")]
    assert studies("ModalitiesInStudy=MR") == [s("PAT001", "1")]
    assert len(studies("PatientID=")) == 4  # universal matching
    assert studies("PatientID=NOSUCH") == []
    lst = uids(find(started, node, "STUDY", ["StudyInstanceUID=%s\\%s" % (s("PAT002", "1"), s("PAT003", "1"))]),
               "StudyInstanceUID")
    assert lst == sorted([s("PAT002", "1"), s("PAT003", "1")])

    rows = find(started, node, "STUDY", ["PatientID=PAT001", "StudyInstanceUID=" + s("PAT001", "1"),
                                          "NumberOfStudyRelatedSeries=", "NumberOfStudyRelatedInstances=",
                                          "ModalitiesInStudy=", "PatientName=", "PatientBirthDate="])
    assert len(rows) == 1
    r = rows[0]
    assert int(r.NumberOfStudyRelatedSeries) == 2 and int(r.NumberOfStudyRelatedInstances) == 5
    assert list(r.ModalitiesInStudy) == ["CT", "MR"]
    assert str(r.PatientName) == "SMITH^JOHN" and r.PatientBirthDate == "19600101"

    series = find(started, node, "SERIES", ["StudyInstanceUID=" + s("PAT001", "1"), "SeriesInstanceUID=",
                                             "Modality=CT", "NumberOfSeriesRelatedInstances="])
    assert uids(series, "SeriesInstanceUID") == [s("PAT001", "1") + ".1"]
    assert int(series[0].NumberOfSeriesRelatedInstances) == 3
    images = find(started, node, "IMAGE", ["StudyInstanceUID=" + s("PAT001", "1"),
                                           "SeriesInstanceUID=" + s("PAT001", "1") + ".2", "SOPInstanceUID="])
    assert uids(images, "SOPInstanceUID") == [s("PAT001", "1") + ".2.1", s("PAT001", "1") + ".2.2"]
    patients = find(started, node, "PATIENT", ["PatientID=PAT00*", "PatientName=",
                                               "NumberOfPatientRelatedStudies=", "NumberOfPatientRelatedInstances="],
                    root="-P")
    by_id = {p.PatientID: p for p in patients}
    assert sorted(by_id) == ["PAT001", "PAT002", "PAT003"]
    assert int(by_id["PAT001"].NumberOfPatientRelatedStudies) == 2
    assert int(by_id["PAT001"].NumberOfPatientRelatedInstances) == 7
    pr_studies = find(started, node, "STUDY", ["PatientID=PAT003", "StudyInstanceUID="], root="-P")
    assert uids(pr_studies, "StudyInstanceUID") == [s("PAT003", "1")]


DEFLATED = "1.2.840.10008.1.2.1.99"


def dataset_bytes(path):
    """The data set of a Part-10 file: everything after its meta information."""
    raw = Path(path).read_bytes()
    assert raw[128:132] == b"DICM"
    group_length = int.from_bytes(raw[140:144], "little")
    return raw[144 + group_length:]


def same_content(a, b):
    """Every element has the same tag and value (pixel data byte for byte).
    Data Set Trailing Padding is ignored, as PS3.10 says it must be, and so is
    the OB/OW choice for encapsulated pixel data: DCMTK re-encodes both."""
    ta = [e.tag for e in a if e.tag != 0xFFFCFFFC]
    tb = [e.tag for e in b if e.tag != 0xFFFCFFFC]
    assert ta == tb
    for tag in ta:
        assert a[tag].value == b[tag].value, a[tag].name
    return True


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_file_stores_and_comes_back_bit_exact_over_cget(started, tunnel, tmp_path, name):
    # One server per sample: several samples share a SOP Instance UID with
    # different bytes, which the archive (rightly) refuses to overwrite.
    node = started.nodes["MOD1"]
    original = pydicom.dcmread(str(SAMPLES / name))
    ts = str(original.file_meta.TransferSyntaxUID)
    extra = [PREFER[ts]] if ts in PREFER else []
    # Exact bytes first (a sender that re-encodes nothing), then storescu,
    # the real modality-side client: the archive answers success for the same
    # bytes or refuses different bytes under the same UID, never overwrites.
    if ts != DEFLATED:  # DCMTK's raw receive does not take a deflated stream; storescu's does
        assoc = Association("127.0.0.1", started.port, node.ae, "BASTION", [(original.SOPClassUID, [ts])],
                            tls=started.tls(node))
        assert assoc.store_raw(1, original.SOPClassUID, original.SOPInstanceUID, dataset_bytes(SAMPLES / name)) == 0
        assoc.release()
    propose = ["-" + extra[0][1:]] if extra else []  # storescu proposes compressed syntaxes only when told to
    r = started.dcmtk("storescu", node, "-v", *propose, str(SAMPLES / name), check=False)
    assert "Store Response (Success)" in r.stdout + r.stderr or "CannotUnderstand" in r.stdout + r.stderr, r.stderr

    out = tmp_path / "get"
    r = getscu(tunnel, node, out, ["StudyInstanceUID=" + original.StudyInstanceUID, "QueryRetrieveLevel=STUDY"], extra)
    got = list(out.iterdir())
    assert len(got) == 1, (name, r.stdout + r.stderr)
    back = pydicom.dcmread(str(got[0]))
    assert back.SOPInstanceUID == original.SOPInstanceUID
    if ts == str(back.file_meta.TransferSyntaxUID):
        assert same_content(back, original), name
        if ts != DEFLATED:  # stored from the exact bytes: they come back bit for bit
            assert dataset_bytes(got[0]) == dataset_bytes(SAMPLES / name), name
    else:  # the retriever accepted only another uncompressed syntax (big endian -> little endian)
        assert back.pixel_array.tolist() == original.pixel_array.tolist()
        assert back.PatientName == original.PatientName


def test_cmove_to_registered_tls_destination_only(started, tunnel, tmp_path):
    node = started.nodes["MOD1"]
    files = write_multi_patient_set(tmp_path / "set")
    started.dcmtk("storescu", node, *[str(p) for p in files.values()])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dest_port = s.getsockname()[1]
    dest_node = started.add_node("DEST", perms="echo", move_port=dest_port)
    out = tmp_path / "moved"
    out.mkdir()
    dest = subprocess.Popen(["storescp", "-aet", "DEST", "+tls", dest_node.key, dest_node.cert, "+cf", started.ca,
                             "-od", str(out), str(dest_port)], env=dict(os.environ, TCP_NODELAY="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        st = study_uid("PAT001", "1")
        r = run(["movescu", "-v", "-aet", "MOD1", "-aec", "BASTION", "-aem", "DEST", "-S", "-k",
                 "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + st, "127.0.0.1", str(tunnel.port)],
                check=False)
        moved = {pydicom.dcmread(str(p)).SOPInstanceUID: p for p in out.iterdir()}
        expected = [sop for sop in files if sop.startswith(st + ".")]
        assert sorted(moved) == sorted(expected), r.stderr
        for sop in expected:
            assert pydicom.dcmread(str(moved[sop])) == pydicom.dcmread(str(files[sop]))
        bad = run(["movescu", "-v", "-aet", "MOD1", "-aec", "BASTION", "-aem", "EVIL", "-S", "-k",
                   "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + st, "127.0.0.1", str(tunnel.port)],
                  check=False)
        text = (bad.stdout + bad.stderr).lower()
        assert "movedestinationunknown" in text or "0xa801" in text, text
    finally:
        dest.terminate()
        dest.wait(timeout=10)


def test_duplicate_sop_identical_is_accepted_different_is_refused(started, tmp_path):
    from datasets import instance
    node = started.nodes["MOD1"]
    a = tmp_path / "a.dcm"
    b = tmp_path / "b.dcm"
    instance(a, "P", "N^N", PREFIX + "7", PREFIX + "7.1", PREFIX + "7.1.1", seed=1)
    instance(b, "P", "N^N", PREFIX + "7", PREFIX + "7.1", PREFIX + "7.1.1", seed=2)
    started.dcmtk("storescu", node, str(a))
    started.dcmtk("storescu", node, str(a))
    r = started.dcmtk("storescu", node, "-v", str(b), check=False)
    assert r.returncode != 0 and "Error: CannotUnderstand" in r.stdout + r.stderr
    log = started.audit_text()
    assert "not overwritten" in log
