"""Transcoding and compressed images (issue 4, R20): WADO-RS gives each
object in a syntax the client accepts (Explicit VR Little Endian by default,
decoded in the sandboxed codec workers), frames decode to native pixels,
/rendered draws compressed images, and a codec worker that dies or is fed
hostile data costs one request, never the server."""
import io
import os
import signal
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from conftest import Server, run
from datasets import PREFIX
from identity import AUTH_CONFIG, add_user, enrol, token
from web import Https, image_size, multipart, typed_parts

SAMPLES = Path("/usr/lib/python3/dist-packages/pydicom/data/test_files")
HTTP_CONFIG = "\n[http]\nenabled = true\naddress = '127.0.0.1'\nport = 0\nmax_body = 100000000\n"
EXPLICIT = "1.2.840.10008.1.2.1"
DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DICOM_EXPLICIT = 'multipart/related; type="application/dicom"; transfer-syntax=' + EXPLICIT
RAW = 'multipart/related; type="application/octet-stream"'
# Each variant of pydicom's MR_small (64x64, 16 bits) gets its own instance UID here.
MR_VARIANTS = {"implicit": "MR_small_implicit.dcm", "bigendian": "MR_small_bigendian.dcm", "rle": "MR_small_RLE.dcm",
               "jpegls": "MR_small_jpeg_ls_lossless.dcm", "j2k_lossless": "MR_small_jp2klossless.dcm"}
STUDY = PREFIX + "91.1"


def relabel(src, dst, n, study=STUDY, series=None):
    ds = pydicom.dcmread(str(src))
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or study + ".1"
    ds.SOPInstanceUID = study + ".1.%d" % n
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "PCODEC"
    ds.save_as(str(dst))  # pixel data and transfer syntax as they were
    return ds.SOPInstanceUID


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    base = tmp_path_factory.mktemp("codec")
    s = Server(base / "bastion", extra_config=AUTH_CONFIG + HTTP_CONFIG + "\n[codec]\nworkers = 2\ntimeout_s = 20\n")
    enrol(s, "tech", add_user(s, "tech", ["technologist", "radiologist"], "north"))
    tok = token(s, "tech", "echo,store,find,get")
    files, uids = [], {}
    for n, (name, sample) in enumerate(sorted(MR_VARIANTS.items())):
        f = base / (name + ".dcm")
        uids[name] = relabel(SAMPLES / sample, f, n)
        files.append(f)
    for n, (name, sample) in enumerate((("jpeg_ext", "JPGExtended.dcm"), ("rtdose_rle", "rtdose_rle.dcm"),
                                        ("rgb_rle", "SC_rgb_rle_2frame.dcm"), ("rgb_jpeg", "SC_rgb_jpeg_dcmtk.dcm"),
                                        ("deflate", "image_dfl.dcm")), start=10):
        f = base / (name + ".dcm")
        uids[name] = relabel(SAMPLES / sample, f, n)
        files.append(f)
    s.start()
    h = Https(s)
    body, headers = multipart(files)
    st, resp = h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)
    assert st == 200, resp
    yield {"server": s, "https": h, "token": tok, "uids": uids, "files": {f.stem: f for f in files}, "base": base}
    s.stop()


def url(uid, tail=""):
    return "/dicom-web/studies/%s/series/%s.1/instances/%s%s" % (STUDY, STUDY, uid, tail)


def get_parts(c, path, accept=None):
    st, hd, data = c["https"].request("GET", path, token=c["token"], headers={"Accept": accept} if accept else {})
    assert st == 200, (path, accept, st, data[:300])
    return typed_parts(hd["content-type"], data)


def mr_pixels():
    return pydicom.dcmread(str(SAMPLES / "MR_small.dcm")).PixelData


def test_default_accept_gives_explicit_little_endian_with_the_same_pixels(codec):
    for name in ("implicit", "bigendian", "rle", "jpegls", "deflate"):
        for accept in (None, 'multipart/related; type="application/dicom"', DICOM_EXPLICIT):
            [(headers, data)] = get_parts(codec, url(codec["uids"][name]), accept)
            assert headers["content-type"] == "application/dicom; transfer-syntax=" + EXPLICIT, (name, headers)
            back = pydicom.dcmread(io.BytesIO(data))
            assert back.file_meta.TransferSyntaxUID == EXPLICIT and back.SOPInstanceUID == codec["uids"][name]
            original = pydicom.dcmread(str(codec["files"][name]))
            if name == "deflate":
                assert back.PixelData == original.PixelData
            else:  # lossless: exactly MR_small's pixels, whatever the stored encoding
                assert back.PixelData == mr_pixels(), name
            assert back.PatientID == "PCODEC" and back.Rows == original.Rows


