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
    boundary = re.search(r'boundary="?([^";]+)"?', content_type).group(1).encode()
    out = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        out.append(data[:-2] if data.endswith(b"\r\n") else data)
    return out
