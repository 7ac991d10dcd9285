"""A minimal DICOM Upper Layer client for hostile-input tests.

Stock SCUs (storescu, pynetdicom) parse and validate what they send, so
they cannot deliver a truncated or malicious data set; this client sends
exactly the bytes it is given, over TLS with a client certificate or plain
TCP. It implements only what the tests need: A-ASSOCIATE, P-DATA with a
C-STORE or C-ECHO command, reading the response status, A-RELEASE.
"""
import socket
import ssl
import struct

APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _item(item_type, payload):
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _uid(uid):
    b = uid.encode()
    return b + (b"\0" if len(b) % 2 else b"")


def _elem(group, element, value):
    """An implicit VR little endian element of the command set."""
    return struct.pack("<HHI", group, element, len(value)) + value


class Association:
    def __init__(self, host, port, calling, called, contexts, tls=None, timeout=30):
        """contexts: list of (abstract syntax, [transfer syntaxes]); ids 1, 3, 5..."""
        raw = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(tls["ca"])
            ctx.load_cert_chain(tls["cert"], tls["key"])
            ctx.check_hostname = False
            raw = ctx.wrap_socket(raw)
        self.sock = raw
        self.accepted = {}
        items = _item(0x10, APP_CONTEXT)
        for i, (abstract, syntaxes) in enumerate(contexts):
            pc = struct.pack(">BBBB", 2 * i + 1, 0, 0, 0) + _item(0x30, abstract.encode())
            for ts in syntaxes:
                pc += _item(0x40, ts.encode())
            items += _item(0x20, pc)
        user = _item(0x51, struct.pack(">I", 65536)) + _item(0x52, b"1.2.3.4")
        items += _item(0x50, user)
        body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode() + b"\0" * 32 + items
        self._send(0x01, body)
        pdu_type, data = self._recv_pdu()
        if pdu_type != 0x02:
            raise ConnectionRefusedError("association rejected (PDU type 0x%02x)" % pdu_type)
        pos = 68
        while pos + 4 <= len(data):
            t, _, length = struct.unpack(">BBH", data[pos:pos + 4])
            if t == 0x21 and data[pos + 6] == 0:
                ctx_id = data[pos + 4]
                ts_len = struct.unpack(">H", data[pos + 10:pos + 12])[0]
                self.accepted[ctx_id] = data[pos + 12:pos + 12 + ts_len].decode().rstrip("\0")
            pos += 4 + length

    def _send(self, pdu_type, body):
        self.sock.sendall(struct.pack(">BBI", pdu_type, 0, len(body)) + body)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by peer")
            buf += chunk
        return buf

    def _recv_pdu(self):
        head = self._recv_exact(6)
        pdu_type, _, length = struct.unpack(">BBI", head)
        return pdu_type, self._recv_exact(length)

    def _pdata(self, ctx_id, payload, command):
        # Fragments of at most 16 kB; the last one flagged.
        step = 16384
        chunks = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
        for i, chunk in enumerate(chunks):
            flags = (1 if command else 0) | (2 if i == len(chunks) - 1 else 0)
            pdv = struct.pack(">IB", len(chunk) + 2, ctx_id) + bytes([flags]) + chunk
            self._send(0x04, pdv)

    def _command(self, ctx_id, fields):
        body = b"".join(_elem(0x0000, e, v) for e, v in sorted(fields.items()))
        cmd = _elem(0x0000, 0x0000, struct.pack("<I", len(body))) + body
        self._pdata(ctx_id, cmd, True)

    def _read_status(self):
        """Reads P-DATA until a complete command set; returns (0000,0900)."""
        cmd = b""
        while True:
            pdu_type, data = self._recv_pdu()
            if pdu_type != 0x04:
                raise ConnectionError("unexpected PDU 0x%02x" % pdu_type)
            pos, last = 0, False
            while pos < len(data):
                length = struct.unpack(">I", data[pos:pos + 4])[0]
                flags = data[pos + 5]
                cmd += data[pos + 6:pos + 4 + length]
                last = last or (flags & 3) == 3
                pos += 4 + length
            if last:
                break
        pos = 0
        while pos + 8 <= len(cmd):
            group, element, length = struct.unpack("<HHI", cmd[pos:pos + 8])
            if (group, element) == (0x0000, 0x0900):
                return struct.unpack("<H", cmd[pos + 8:pos + 10])[0]
            pos += 8 + length
        raise ValueError("no status in response")

    def echo(self, ctx_id=1):
        self._command(ctx_id, {0x0002: _uid("1.2.840.10008.1.1"), 0x0100: struct.pack("<H", 0x0030),
                               0x0110: struct.pack("<H", 1), 0x0800: struct.pack("<H", 0x0101)})
        return self._read_status()

    def store_raw(self, ctx_id, sop_class, sop_instance, dataset, message_id=1):
        """Sends a C-STORE with `dataset` as raw bytes; returns the DIMSE status."""
        self._command(ctx_id, {0x0002: _uid(sop_class), 0x0100: struct.pack("<H", 0x0001),
                               0x0110: struct.pack("<H", message_id), 0x0700: struct.pack("<H", 0),
                               0x0800: struct.pack("<H", 0x0000), 0x1000: _uid(sop_instance)})
        self._pdata(ctx_id, dataset, False)
        return self._read_status()

    def release(self):
        try:
            self._send(0x05, b"\0" * 4)
            self._recv_pdu()
        finally:
            self.sock.close()