def test_transfer_syntax_star_gives_the_stored_bytes(codec):
    for name, f in codec["files"].items():
        [(headers, data)] = get_parts(codec, url(codec["uids"][name]), DICOM_ANY)
        stored = pydicom.dcmread(str(f))
        assert headers["content-type"].endswith(stored.file_meta.TransferSyntaxUID)
        assert pydicom.dcmread(io.BytesIO(data)) == stored, name


def test_lossy_and_undecodable_objects_keep_their_syntax_by_default_and_refuse_explicit(codec):
    h, tok = codec["https"], codec["token"]
    # Lossy JPEG: the default does not decompress it (PS3.18 8.7.3.5.2) ...
    [(headers, data)] = get_parts(codec, url(codec["uids"]["jpeg_ext"]))
    assert headers["content-type"].endswith("1.2.840.10008.1.2.4.51")
    # ... but asking for Explicit VR Little Endian decodes it, to what DCMTK's dcmdjpeg makes of it.
    [(headers, data)] = get_parts(codec, url(codec["uids"]["jpeg_ext"]), DICOM_EXPLICIT)
    assert headers["content-type"].endswith(EXPLICIT)
    ref = codec["base"] / "jpeg_ext.decoded.dcm"
    run(["dcmdjpeg", str(codec["files"]["jpeg_ext"]), str(ref)])
    assert pydicom.dcmread(io.BytesIO(data)).PixelData == pydicom.dcmread(str(ref)).PixelData
    # JPEG 2000 lossless: no decoder here. The default gives it as stored; Explicit VR LE is refused.
    [(headers, _)] = get_parts(codec, url(codec["uids"]["j2k_lossless"]))
    assert headers["content-type"].endswith("1.2.840.10008.1.2.4.90")
    assert h.request("GET", url(codec["uids"]["j2k_lossless"]), token=tok, headers={"Accept": DICOM_EXPLICIT})[0] == 406
    # A whole study where one instance cannot be given in the one syntax asked for: 406, nothing sent.
    st, _, _ = h.request("GET", "/dicom-web/studies/" + STUDY, token=tok, headers={"Accept": DICOM_EXPLICIT})
    assert st == 406
    assert h.request("GET", "/dicom-web/studies/" + STUDY, token=tok,
                     headers={"Accept": 'multipart/related; type="application/dicom"; q=0'})[0] == 406
    assert h.request("GET", "/dicom-web/studies/" + STUDY, token=tok, headers={"Accept": 'multipart/related; "'})[0] == 400
    # The study with the default: every instance, each in Explicit VR LE or (lossy, J2K) as stored.
    got = get_parts(codec, "/dicom-web/studies/" + STUDY)
    assert len(got) == len(codec["files"])
    syntaxes = sorted(hd["content-type"].split("=")[-1] for hd, _ in got)
    assert syntaxes.count(EXPLICIT) == 7, syntaxes


def test_frames_decode_to_native_pixels(codec):
    rtdose = pydicom.dcmread(str(SAMPLES / "rtdose.dcm"))  # the same 15 frames, uncompressed
    frame_bytes = 10 * 10 * 4
    got = get_parts(codec, url(codec["uids"]["rtdose_rle"], "/frames/3,1,15"), RAW)
    assert [hd["content-type"] for hd, _ in got] == ["application/octet-stream; transfer-syntax=" + EXPLICIT] * 3
    assert [d for _, d in got] == [rtdose.PixelData[frame_bytes * i:frame_bytes * (i + 1)] for i in (2, 0, 14)]
    for name in ("rle", "jpegls"):
        [(_, frame)] = get_parts(codec, url(codec["uids"][name], "/frames/1"), RAW)
        assert frame == mr_pixels(), name
    # RGB RLE, two frames: the decoded frames match pydicom's own RLE decoder.
    rgb = pydicom.dcmread(str(codec["files"]["rgb_rle"]))
    got = get_parts(codec, url(codec["uids"]["rgb_rle"], "/frames/2"), RAW)
    assert got[0][1] == rgb.pixel_array[1].tobytes()
    # The stored compressed frames when that syntax is accepted, by transfer-syntax or media type.
    from pydicom.encaps import generate_pixel_data_frame
    stored = list(generate_pixel_data_frame(rgb.PixelData, 2))
    got = get_parts(codec, url(codec["uids"]["rgb_rle"], "/frames/1,2"), RAW + "; transfer-syntax=*")
    assert [d for _, d in got] == stored
    got = get_parts(codec, url(codec["uids"]["rgb_rle"], "/frames/2"), 'multipart/related; type="image/dicom-rle"')
    assert got[0][0]["content-type"] == "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5" and got[0][1] == stored[1]
    h, tok = codec["https"], codec["token"]
    assert h.request("GET", url(codec["uids"]["rgb_rle"], "/frames/1"), token=tok,
                     headers={"Accept": 'multipart/related; type="image/jls"'})[0] == 406
    assert h.request("GET", url(codec["uids"]["j2k_lossless"], "/frames/1"), token=tok, headers={"Accept": RAW})[0] == 406
    assert h.request("GET", url(codec["uids"]["rtdose_rle"], "/frames/16"), token=tok, headers={"Accept": RAW})[0] == 404


