"""Format detection by magic bytes, and the checks for formats that are not pickle.

Why magic bytes: CVE-2025-10155 renamed a pickle to ``.bin`` and the scanner picked the wrong
parser. A loader does not care about the extension, so neither do we.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any

from wardgate.supplychain.findings import Finding, Severity
from wardgate.supplychain.pickle_scan import looks_like_pickle

Report = Callable[[Finding], None]

#: ``wardgate model encrypt`` output (``encryption.MAGIC``): sealed, so unreadable to a scan.
WARDGATE_ENCRYPTED_MAGIC = b"WGENC\x00"
#: Extensions whose files loaders read as text (configs, tokenizers, model cards). A file with
#: one of them *and* text content (UTF-8, no NUL) is inert; anything else unknown is unscanned.
DEFAULT_INERT_EXTENSIONS = frozenset({".json", ".txt", ".md", ".yaml", ".yml"})
_TEXT_CHECK_BLOCK = 1024 * 1024


def is_inert_text(name: str, buf: memoryview | bytes, extensions: frozenset[str]) -> bool:
    """Allow-listed extension and UTF-8 text without NUL, checked block by block (no copy
    of a large tokenizer file in memory)."""
    suffix = PurePosixPath(name).suffix.lower()
    if not suffix or suffix not in {e.lower() for e in extensions}:
        return False
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(buf)
    try:
        for start in range(0, len(view), _TEXT_CHECK_BLOCK):
            block = bytes(view[start : start + _TEXT_CHECK_BLOCK])
            if b"\x00" in block:
                return False
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def detect(head: bytes) -> str:
    """Name the container or serialisation format from the first bytes (>= 1 KiB ideally)."""
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(WARDGATE_ENCRYPTED_MAGIC):
        return "wardgate-encrypted"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF\r\n\x1a\n") or head[512:520] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"ZF"):
        return "joblib-zlib-legacy"
    if len(head) >= 9 and head[8:9] == b"{" and _is_safetensors(head):
        return "safetensors"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if looks_like_pickle(head):
        return "pickle"
    if len(head) >= 2 and head[0] == 0x78 and ((head[0] << 8) | head[1]) % 31 == 0:
        return "zlib"
    if head.startswith(b"\x5d\x00\x00"):
        return "lzma"
    if head[:1] == b"\x08":
        return "protobuf"
    return "unknown"


def _is_safetensors(head: bytes) -> bool:
    (length,) = struct.unpack_from("<Q", head, 0)
    return 2 <= length < 100_000_000


# -- safetensors ----------------------------------------------------------------------------
def check_safetensors(buf: memoryview, location: str, report: Report) -> None:
    """Safe by design; we only confirm the header is JSON and offsets stay in the file."""
    (length,) = struct.unpack_from("<Q", buf, 0)
    if 8 + length > len(buf):
        report(Finding(Severity.MEDIUM, "safetensors.truncated", "header past EOF", location))
        return
    try:
        header = json.loads(bytes(buf[8 : 8 + length]))
    except ValueError:
        report(Finding(Severity.MEDIUM, "safetensors.corrupt", "header is not JSON", location))
        return
    data_len = len(buf) - 8 - length
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        offsets = info.get("data_offsets", [0, 0])
        if not (isinstance(offsets, list) and len(offsets) == 2 and offsets[1] <= data_len):
            report(
                Finding(
                    Severity.MEDIUM,
                    "safetensors.truncated",
                    f"tensor {name!r} lies past the end of the file",
                    location,
                )
            )
            return


# -- Keras ----------------------------------------------------------------------------------
_KERAS_MODULE_PREFIXES = ("keras", "tf_keras", "tensorflow.keras")


def _walk_json(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _walk_json(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk_json(child)


def check_keras_config(config: Any, location: str, report: Report) -> None:
    """Lambda layers carry marshalled bytecode; ``module`` keys name what Keras will import."""
    for node in _walk_json(config):
        class_name = node.get("class_name")
        if class_name in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
            name = (
                node.get("config", {}).get("name", "?")
                if isinstance(node.get("config"), dict)
                else "?"
            )
            report(
                Finding(
                    Severity.CRITICAL,
                    "keras.lambda_layer",
                    f"Lambda layer {name!r} carries serialised Python code that runs on load "
                    "(safe_mode=False) or on call",
                    location,
                )
            )
        module = node.get("module")
        if isinstance(module, str):
            root_ok = module.split(".")[0] in {p.split(".")[0] for p in _KERAS_MODULE_PREFIXES}
            builtins_data = module == "builtins" and class_name not in ("function", "type")
            if not (root_ok or builtins_data):
                report(
                    Finding(
                        Severity.HIGH,
                        "keras.module_reference",
                        f"config references module {module!r} (class_name {class_name!r}); "
                        "Keras imports it on load",
                        location,
                    )
                )
        registered = node.get("registered_name")
        if isinstance(registered, str) and ">" in registered and not registered.startswith("keras"):
            report(
                Finding(
                    Severity.MEDIUM,
                    "keras.custom_object",
                    f"custom object {registered!r} needs code registered by the loader",
                    location,
                )
            )


def check_hdf5(handle: Any, location: str, report: Report) -> None:
    """Keras 2 ``.h5`` keeps its model config as a JSON attribute on the root group."""
    import h5py

    with h5py.File(handle, "r") as h5:
        for attr in ("model_config", "training_config"):
            raw = h5.attrs.get(attr)
            if raw is None:
                continue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            try:
                config = json.loads(text)
            except ValueError:
                report(Finding(Severity.MEDIUM, "keras.corrupt", f"{attr} is not JSON", location))
                continue
            check_keras_config(config, f"{location}#{attr}", report)


# -- protobuf (TensorFlow SavedModel, ONNX) ------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def pb_fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for one protobuf message; raises ValueError if corrupt."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


def protobuf_kind(buf: bytes) -> str | None:
    """'onnx', 'savedmodel' or None, from the top-level field layout."""
    try:
        fields = list(pb_fields(buf))
    except ValueError:
        return None
    numbers = {f for f, w, _ in fields if w == 2}
    if 7 in numbers and any(f == 1 and w == 0 for f, w, _ in fields):
        return "onnx"
    for field, wire, value in fields:
        if field == 2 and wire == 2:
            try:
                if any(f == 2 and w == 2 for f, w, _ in pb_fields(value)):
                    return "savedmodel"
            except ValueError:
                return None
    return None


#: TensorFlow ops that read or write files or run Python: modelscan's list and the py_func family.
TF_UNSAFE_OPS: dict[str, Severity] = {
    "PyFunc": Severity.CRITICAL,
    "PyFuncStateless": Severity.CRITICAL,
    "EagerPyFunc": Severity.CRITICAL,
    "ReadFile": Severity.HIGH,
    "WriteFile": Severity.HIGH,
    "MatchingFiles": Severity.HIGH,
    "ImmutableConst": Severity.MEDIUM,
    "PrintV2": Severity.LOW,
}


def _node_ops(graph_def: bytes) -> Iterator[str]:
    for field, wire, value in pb_fields(graph_def):
        if field == 1 and wire == 2:  # NodeDef
            for f, w, v in pb_fields(value):
                if f == 2 and w == 2:
                    yield v.decode("utf-8", "replace")
        elif field == 2 and wire == 2:  # FunctionDefLibrary
            for f, w, fn in pb_fields(value):
                if f == 1 and w == 2:  # FunctionDef
                    for ff, ww, node in pb_fields(fn):
                        if ff == 3 and ww == 2:  # node_def
                            for f2, w2, v2 in pb_fields(node):
                                if f2 == 2 and w2 == 2:
                                    yield v2.decode("utf-8", "replace")


def check_savedmodel(buf: bytes, location: str, report: Report) -> list[str]:
    """Every op in every graph and function; unsafe ones are findings. Returns all op names."""
    ops: list[str] = []
    for field, wire, meta_graph in pb_fields(buf):
        if field == 2 and wire == 2:
            for f, w, graph_def in pb_fields(meta_graph):
                if f == 2 and w == 2:
                    ops.extend(_node_ops(graph_def))
    for op in sorted(set(ops)):
        if op in TF_UNSAFE_OPS:
            report(
                Finding(
                    TF_UNSAFE_OPS[op],
                    "tensorflow.unsafe_op",
                    f"graph uses the {op} op, which reaches files or Python at run time",
                    location,
                )
            )
    return ops


def check_onnx(buf: bytes, location: str, report: Report, model_dir: str | None) -> None:
    """External-data locations must stay inside the model's folder: no absolute paths, no ``..``."""
    import onnx
    from onnx import external_data_helper

    try:
        model = onnx.load_from_string(bytes(buf))
    except Exception as exc:  # onnx raises DecodeError and friends
        report(
            Finding(Severity.MEDIUM, "onnx.corrupt", f"ONNX model does not parse: {exc}", location)
        )
        return
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        target = info.get("location", "")
        posix = PurePosixPath(target.replace("\\", "/"))
        escapes = (
            posix.is_absolute()
            or ".." in posix.parts
            or (len(target) > 1 and target[1] == ":")
            or target.startswith("\\\\")
        )
        if escapes or not target:
            report(
                Finding(
                    Severity.CRITICAL,
                    "onnx.external_data_path",
                    f"tensor {tensor.name!r} reads external data from {target!r}, outside the "
                    "model folder",
                    location,
                )
            )
        elif model_dir is not None:
            import os

            base = os.path.realpath(model_dir)
            resolved = os.path.realpath(os.path.join(base, target))
            if os.path.commonpath([base, resolved]) != base:
                report(
                    Finding(
                        Severity.CRITICAL,
                        "onnx.external_data_path",
                        f"tensor {tensor.name!r}: {target!r} resolves outside the model folder "
                        "(symlink)",
                        location,
                    )
                )
