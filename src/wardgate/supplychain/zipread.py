"""A zip reader that reads archives the way PyTorch (miniz) does, not the way ``zipfile`` does.

Why not ``zipfile``: three picklescan CVEs (2025-1944, -1945, -10156) are zip files that
``zipfile`` rejects (local header name differs from the central directory, flag bits set,
bad CRC) while ``torch.load`` happily loads them. A scanner that gives up where the loader
carries on is a bypass. This reader trusts the central directory for names and sizes, reads
each member's data through its local header, and ignores CRCs, flag bits and local names,
like miniz. Members it cannot decompress are reported, never skipped.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"


class ZipFormatError(Exception):
    """The archive's directory cannot be read at all."""


@dataclass(frozen=True)
class ZipMember:
    name: str
    method: int
    compressed_size: int
    size: int
    header_offset: int
    flags: int


def is_zip(head: bytes) -> bool:
    return head.startswith(_LOCAL) or head.startswith(_EOCD)


def _find_eocd(buf: memoryview) -> int:
    tail_start = max(0, len(buf) - (65_535 + 22))
    tail = bytes(buf[tail_start:])
    index = tail.rfind(_EOCD)
    if index < 0:
        raise ZipFormatError("no end-of-central-directory record (truncated or not a zip)")
    return tail_start + index


def members(buf: memoryview) -> list[ZipMember]:
    """Central-directory entries, including ZIP64 sizes and offsets."""
    eocd = _find_eocd(buf)
    if eocd + 22 > len(buf):
        raise ZipFormatError("truncated end-of-central-directory record")
    (_, _, _, _, count, cd_size, cd_offset, _) = struct.unpack_from("<4sHHHHIIH", buf, eocd)
    if count == 0xFFFF or cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        locator = eocd - 20
        if locator < 0 or bytes(buf[locator : locator + 4]) != _EOCD64_LOCATOR:
            raise ZipFormatError("ZIP64 archive without a ZIP64 locator")
        (eocd64_offset,) = struct.unpack_from("<Q", buf, locator + 8)
        if bytes(buf[eocd64_offset : eocd64_offset + 4]) != _EOCD64:
            raise ZipFormatError("ZIP64 end-of-central-directory record not found")
        count, cd_size, cd_offset = struct.unpack_from("<QQQ", buf, eocd64_offset + 32)
    result: list[ZipMember] = []
    pos = cd_offset
    for _ in range(count):
        if bytes(buf[pos : pos + 4]) != _CENTRAL:
            raise ZipFormatError(f"central directory entry missing at offset {pos}")
        (flags, method) = struct.unpack_from("<HH", buf, pos + 8)
        (csize, usize) = struct.unpack_from("<II", buf, pos + 20)
        (name_len, extra_len, comment_len) = struct.unpack_from("<HHH", buf, pos + 28)
        (offset,) = struct.unpack_from("<I", buf, pos + 42)
        name = bytes(buf[pos + 46 : pos + 46 + name_len]).decode("utf-8", "replace")
        extra = bytes(buf[pos + 46 + name_len : pos + 46 + name_len + extra_len])
        usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        result.append(ZipMember(name, method, csize, usize, offset, flags))
        pos += 46 + name_len + extra_len + comment_len
    return result


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            values = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        pos += 4 + length
    return usize, csize, offset


def member_data(buf: memoryview, member: ZipMember, limit: int) -> memoryview | bytes:
    """The member's uncompressed bytes (a view for stored members: no copy)."""
    off = member.header_offset
    if bytes(buf[off : off + 4]) != _LOCAL:
        raise ZipFormatError(f"{member.name}: no local header at offset {off}")
    name_len, extra_len = struct.unpack_from("<HH", buf, off + 26)
    start = off + 30 + name_len + extra_len
    end = start + member.compressed_size
    if end > len(buf):
        raise ZipFormatError(f"{member.name}: data runs past the end of the archive (truncated)")
    raw = buf[start:end]
    if member.method == 0:
        return raw
    if member.method == 8:
        decompressor = zlib.decompressobj(-15)
        out = decompressor.decompress(raw, limit + 1)
        if len(out) > limit:
            raise ZipFormatError(f"{member.name}: decompresses past the {limit}-byte scan limit")
        return out
    raise ZipFormatError(f"{member.name}: unsupported compression method {member.method}")


def iter_members(buf: memoryview) -> Iterator[ZipMember]:
    yield from members(buf)