def test_frames_spread_over_several_fragments(codec, tmp_path):
    """JPEG-LS made by DCMTK's dcmcjpls with 1 KB fragments, with and without a Basic Offset Table."""
    import numpy as np
    from pydicom.encaps import generate_pixel_data_frame
    h, tok = codec["https"], codec["token"]
    src = pydicom.dcmread(str(SAMPLES / "MR_small.dcm"))
    frames = [src.pixel_array, (src.pixel_array[::-1, :] // 2).astype(src.pixel_array.dtype)]
    src.NumberOfFrames, src.PatientID = 2, "PCODEC"
    src.PixelData = np.stack(frames).tobytes()
    for n, table in ((30, "+ot"), (31, "-ot")):
        src.StudyInstanceUID, src.SeriesInstanceUID = STUDY, STUDY + ".1"
        src.SOPInstanceUID = STUDY + ".1.%d" % n
        src.file_meta.MediaStorageSOPInstanceUID = src.SOPInstanceUID
        plain, packed = tmp_path / ("plain%d.dcm" % n), tmp_path / ("packed%d.dcm" % n)
        src.save_as(str(plain))
        run(["dcmcjpls", "+fs", "1", table, str(plain), str(packed)])
        ds = pydicom.dcmread(str(packed))
        assert len(ds.PixelData) > 2 * 8 * 1024 // 8 and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
        stored = [bytes(f) for f in generate_pixel_data_frame(ds.PixelData, 2)]
        body, headers = multipart([packed])
        st, resp = h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)
        assert st == 200, resp
        got = get_parts(codec, url(src.SOPInstanceUID, "/frames/2,1"), RAW + "; transfer-syntax=*")
        assert [d.rstrip(b"\0") for _, d in got] == [stored[1].rstrip(b"\0"), stored[0].rstrip(b"\0")], table
        # Decoded, they are the original pixels (JPEG-LS lossless).
        got = get_parts(codec, url(src.SOPInstanceUID, "/frames/2,1"), RAW)
        assert [d for _, d in got] == [frames[1].tobytes(), frames[0].tobytes()], table


def test_rendered_compressed_images(codec):
    h, tok = codec["https"], codec["token"]
    for name, size in (("jpeg_ext", (256, 1024)), ("rle", (64, 64)), ("jpegls", (64, 64)), ("rgb_jpeg", (100, 100)),
                       ("rgb_rle", (100, 100))):
        for accept, magic in (("image/jpeg", b"\xff\xd8"), ("image/png", b"\x89PNG")):
            st, hd, img = h.request("GET", url(codec["uids"][name], "/rendered"), token=tok, headers={"Accept": accept})
            assert st == 200 and hd["content-type"] == accept and img.startswith(magic), (name, st, img[:200])
            assert image_size(img) == size, name
        st, hd, thumb = h.request("GET", url(codec["uids"][name], "/thumbnail"), token=tok, headers={"Accept": "image/png"})
        assert st == 200 and max(image_size(thumb)) <= 128
    # The 15-frame dose grid: a frame other than the first.
    st, _, img = h.request("GET", url(codec["uids"]["rtdose_rle"], "/frames/7/rendered"), token=tok,
                           headers={"Accept": "image/png"})
    assert st == 200 and image_size(img) == (10, 10)
    st, _, _ = h.request("GET", url(codec["uids"]["j2k_lossless"], "/rendered"), token=tok)
    assert st == 406  # no JPEG 2000 decoder: said, not faked


def codec_workers(server):
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "codec-worker"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_killed_worker_costs_nothing_but_a_restart(codec):
    h, tok, s = codec["https"], codec["token"], codec["server"]
    path = url(codec["uids"]["rle"], "/rendered")
    assert h.request("GET", path, token=tok)[0] == 200
    workers = codec_workers(s)
    assert workers, "the codec worker runs as a child of serve"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    # The next requests are served (a request may meet the dead worker: 500 for that one only).
    codes = [h.request("GET", path, token=tok)[0] for _ in range(4)]
    assert codes[-1] == 200 and set(codes) <= {200, 500}, codes
    assert set(codec_workers(s)).isdisjoint(workers)
    assert s.alive()


def test_hostile_compressed_data_gets_an_error_and_the_server_keeps_serving(codec):
    h, tok, s = codec["https"], codec["token"], codec["server"]
    src = pydicom.dcmread(str(codec["files"]["rle"]))
    from pydicom.encaps import encapsulate, generate_pixel_data_frame
    good = next(generate_pixel_data_frame(src.PixelData, 1))
    hostile = {
        # RLE header claiming 15 segments at offsets far beyond the fragment.
        40: (src, b"\x0f\x00\x00\x00" + b"\xff\xff\xff\x7f" * 15 + b"\0" * 4),
        # A run that writes far past the frame.
        41: (src, good[:64] + b"\x80" * 4000),
        # The same fragment cut short.
        42: (src, good[: len(good) // 3]),
    }
    jls = pydicom.dcmread(str(codec["files"]["jpegls"]))
    jls_frame = next(generate_pixel_data_frame(jls.PixelData, 1))
    hostile[43] = (jls, jls_frame[:40] + bytes(range(256)) * 4)  # JPEG-LS header, then noise
    hostile[44] = (jls, jls_frame[:30])                            # truncated inside the header
    jpg = pydicom.dcmread(str(codec["files"]["jpeg_ext"]))
    jpg_frame = next(generate_pixel_data_frame(jpg.PixelData, 1))
    hostile[45] = (jpg, jpg_frame[:200] + b"\xff\xd9")             # JPEG ending right after its header
    paths = []
    for n, (template, frame) in hostile.items():
        ds = template.copy()
        ds.SOPInstanceUID = STUDY + ".1.%d" % n
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, STUDY + ".1"
        ds.PixelData = encapsulate([frame + (b"\0" if len(frame) % 2 else b"")])
        f = codec["base"] / ("hostile%d.dcm" % n)
        ds.save_as(str(f))
        body, headers = multipart([f])
        assert h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)[0] == 200
        paths.append(url(ds.SOPInstanceUID))
    # Structurally broken streams are refused (406 with the decoder's reason); damaged data that
    # the RLE and JPEG decoders tolerate gives an image of the declared size, never more.
    refused, tolerated = {"40", "43", "44"}, {"41", "42", "45"}
    for p in paths:
        n = p[-2:]
        for tail, accept in (("/rendered", "image/png"), ("/frames/1", RAW), ("", DICOM_EXPLICIT)):
            st, hd, body = h.request("GET", p + tail, token=tok, headers={"Accept": accept})
            assert s.alive()
            if n in refused:
                assert st == 406 and b"error" in body, (n, tail, st)
                continue
            assert n in tolerated and st in (200, 406), (n, tail, st)
            template = jpg if n == "45" else src
            if st == 200 and tail == "/frames/1":
                [(_, frame)] = typed_parts(hd["content-type"], body)
                assert len(frame) == template.Rows * template.Columns * template.BitsAllocated // 8
            if st == 200 and tail == "/rendered":
                assert image_size(body) == (template.Columns, template.Rows)
        # Between hostile requests, a good one still works.
        assert h.request("GET", url(codec["uids"]["jpegls"], "/rendered"), token=tok)[0] == 200
    # Each failure is in the audit trail with its reason.
    failures = [e for e in s.audit_events("--action", "wado-rendered") if e["outcome"] == "failure"]
    assert any("cannot" in e.get("detail", "") for e in failures)


def test_large_objects_stream_segment_by_segment_and_a_bad_segment_aborts(codec, tmp_path):
    """Over 8 MiB, WADO-RS decrypts and authenticates segment by segment as it sends; a tampered
    segment ends the response early (never altered bytes) and raises an integrity record."""
    import numpy as np
    h, tok, s = codec["https"], codec["token"], codec["server"]
    src = pydicom.dcmread(str(SAMPLES / "MR_small.dcm"))
    frames = 80  # 80 x 256 x 256 x 2 bytes = 10 MiB
    rng = np.random.default_rng(7)
    src.NumberOfFrames, src.Rows, src.Columns, src.PatientID = frames, 256, 256, "PCODEC"
    src.PixelData = rng.integers(0, 4096, size=(frames, 256, 256), dtype=np.uint16).tobytes()
    study = PREFIX + "92.1"
    src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID = study, study + ".1", study + ".1.1"
    src.file_meta.MediaStorageSOPInstanceUID = src.SOPInstanceUID
    f = tmp_path / "big.dcm"
    src.save_as(str(f))
    blobs = codec["server"].data / "blobs" / "objects"
    before = set(blobs.rglob("*-*-*-*-*"))
    body, headers = multipart([f])
    assert h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)[0] == 200
    path = "/dicom-web/studies/%s/series/%s/instances/%s" % (study, study + ".1", src.SOPInstanceUID)
    [(headers, data)] = get_parts(codec, path, DICOM_ANY)
    assert int(headers["content-length"]) == len(data) and pydicom.dcmread(io.BytesIO(data)) == pydicom.dcmread(str(f))
    # Flip one byte in the middle of its blob: the first segments still go out, then the response stops.
    [blob] = set(blobs.rglob("*-*-*-*-*")) - before
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    blob.write_bytes(bytes(raw))
    import http.client
    with pytest.raises(http.client.IncompleteRead) as cut:
        h.request("GET", path, token=tok, headers={"Accept": DICOM_ANY})
    assert 0 < len(cut.value.partial) < len(data)  # streamed up to the bad segment, not buffered
    assert s.alive()
    alerts = [e for e in s.audit_events("--action", "integrity") if e.get("study") == study]
    assert alerts and alerts[-1]["outcome"] == "failure" and "authentication" in alerts[-1]["detail"]


def test_every_pydicom_sample_file_stows_and_comes_back_as_stored(codec, tmp_path):
    """Every Part-10 file Debian's python3-pydicom ships (each given its own UIDs): STOW-RS stores it
    or refuses it with a reason, and every stored one comes back (transfer-syntax=*) equal."""
    h, tok = codec["https"], codec["token"]
    study = PREFIX + "93.1"
    files, names = [], []
    for n, src in enumerate(sorted(SAMPLES.glob("*.dcm"))):
        try:
            ds = pydicom.dcmread(str(src))
            ds.file_meta.TransferSyntaxUID, ds.SOPInstanceUID, ds.SOPClassUID  # noqa: B018 (must exist)
        except Exception:
            continue  # not a Part-10 file with a SOP instance (no meta, truncated on purpose)
        f = tmp_path / src.name
        try:
            relabel(src, f, 100 + n, study=study, series="%s.%d" % (study, n))
        except Exception:
            continue  # pydicom cannot write it back (deliberately broken samples)
        files.append(f)
        names.append(src.name)
    assert len(files) >= 50, names
    body, headers = multipart(files)
    st, resp = h.json("POST", "/dicom-web/studies", token=tok, body=body, headers=headers)
    assert st in (200, 202), resp
    stored = {i["00081155"]["Value"][0] for i in resp.get("00081199", {}).get("Value", [])}
    refused = {i["00081155"]["Value"][0]: i["00081197"]["Value"][0] for i in resp.get("00081198", {}).get("Value", [])}
    by_uid = {pydicom.dcmread(str(f)).SOPInstanceUID: name for f, name in zip(files, names)}
    assert set(by_uid) == stored | set(refused)
    assert sorted(by_uid[u] for u in refused) == sorted(EXPECTED_REFUSALS), refused
    for f, name in zip(files, names):
        ds = pydicom.dcmread(str(f))
        if ds.SOPInstanceUID not in stored:
            continue
        [(headers, data)] = get_parts(codec, "/dicom-web/studies/%s/series/%s/instances/%s" % (
            study, ds.SeriesInstanceUID, ds.SOPInstanceUID), DICOM_ANY)
        assert pydicom.dcmread(io.BytesIO(data)) == ds, name
        if name == "SC_ybr_full_422_uncompressed.dcm":  # 2 samples per pixel, not 3 (PS3.3 C.7.6.3.1.2)
            [(_, frame)] = get_parts(codec, "/dicom-web/studies/%s/series/%s/instances/%s/frames/1" % (
                study, ds.SeriesInstanceUID, ds.SOPInstanceUID), RAW)
            assert frame == ds.PixelData[:ds.Rows * ds.Columns * 2]


# Samples that STOW-RS refuses, and why: both are truncated on purpose (MR_truncated's
# pixel data is shorter than its geometry, rtplan_truncated ends inside an element): 0xC000.
EXPECTED_REFUSALS = ["MR_truncated.dcm", "rtplan_truncated.dcm"]
