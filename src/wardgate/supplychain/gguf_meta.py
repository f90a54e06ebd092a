"""Read a GGUF file's key/value metadata without reading (or mapping) its tensors.

Why our own reader: the scanner must give a clear answer on truncated or hostile files (huge
declared lengths, unknown types) instead of a stack trace or a multi-GB allocation, and it only
needs the header. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import IO, Any

GGUF_MAGIC = b"GGUF"
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING = 8
_ARRAY = 9
#: No legitimate metadata string comes near this; a larger length is corruption or an attack.
MAX_STRING = 64 * 1024 * 1024
MAX_ARRAY = 16 * 1024 * 1024

#: general.file_type values (llama.cpp ``llama_ftype``) for the BOM's quantisation field.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
}


class GGUFFormatError(Exception):
    """Not a GGUF file, or a truncated/corrupt header."""


@dataclass
class GGUFMetadata:
    version: int
    tensor_count: int
    kv: dict[str, Any] = field(default_factory=dict)

    @property
    def quantization(self) -> str | None:
        value = self.kv.get("general.file_type")
        return FILE_TYPES.get(value, f"type {value}") if isinstance(value, int) else None

    def chat_templates(self) -> dict[str, str]:
        """Every chat template the file carries: the default one and all named variants."""
        found: dict[str, str] = {}
        default = self.kv.get("tokenizer.chat_template")
        if isinstance(default, str):
            found["default"] = default
        for key, value in self.kv.items():
            prefix = "tokenizer.chat_template."
            if key.startswith(prefix) and isinstance(value, str):
                found[key[len(prefix) :]] = value
        return found


@dataclass(frozen=True)
class SkippedArray:
    """A large array (token lists, merges) we stepped over instead of decoding."""

    item_type: int
    count: int


#: Arrays longer than this are skipped, not decoded: the scanner never needs 50k token strings.
DECODE_ARRAY_LIMIT = 4096


class _Reader:
    """Reads from a buffer by offset (``struct.unpack_from``): no per-field I/O calls."""

    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.buf):
            raise GGUFFormatError("truncated GGUF header")
        data = bytes(self.buf[self.pos : end])
        self.pos = end
        return data

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFFormatError("truncated GGUF header")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > MAX_STRING:
            raise GGUFFormatError(f"GGUF string of {length} bytes is implausible")
        return self.take(length).decode("utf-8", "replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, end = self.buf, self.pos, len(self.buf)
        for _ in range(count):
            if pos + 8 > end:
                raise GGUFFormatError("truncated GGUF header")
            (length,) = struct.unpack_from("<Q", buf, pos)
            if length > MAX_STRING:
                raise GGUFFormatError(f"GGUF string of {length} bytes is implausible")
            pos += 8 + length
        if pos > end:
            raise GGUFFormatError("truncated GGUF header")
        self.pos = pos

    def value(self, kind: int, depth: int = 0) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY and depth < 2:
            item_kind = self.unpack("<I")
            count = self.unpack("<Q")
            if count > MAX_ARRAY:
                raise GGUFFormatError(f"GGUF array of {count} items is implausible")
            if count > DECODE_ARRAY_LIMIT and item_kind in _SCALARS:
                size = struct.calcsize(_SCALARS[item_kind]) * count
                if self.pos + size > len(self.buf):
                    raise GGUFFormatError("truncated GGUF header")
                self.pos += size
                return SkippedArray(item_kind, count)
            if count > DECODE_ARRAY_LIMIT and item_kind == _STRING:
                self.skip_strings(count)
                return SkippedArray(item_kind, count)
            return [self.value(item_kind, depth + 1) for _ in range(count)]
        raise GGUFFormatError(f"unknown GGUF value type {kind}")


def parse_metadata(buf: bytes | memoryview) -> GGUFMetadata:
    """Parse the header and all key/value pairs from the start of ``buf``."""
    reader = _Reader(buf)
    if reader.take(4) != GGUF_MAGIC:
        raise GGUFFormatError("not a GGUF file (bad magic)")
    version = reader.unpack("<I")
    if version == 1:
        tensor_count = reader.unpack("<I")
        kv_count = reader.unpack("<I")
    elif version in (2, 3):
        tensor_count = reader.unpack("<Q")
        kv_count = reader.unpack("<Q")
    else:
        raise GGUFFormatError(f"unsupported GGUF version {version}")
    if kv_count > 1_000_000:
        raise GGUFFormatError(f"GGUF declares {kv_count} metadata keys")
    meta = GGUFMetadata(version=version, tensor_count=tensor_count)
    for _ in range(kv_count):
        key = reader.string()
        kind = reader.unpack("<I")
        meta.kv[key] = reader.value(kind)
    return meta


def read_metadata(source: IO[bytes]) -> GGUFMetadata:
    """Parse from a file object (read whole; use :func:`read_metadata_file` for big files)."""
    return parse_metadata(source.read())


def read_metadata_file(path: str) -> GGUFMetadata:
    """Parse from a file through a read-only memory map: only the header pages are touched."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise GGUFFormatError("empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return parse_metadata(view)
            finally:
                view.release()
