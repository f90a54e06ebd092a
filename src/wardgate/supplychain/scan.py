"""Scan a file or folder for unsafe serialisation: the entry point the CLI, BOM and gateway use.

It finds each file's format by magic bytes, opens containers the way their loaders do (zip as
PyTorch reads it, 7z, gzip/bz2/xz/zlib, tar) and recurses, and hands every pickle stream to the
allow-list VM in :mod:`wardgate.supplychain.pickle_scan`. Anything it cannot parse is an
*error* on the report, and anything in a format it does not know (random bytes, a sealed
``.enc`` file, an empty folder) is *unscanned*: never silently clean. Text files with an
extension on the inert allow-list (``ScanOptions.inert_extensions``) are the exception.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import lzma
import mmap
import os
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from wardgate.supplychain import formats, zipread
from wardgate.supplychain.allowlist import default_allowlist
from wardgate.supplychain.findings import Finding, ScanReport, Severity
from wardgate.supplychain.gguf_meta import GGUFFormatError, parse_metadata
from wardgate.supplychain.gguf_template import audit_templates
from wardgate.supplychain.pickle_scan import (
    PickleScanOptions,
    iter_streams,
    literal_header,
    probe_pickle,
)

_TORCH_STORAGE = re.compile(r"(^|/)data/\d+$")


@dataclass
class ScanOptions:
    allowlist: frozenset[str] = field(default_factory=default_allowlist)
    #: Largest decompressed member we hold in memory; larger ones are errors, not skipped.
    max_member_bytes: int = 2 * 1024**3
    max_depth: int = 4
    #: variant name -> known-good sha256 for GGUF chat templates.
    pinned_templates: dict[str, str] = field(default_factory=dict)
    #: Extensions whose files are inert when they hold text (configs, tokenizers, READMEs).
    inert_extensions: frozenset[str] = formats.DEFAULT_INERT_EXTENSIONS


class _View(io.RawIOBase):
    """A seekable, read-only file over a memoryview (mmap or bytes) without copying it."""

    def __init__(self, buf: memoryview | bytes) -> None:
        super().__init__()
        self._buf = memoryview(buf)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._buf) if size is None or size < 0 else min(len(self._buf), self._pos + size)
        data = bytes(self._buf[self._pos : end])
        self._pos = end
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = len(self._buf) if size is None or size < 0 else self._pos + size
        end = self._pos
        buf = self._buf
        # Scan in blocks: protocol-0 lines are short, so this stays cheap.
        while end < min(limit, len(buf)):
            block = bytes(buf[end : min(end + 4096, limit, len(buf))])
            nl = block.find(b"\n")
            if nl >= 0:
                end += nl + 1
                break
            end += len(block)
        data = bytes(buf[self._pos : end])
        self._pos = end
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._buf)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class _Scanner:
    def __init__(self, report: ScanReport, options: ScanOptions) -> None:
        self.report = report
        self.options = options

    def add(self, finding: Finding) -> None:
        self.report.add(finding)

    def error(self, code: str, message: str, location: str) -> None:
        """Could not scan: reported as a finding too, so nothing unscanned looks clean."""
        self.report.errors.append(f"{location}: {message}")
        self.add(Finding(Severity.HIGH, code, message, location))

    # -- dispatch -------------------------------------------------------------------------
    def scan_buffer(
        self,
        buf: memoryview | bytes,
        location: str,
        depth: int,
        *,
        name_hint: str = "",
        model_dir: str | None = None,
        strict_pickle: bool = False,
        torch_pickle: bool = False,
        torch_member: bool = False,
    ) -> None:
        if depth > self.options.max_depth:
            self.error("scan.too_deep", "containers nested too deeply to scan", location)
            return
        head = bytes(buf[:1024])
        kind = formats.detect(head)
        if kind in ("unknown", "zlib", "lzma", "protobuf") and strict_pickle:
            kind = "pickle"
        if kind not in ("pickle", "zip"):
            is_pickle, complete = probe_pickle(cast(IO[bytes], _View(buf)), self.options.allowlist)
            if kind == "unknown" and is_pickle:
                kind = "pickle"
            elif complete and kind != "pickle":
                # Another format's magic, yet the bytes also unpickle to imports: a polyglot.
                # pickle.load() would run it, so scan that view too.
                self.report.formats.append("pickle-polyglot")
                self._scan_pickle(buf, f"{location}#as-pickle", depth)
        if kind == "protobuf":
            kind = formats.protobuf_kind(bytes(buf)) or "unknown"
        if kind in ("zlib", "lzma"):
            kind = self._maybe_decompress(buf, kind, location, depth)
            if kind == "done":
                return
        if kind == "unknown":
            self._unknown(buf, location, name_hint, depth, torch_member=torch_member)
            return
        self.report.formats.append(kind)
        handler = getattr(self, f"_scan_{kind.replace('-', '_')}", None)
        if handler is None:
            return
        handler(
            buf,
            location,
            depth,
            name_hint=name_hint,
            model_dir=model_dir,
            torch_pickle=torch_pickle,
        )

    def _unknown(
        self,
        buf: memoryview | bytes,
        location: str,
        name_hint: str,
        depth: int,
        *,
        torch_member: bool,
    ) -> None:
        """No known format: inert text by the allow-list, or unscanned (never clean)."""
        if torch_member:
            return  # torch.load reads its other members as raw bytes or text, never code
        if len(buf) == 0 and depth > 0:
            return  # an empty archive member holds nothing a loader could run
        if formats.is_inert_text(name_hint or location, buf, self.options.inert_extensions):
            self.report.formats.append("text")
            return
        self.report.formats.append("unknown")
        self.report.unscanned.append(f"{location}: format not recognised, so not scanned")

    def _scan_wardgate_encrypted(
        self, buf: memoryview | bytes, location: str, depth: int, **kw: Any
    ) -> None:
        self.report.unscanned.append(
            f"{location}: encrypted (wardgate model encrypt): scan the plaintext; the gateway "
            "verifies it after decrypting at load"
        )

    # -- pickle ---------------------------------------------------------------------------
    def _scan_pickle(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        options = PickleScanOptions(
            allowlist=self.options.allowlist, persistent_ids=bool(kw.get("torch_pickle"))
        )
        view = cast(IO[bytes], _View(buf))
        for stream in iter_streams(view, location, options, self.add):
            self.report.globals_seen.update(stream.globals)
        # iter_streams reports trailing garbage as a parse error of the next "stream"

    # -- containers -----------------------------------------------------------------------
    def _scan_zip(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        view = memoryview(buf)
        try:
            members = zipread.members(view)
        except (zipread.ZipFormatError, ValueError, IndexError) as exc:
            self.error("zip.corrupt", f"zip archive cannot be read: {exc}", location)
            return
        names = {m.name for m in members}
        is_torch = any(n.endswith("data.pkl") for n in names)
        is_keras = "config.json" in names and "metadata.json" in names
        if is_torch:
            self.report.formats.append("pytorch-zip")
        if is_keras:
            self.report.formats.append("keras")
        for member in members:
            if member.name.endswith("/"):
                continue
            where = f"{location}!{member.name}"
            if is_torch and _TORCH_STORAGE.search(member.name):
                continue  # raw tensor bytes; torch reads them as a storage, never unpickles
            try:
                data = zipread.member_data(view, member, self.options.max_member_bytes)
            except (zipread.ZipFormatError, zlib.error) as exc:
                self.error("zip.member_unreadable", str(exc), where)
                continue
            self.report.files_scanned += 1
            if is_keras and member.name == "config.json":
                self._keras_json(bytes(data), where)
                continue
            strict = member.name.endswith(".pkl")
            self.scan_buffer(
                data,
                where,
                depth + 1,
                name_hint=member.name,
                strict_pickle=strict,
                torch_pickle=is_torch and strict,
                torch_member=is_torch,
            )

    def _scan_7z(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        import py7zr

        try:
            with py7zr.SevenZipFile(io.BytesIO(bytes(buf)), mode="r") as archive:
                infos = archive.list()
                total = sum(int(i.uncompressed or 0) for i in infos)
                if total > self.options.max_member_bytes:
                    self.error("7z.too_large", "7z archive expands past the scan limit", location)
                    return
                with tempfile.TemporaryDirectory(prefix="wardgate-scan-") as tmp:
                    archive.extractall(path=tmp)  # noqa: S202 - py7zr rejects ../ names
                    root = Path(tmp)
                    for file in sorted(
                        p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                    ):
                        rel = file.relative_to(root).as_posix()
                        self.report.files_scanned += 1
                        self.scan_buffer(file.read_bytes(), f"{location}!{rel}", depth + 1)
        except Exception as exc:  # py7zr raises a zoo of exception types
            self.error("7z.corrupt", f"7z archive cannot be read: {exc}", location)

    def _scan_tar(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        try:
            with tarfile.open(fileobj=io.BytesIO(bytes(buf)), mode="r:") as archive:
                for info in archive:
                    if not info.isfile():
                        continue
                    if info.size > self.options.max_member_bytes:
                        self.error(
                            "tar.too_large", "member past the scan limit", f"{location}!{info.name}"
                        )
                        continue
                    handle = archive.extractfile(info)
                    if handle is None:
                        continue
                    self.report.files_scanned += 1
                    self.scan_buffer(handle.read(), f"{location}!{info.name}", depth + 1)
        except tarfile.TarError as exc:
            self.error("tar.corrupt", f"tar archive cannot be read: {exc}", location)

    def _decompress(self, buf: memoryview | bytes, kind: str) -> bytes:
        limit = self.options.max_member_bytes
        data = bytes(buf)
        if kind == "gzip":
            out = zlib.decompressobj(47).decompress(data, limit + 1)
        elif kind == "zlib":
            out = zlib.decompressobj().decompress(data, limit + 1)
        elif kind == "bz2":
            out = bz2.BZ2Decompressor().decompress(data, limit + 1)
        elif kind in ("xz", "lzma"):
            out = lzma.LZMADecompressor().decompress(data, limit + 1)
        else:
            raise ValueError(kind)
        if len(out) > limit:
            raise ValueError("decompresses past the scan limit (possible bomb)")
        return out

    def _maybe_decompress(
        self, buf: memoryview | bytes, kind: str, location: str, depth: int
    ) -> str:
        """zlib and raw lzma have weak magic: only treat them as such if they decompress."""
        try:
            out = self._decompress(buf, kind)
        except (zlib.error, lzma.LZMAError, ValueError, EOFError):
            return "unknown"
        self.report.formats.append(kind)
        self.scan_buffer(out, f"{location}|{kind}", depth + 1)
        return "done"

    def _compressed(self, buf: memoryview | bytes, location: str, depth: int, kind: str) -> None:
        try:
            out = self._decompress(buf, kind)
        except (zlib.error, lzma.LZMAError, OSError, ValueError, EOFError) as exc:
            self.error(f"{kind}.corrupt", f"{kind} stream cannot be decompressed: {exc}", location)
            return
        self.scan_buffer(out, f"{location}|{kind}", depth + 1)

    def _scan_gzip(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        self._compressed(buf, location, depth, "gzip")

    def _scan_bz2(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        self._compressed(buf, location, depth, "bz2")

    def _scan_xz(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        self._compressed(buf, location, depth, "xz")

    def _scan_lz4(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        self.error("lz4.unsupported", "lz4-compressed data cannot be scanned here", location)

    def _scan_joblib_zlib_legacy(
        self, buf: memoryview | bytes, location: str, depth: int, **kw: Any
    ) -> None:
        # joblib < 0.10: b"ZF" + 16-byte hex length + zlib stream.
        self._compressed(bytes(buf[18:]), location, depth, "zlib")

    # -- numpy ----------------------------------------------------------------------------
    def _scan_npy(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        import numpy as np

        view = memoryview(buf)
        try:
            major = view[6]
            if major == 1:
                (hlen,) = memoryview(bytes(view[8:10])).cast("H")
                start = 10
            else:
                (hlen,) = memoryview(bytes(view[8:12])).cast("I")
                start = 12
            header = literal_header(bytes(view[start : start + hlen]).decode("latin1"))
            dtype = np.dtype(header["descr"])
            shape = tuple(header["shape"])
        except (ValueError, SyntaxError, KeyError, TypeError, IndexError) as exc:
            self.error("numpy.corrupt", f".npy header cannot be read: {exc}", location)
            return
        data_start = start + hlen
        if dtype.hasobject:
            self.add(
                Finding(
                    Severity.INFO,
                    "numpy.object_array",
                    "object array: its elements are a pickle (np.load needs allow_pickle=True)",
                    location,
                )
            )
            self._scan_pickle(view[data_start:], f"{location}#objects", depth)
            return
        count = 1
        for dim in shape:
            count *= int(dim)
        if len(view) - data_start < count * dtype.itemsize:
            self.error("numpy.truncated", "array data is shorter than its header says", location)

    # -- other formats --------------------------------------------------------------------
    def _scan_safetensors(
        self, buf: memoryview | bytes, location: str, depth: int, **kw: Any
    ) -> None:
        formats.check_safetensors(memoryview(buf), location, self.add)

    def _scan_hdf5(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        try:
            formats.check_hdf5(io.BytesIO(bytes(buf)), location, self.add)
        except (OSError, ValueError) as exc:
            self.error("hdf5.corrupt", f"HDF5 file cannot be read: {exc}", location)

    def _keras_json(self, data: bytes, location: str) -> None:
        import json

        try:
            config = json.loads(data)
        except ValueError:
            self.error("keras.corrupt", "config.json is not JSON", location)
            return
        formats.check_keras_config(config, location, self.add)

    def _scan_savedmodel(
        self, buf: memoryview | bytes, location: str, depth: int, **kw: Any
    ) -> None:
        try:
            formats.check_savedmodel(bytes(buf), location, self.add)
        except ValueError as exc:
            self.error("tensorflow.corrupt", f"SavedModel protobuf is corrupt: {exc}", location)

    def _scan_onnx(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        formats.check_onnx(bytes(buf), location, self.add, kw.get("model_dir"))

    def _scan_gguf(self, buf: memoryview | bytes, location: str, depth: int, **kw: Any) -> None:
        try:
            meta = parse_metadata(buf)
        except GGUFFormatError as exc:
            self.error("gguf.corrupt", f"GGUF header cannot be read: {exc}", location)
            return
        for audit in audit_templates(
            meta.chat_templates(), location=location, pinned=self.options.pinned_templates
        ):
            for finding in audit.findings:
                self.add(finding)


def _map_file(path: Path) -> tuple[memoryview | bytes, Any]:
    size = path.stat().st_size
    if size == 0:
        return b"", None
    handle: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    finally:
        handle.close()
    return memoryview(mapped), mapped


def scan_path(path: str | os.PathLike[str], options: ScanOptions | None = None) -> ScanReport:
    """Scan one file, or every file under a folder (symlinks are reported, not followed)."""
    options = options or ScanOptions()
    root = Path(path)
    report = ScanReport(path=str(root))
    scanner = _Scanner(report, options)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    files = (
        [root]
        if root.is_file()
        else sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    )
    if not files:
        report.unscanned.append(f"{root}: no files to scan")
    for file in files:
        location = file.name if file == root else file.relative_to(root).as_posix()
        if file.is_symlink() and root.is_dir():
            scanner.add(Finding(Severity.LOW, "scan.symlink", "symlink not followed", location))
            continue
        view, mapped = _map_file(file)
        try:
            report.files_scanned += 1
            scanner.scan_buffer(view, location, 0, name_hint=file.name, model_dir=str(file.parent))
        finally:
            if mapped is not None:
                del view
                # A view may still be referenced; then the GC unmaps it later.
                with contextlib.suppress(BufferError):
                    mapped.close()
    return report
