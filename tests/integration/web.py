"""HTTPS helpers for the DICOMweb tests: requests over TLS checked against the test CA."""
import http.client
import json
import re
import ssl
import uuid


class Https:
    def __init__(self, server):
        self.server = server
        self.ctx = ssl.create_default_context(cafile=server.ca)

    def request(self, method, path, body=None, headers=None, token=None, raw_headers=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.server.https_port, context=self.ctx, timeout=60)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        out = (r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        conn.close()
        return out

    def json(self, method, path, token=None, **kw):
        st, h, body = self.request(method, path, token=token, **kw)
        return st, (json.loads(body) if body else None)


def multipart(files, boundary=None, quoted=True):
    boundary = boundary or "bastion-test-" + uuid.uuid4().hex
    body = b""
    for f in files:
        data = f if isinstance(f, bytes) else open(f, "rb").read()
        body += b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
    body += b"--" + boundary.encode() + b"--\r\n"
    t = '"application/dicom"' if quoted else "application/dicom"
    return body, {"Content-Type": "multipart/related; type=%s; boundary=%s" % (t, boundary)}


def parts(content_type, body):
    """The parts' bodies, in order."""
    return [data for _, data in typed_parts(content_type, body)]


def typed_parts(content_type, body):
    """Like parts(), with each part's headers: [(headers dict, data)]."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type).group(1).encode()
    out = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().strip().split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        out.append((headers, data[:-2] if data.endswith(b"\r\n") else data))
    return out


def image_size(data):
    """(width, height) of a PNG or a baseline/extended JPEG, from its header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert data[:2] == b"\xff\xd8", "neither PNG nor JPEG"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise AssertionError("no SOF marker")
