"""Reads Bastion's pack files (layout in src/storage/pack_format.h, docs/storage.md) so that
tests can find, count and damage stored blobs the way a disk fault or an attacker would."""
import struct
import zlib
import uuid
from pathlib import Path

HEADER = 48


def records(blob_root):
    """Every record of every pack under `blob_root` (the data directory's blobs/), in file
    order: dicts with id, kind ("blob", "removed" or "note": the sealed audit record kept with a
    stored object, after it), path, offset (of the content), length."""
    out = []
    for pack in sorted(Path(blob_root, "packs").glob("*.pack")):
        data = pack.read_bytes()
        at = 0
        while len(data) - at >= HEADER:
            h = data[at:at + HEADER]
            if h[:4] != b"BPK1" or struct.unpack("<I", h[44:48])[0] != zlib.crc32(h[:44]):
                break
            length = struct.unpack("<Q", h[8:16])[0]
            if length > len(data) - at - HEADER:
                break
            out.append({"id": str(uuid.UUID(bytes=h[16:32])), "kind": {1: "blob", 2: "removed", 3: "note"}[h[4]],
                        "path": pack, "offset": at + HEADER, "length": length})
            at += HEADER + length
    return out


def blobs(blob_root):
    """The blobs a store holds: live pack records plus files of their own (large blobs)."""
    ids = {r["id"] for r in records(blob_root) if r["kind"] == "blob"}
    ids |= {p.name for p in Path(blob_root, "objects").rglob("*-*-*-*-*") if p.is_file()}
    return ids


def flip_content_byte(record, at=None):
    """Flips one byte of a record's content (its middle by default)."""
    pos = record["offset"] + (record["length"] // 2 if at is None else at)
    with open(record["path"], "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x01]))
