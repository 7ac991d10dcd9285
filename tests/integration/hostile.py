"""Hostile data sets, named by what they attack (explicit VR little endian)."""
import struct

CT = "1.2.840.10008.5.1.4.1.1.2"
LONG_VRS = {b"OB", b"OW", b"SQ", b"UN", b"UT"}


def el(tag, vr, value, length=None):
    vr = vr.encode()
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    n = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    head += struct.pack("<HI", 0, n) if vr in LONG_VRS else struct.pack("<H", n)
    return head + value


def base(sop, study="1.2.826.0.1.3680043.10.1429.66", rows=None, cols=None, frames=None, pixels=b"\0\0"):
    out = el(0x00080016, "UI", CT.encode()) + el(0x00080018, "UI", sop.encode())
    out += el(0x00100010, "PN", b"HOSTILE^TEST") + el(0x00100020, "LO", b"HOSTILE")
    out += el(0x0020000D, "UI", study.encode()) + el(0x0020000E, "UI", (study + ".1").encode())
    if frames:
        out += el(0x00280008, "IS", frames.encode())
    if rows:
        out += el(0x00280010, "US", struct.pack("<H", rows)) + el(0x00280011, "US", struct.pack("<H", cols))
        out += el(0x00280100, "US", struct.pack("<H", 16))
    return out + el(0x7FE00010, "OW", pixels)


def deep_sequence(sop, depth):
    nest = b""
    for _ in range(depth):
        nest += struct.pack("<HH", 0x0008, 0x1115) + b"SQ" + struct.pack("<HI", 0, 0xFFFFFFFF)
        nest += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    for _ in range(depth):
        nest += struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    head = el(0x00080016, "UI", CT.encode()) + el(0x00080018, "UI", sop.encode())
    return head + nest + el(0x0020000D, "UI", b"1.2.3") + el(0x0020000E, "UI", b"1.2.3.4")


def cases():
    """(name, command SOP Instance UID, data set bytes)."""
    ok = "1.2.826.0.1.3680043.10.1429.66.1.1"
    good = base(ok, rows=2, cols=2, pixels=b"\0" * 8)
    return [
        ("truncated", ok, good[:-6]),
        ("truncated_odd", ok, good[:-5]),
        ("len_overflow", ok, base(ok)[:-10] + struct.pack("<HH", 0x7FE0, 0x0010) + b"OB" +
         struct.pack("<HI", 0, 0xFFFFFFF0) + b"\0\0"),
        ("deep_seq_10000", ok, deep_sequence(ok, 10000)),
        ("pixel_bomb", ok, base(ok, rows=65535, cols=65535, frames="2147483647")),
        ("uid_traversal", "1.2.3", base("../../../../tmp/pwn")),
        ("uid_too_long", "1.2.3", base("1." + "2" * 198)),
        ("odd_length", ok, el(0x00080016, "UI", CT.encode()) + struct.pack("<HH", 0x0010, 0x0010) + b"PN" +
         struct.pack("<H", 3) + b"ABC" + el(0x00100020, "LO", b"X") + b"\0"),
        ("zero_bytes", ok, b""),
        ("uid_mismatch", "1.2.3.4.5", good),
    ]
