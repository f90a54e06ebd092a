"""The bypass corpus: malicious model files built byte by byte, and benign ones to match.

Nothing here ever unpickles or runs a payload: pickles are assembled opcode by opcode with
:class:`Asm`, zips are written by hand (so we can corrupt exactly the fields the CVEs corrupt),
and benign checkpoints use the real libraries when they are installed (torch, scikit-learn,
joblib, numpy) and hand-built PyTorch zips otherwise, so the test suite does not need torch.

Used by ``tests/supplychain`` and by ``bench/supplychain_scan_compare.py``.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class Asm:
    """A pickle assembler: opcodes in, bytes out. Never executes anything."""

    def __init__(self, proto: int = 4) -> None:
        self.buf = bytearray()
        if proto >= 2:
            self.buf += bytes([0x80, proto])

    def raw(self, data: bytes) -> Asm:
        self.buf += data
        return self

    def str(self, text: str) -> Asm:
        data = text.encode("utf-8")
        self.buf += b"X" + struct.pack("<I", len(data)) + data
        return self

    def bytes(self, data: bytes) -> Asm:
        self.buf += b"B" + struct.pack("<I", len(data)) + data
        return self

    def int(self, value: int) -> Asm:
        if 0 <= value < 256:
            self.buf += b"K" + bytes([value])
        elif -(2**31) <= value < 2**31:
            self.buf += b"J" + struct.pack("<i", value)
        else:
            enc = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.buf += b"\x8a" + bytes([len(enc)]) + enc
        return self

    def bool(self, value: bool) -> Asm:
        self.buf += b"\x88" if value else b"\x89"
        return self

    def none(self) -> Asm:
        self.buf += b"N"
        return self

    def glob(self, module: str, name: str) -> Asm:
        """Protocol 0-3 GLOBAL."""
        self.buf += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def sglob(self, module: str, name: str) -> Asm:
        """Protocol 4 STACK_GLOBAL from two constant strings."""
        return self.str(module).str(name).raw(b"\x93")

    def mark(self) -> Asm:
        return self.raw(b"(")

    def tuple(self) -> Asm:
        return self.raw(b"t")

    def tuple1(self) -> Asm:
        return self.raw(b"\x85")

    def tuple2(self) -> Asm:
        return self.raw(b"\x86")

    def empty_tuple(self) -> Asm:
        return self.raw(b")")

    def empty_dict(self) -> Asm:
        return self.raw(b"}")

    def empty_list(self) -> Asm:
        return self.raw(b"]")

    def setitem(self) -> Asm:
        return self.raw(b"s")

    def setitems(self) -> Asm:
        return self.raw(b"u")

    def appends(self) -> Asm:
        return self.raw(b"e")

    def reduce(self) -> Asm:
        return self.raw(b"R")

    def build(self) -> Asm:
        return self.raw(b"b")

    def newobj(self) -> Asm:
        return self.raw(b"\x81")

    def put(self, index: int) -> Asm:
        return self.raw(b"q" + bytes([index]))

    def get(self, index: int) -> Asm:
        return self.raw(b"h" + bytes([index]))

    def memoize(self) -> Asm:
        return self.raw(b"\x94")

    def binpersid(self) -> Asm:
        return self.raw(b"Q")

    def pop(self) -> Asm:
        return self.raw(b"0")

    def stop(self) -> bytes:
        self.buf += b"."
        return bytes(self.buf)

    def call(self, module: str, name: str, *args: str | int, stack_global: bool = True) -> Asm:
        """``module.name(*args)`` via REDUCE: the shape of every classic payload."""
        (self.sglob if stack_global else self.glob)(module, name)
        self.mark()
        for arg in args:
            if isinstance(arg, str):
                self.str(arg)
            else:
                self.int(arg)
        return self.tuple().reduce()


CMD = "echo wardgate-corpus-canary"


def call_pickle(module: str, name: str, *args: str | int, proto: int = 4) -> bytes:
    return Asm(proto).call(module, name, *args, stack_global=proto >= 4).stop()


# -- zip writing (by hand, so each CVE's corruption is exact) -------------------------------
@dataclass
class ZipEntry:
    name: str
    data: bytes
    local_name: str | None = None  # CVE-2025-1944: differs from the central directory
    flags: int = 0  # general-purpose flags in both headers
    local_flags: int | None = None  # CVE-2025-1945: flag bits only in the local header
    bad_crc: bool = False  # CVE-2025-10156
    deflate: bool = False


def write_zip(entries: list[ZipEntry]) -> bytes:
    out = io.BytesIO()
    central = io.BytesIO()
    for entry in entries:
        offset = out.tell()
        payload = entry.data
        method = 0
        if entry.deflate:
            comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = comp.compress(entry.data) + comp.flush()
            method = 8
        crc = zlib.crc32(entry.data) ^ (0xDEADBEEF if entry.bad_crc else 0)
        local_name = (entry.local_name or entry.name).encode()
        name = entry.name.encode()
        out.write(
            struct.pack(
                "<4sHHHHHIIIHH",
                b"PK\x03\x04",
                20,
                entry.flags if entry.local_flags is None else entry.local_flags,
                method,
                0,
                0x21,
                crc,
                len(payload),
                len(entry.data),
                len(local_name),
                0,
            )
        )
        out.write(local_name)
        out.write(payload)
        central.write(
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                entry.flags,
                method,
                0,
                0x21,
                crc,
                len(payload),
                len(entry.data),
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
        )
        central.write(name)
    cd_offset = out.tell()
    cd = central.getvalue()
    out.write(cd)
    out.write(
        struct.pack(
            "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(cd), cd_offset, 0
        )
    )
    return out.getvalue()


def torch_state_dict_pickle(tensors: dict[str, tuple[int, ...]], proto: int = 2) -> bytes:
    """``data.pkl`` of a PyTorch zip checkpoint, laid out exactly as torch.save writes it."""
    asm = Asm(proto)
    asm.glob("collections", "OrderedDict").empty_tuple().reduce()
    asm.mark()
    for index, (name, shape) in enumerate(tensors.items()):
        numel = 1
        for dim in shape:
            numel *= dim
        stride: list[int] = []
        acc = 1
        for dim in reversed(shape):
            stride.insert(0, acc)
            acc *= dim
        asm.str(name)
        asm.glob("torch._utils", "_rebuild_tensor_v2")
        asm.mark()
        asm.mark().str("storage").glob("torch", "FloatStorage").str(str(index)).str("cpu")
        asm.int(numel).tuple().binpersid()
        asm.int(0)
        asm.mark()
        for dim in shape:
            asm.int(dim)
        asm.tuple()
        asm.mark()
        for s in stride:
            asm.int(s)
        asm.tuple()
        asm.bool(False)
        asm.glob("collections", "OrderedDict").empty_tuple().reduce()
        asm.tuple().reduce()
    asm.setitems()
    return asm.stop()


def torch_zip(
    tensors: dict[str, tuple[int, ...]],
    *,
    archive: str = "archive",
    data_pkl: bytes | None = None,
    extra: list[ZipEntry] | None = None,
    **entry_kwargs: object,
) -> bytes:
    """A PyTorch zip checkpoint built by hand; ``torch.load`` accepts it (tested when torch is
    installed). ``entry_kwargs`` are applied to the data.pkl entry to reproduce the zip CVEs."""
    entries = [
        ZipEntry(
            f"{archive}/data.pkl",
            data_pkl if data_pkl is not None else torch_state_dict_pickle(tensors),
            **entry_kwargs,  # type: ignore[arg-type]
        ),
        ZipEntry(f"{archive}/byteorder", b"little"),
    ]
    for index, shape in enumerate(tensors.values()):
        numel = 1
        for dim in shape:
            numel *= dim
        entries.append(
            ZipEntry(f"{archive}/data/{index}", struct.pack(f"<{numel}f", *range(numel)))
        )
    entries.append(ZipEntry(f"{archive}/version", b"3\n"))
    entries.append(ZipEntry(f"{archive}/.data/serialization_id", b"0123456789"))
    entries.extend(extra or [])
    return write_zip(entries)


def broken_pickle(module: str, name: str, *args: str) -> bytes:
    """nullifAI: payload first, then an invalid opcode; no STOP ever reached."""
    return Asm(2).call(module, name, *args, stack_global=False).pop().raw(b"\xff\xfe garbage").buf


def seven_zip(files: dict[str, bytes]) -> bytes:
    import py7zr

    out = io.BytesIO()
    with py7zr.SevenZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(data, name)
    return out.getvalue()


def npy_object_array(payload_pickle: bytes) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * (((10 + len(header) + 1 + 63) // 64) * 64 - 10 - len(header) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload_pickle


def joblib_object_array(payload_pickle: bytes) -> bytes:
    """A joblib file whose NumpyArrayWrapper holds an object array: a nested pickle stream."""
    asm = Asm(4)
    asm.sglob("joblib.numpy_pickle", "NumpyArrayWrapper").empty_tuple().newobj()
    asm.empty_dict()
    asm.mark()
    asm.str("subclass").sglob("numpy", "ndarray")
    asm.str("shape").int(1).tuple1()
    asm.str("order").str("C")
    asm.str("dtype").sglob("numpy", "dtype").str("O8").bool(False).bool(True).raw(b"\x87").reduce()
    asm.mark().int(3).str("|").none().none().none().int(-1).int(-1).int(63).tuple().build()
    asm.str("allow_mmap").bool(False)
    asm.setitems().build()
    outer = bytes(asm.buf)
    return outer + payload_pickle + b"."


def two_streams(first: bytes, second: bytes) -> bytes:
    return first + second


def legacy_torch(main_pickle: bytes) -> bytes:
    """Pre-1.6 torch.save layout: magic, protocol, sys_info, main object, storage keys."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    proto = pickle.dumps(1001, protocol=2)
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    keys = pickle.dumps([], protocol=2)
    return magic + proto + sys_info + main_pickle + keys


def keras_zip(config: dict[str, object]) -> bytes:
    return write_zip(
        [
            ZipEntry("metadata.json", json.dumps({"keras_version": "3.6.0"}).encode()),
            ZipEntry("config.json", json.dumps(config).encode()),
            ZipEntry("model.weights.h5", b""),
        ]
    )


def keras_lambda_config() -> dict[str, object]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Lambda",
                    "config": {
                        "name": "lambda",
                        "function": {"class_name": "__lambda__", "config": {"code": "4wEAAA=="}},
                    },
                }
            ]
        },
    }


def keras_module_config() -> dict[str, object]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "config": {
                        "name": "d",
                        "activation": {
                            "module": "os",
                            "class_name": "function",
                            "config": "system",
                            "registered_name": "system",
                        },
                    },
                }
            ]
        },
    }


def keras_benign_config() -> dict[str, object]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "config": {
                        "name": "d",
                        "units": 4,
                        "activation": "relu",
                        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {}},
                    },
                    "registered_name": None,
                }
            ]
        },
    }


def h5_keras(config: dict[str, object]) -> bytes:
    import h5py

    out = io.BytesIO()
    with h5py.File(out, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.15.0"
        h5.create_dataset("w", data=[1.0, 2.0])
    return out.getvalue()


def _pb_key(field: int, wire: int) -> bytes:
    return _pb_varint((field << 3) | wire)


def _pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_bytes(field: int, data: bytes) -> bytes:
    return _pb_key(field, 2) + _pb_varint(len(data)) + data


def saved_model(ops: list[str], function_ops: list[str] | None = None) -> bytes:
    """A minimal ``saved_model.pb``: SavedModel{schema=1, meta_graphs=[{graph_def{nodes}}]}."""
    nodes = b"".join(
        _pb_bytes(1, _pb_bytes(1, f"n{i}".encode()) + _pb_bytes(2, op.encode()))
        for i, op in enumerate(ops)
    )
    library = b""
    if function_ops:
        fn_nodes = b"".join(
            _pb_bytes(3, _pb_bytes(1, f"f{i}".encode()) + _pb_bytes(2, op.encode()))
            for i, op in enumerate(function_ops)
        )
        library = _pb_bytes(2, _pb_bytes(1, fn_nodes))
    graph_def = nodes + library
    meta_graph = _pb_bytes(2, graph_def)
    return _pb_key(1, 0) + _pb_varint(1) + _pb_bytes(2, meta_graph)


def onnx_model(location: str | None) -> bytes:
    from onnx import TensorProto, helper

    tensor = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None:
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "8")):
            entry = tensor.external_data.add()
            entry.key = key
            entry.value = value
    node = helper.make_node("Identity", ["w"], ["y"])
    graph = helper.make_graph(
        [node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [tensor]
    )
    model = helper.make_model(graph, producer_name="wardgate-corpus")
    return model.SerializeToString()


# -- the corpus -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    filename: str
    malicious: bool
    reference: str
    build: Callable[[], bytes]
    family: str = "pickle"


def _sd() -> dict[str, tuple[int, ...]]:
    return {"weight": (3, 4), "bias": (3,)}


def _evil() -> bytes:
    return call_pickle("os", "system", CMD)


def malicious_samples() -> list[Sample]:
    s = Sample
    return [
        # classic and protocol variants
        s(
            "os_system_p0.pkl",
            True,
            "classic os.system (protocol 0 GLOBAL)",
            lambda: call_pickle("os", "system", CMD, proto=0),
        ),
        s(
            "os_system_p2.pkl",
            True,
            "classic os.system (protocol 2)",
            lambda: call_pickle("posix", "system", CMD, proto=2),
        ),
        s("os_system_p4.pkl", True, "classic os.system (protocol 4 STACK_GLOBAL)", _evil),
        s(
            "builtins_eval.pkl",
            True,
            "builtins.eval",
            lambda: call_pickle("builtins", "eval", "1+1"),
        ),
        s(
            "py2_builtin_eval.pkl",
            True,
            "__builtin__.eval via fix_imports mapping",
            lambda: call_pickle("__builtin__", "eval", "1+1", proto=2),
        ),
        s(
            "subprocess_newobj.pkl",
            True,
            "subprocess.Popen via NEWOBJ",
            lambda: Asm(4).sglob("subprocess", "Popen").mark().str("id").tuple().newobj().stop(),
        ),
        s(
            "inst_opcode.pkl",
            True,
            "INST opcode (protocol 0)",
            lambda: Asm(0).mark().str("id").raw(b"ios\nsystem\n").stop(),
        ),
        s(
            "obj_opcode.pkl",
            True,
            "OBJ opcode",
            lambda: Asm(1).mark().glob("os", "system").str("id").raw(b"o").stop(),
        ),
        s(
            "memo_stack_global.pkl",
            True,
            "STACK_GLOBAL operands fetched from the memo",
            lambda: (
                Asm(4)
                .str("os")
                .put(0)
                .str("system")
                .put(1)
                .pop()
                .pop()
                .get(0)
                .get(1)
                .raw(b"\x93")
                .mark()
                .str(CMD)
                .tuple()
                .reduce()
                .stop()
            ),
        ),
        s(
            "computed_stack_global.pkl",
            True,
            "STACK_GLOBAL whose module name is computed (str(b'os'))",
            lambda: (
                Asm(4)
                .sglob("builtins", "str")
                .mark()
                .bytes(b"os")
                .str("ascii")
                .tuple()
                .reduce()
                .str("system")
                .raw(b"\x93")
                .mark()
                .str(CMD)
                .tuple()
                .reduce()
                .stop()
            ),
        ),
        s(
            "getattr_chain.pkl",
            True,
            "builtins.getattr on an imported module",
            lambda: (
                Asm(4)
                .sglob("builtins", "getattr")
                .mark()
                .sglob("builtins", "__import__")
                .mark()
                .str("os")
                .tuple()
                .reduce()
                .str("system")
                .tuple()
                .reduce()
                .mark()
                .str(CMD)
                .tuple()
                .reduce()
                .stop()
            ),
        ),
        s(
            "build_setstate.pkl",
            True,
            "BUILD on a gadget class (state sets attributes)",
            lambda: (
                Asm(4)
                .sglob("functools", "partial")
                .mark()
                .sglob("os", "system")
                .tuple()
                .newobj()
                .mark()
                .sglob("os", "system")
                .mark()
                .str(CMD)
                .tuple()
                .empty_dict()
                .none()
                .tuple()
                .build()
                .stop()
            ),
        ),
        s(
            "second_stream.pkl",
            True,
            "benign first stream, payload in the second",
            lambda: two_streams(pickle.dumps({"ok": 1}, protocol=4), _evil()),
        ),
        s(
            "long_prefix_p0.pkl",
            True,
            "protocol-0 payload after 200 KB of harmless data (defeats prefix-only probes)",
            lambda: b"(S'" + b"a" * 200_000 + b"'\np0\n0cos\nsystem\n(S'id'\ntR.",
        ),
        s(
            "polyglot_gguf_pickle.gguf",
            True,
            "GGUF magic, yet a complete pickle (GGUF is BINFLOAT) importing os.system",
            lambda: b"GGUF\x03\x00\x00\x00\x00" + b"cos\nsystem\n(S'id'\ntR.",
            "gguf",
        ),
        s(
            "ext_registry.pkl",
            True,
            "EXT1 extension-registry global",
            lambda: Asm(2).raw(b"\x82\x01").empty_tuple().reduce().stop(),
        ),
        # picklescan CVEs of 2025
        s(
            "cve_2025_1716_pip_main.pkl",
            True,
            "CVE-2025-1716 pip.main",
            lambda: (
                Asm(4)
                .sglob("pip", "main")
                .empty_list()
                .mark()
                .str("install")
                .str("evil-pkg")
                .appends()
                .tuple1()
                .reduce()
                .stop()
            ),
        ),
        s(
            "cve_2025_1889_hidden.pt",
            True,
            "CVE-2025-1889 pickle hidden under a non-pickle name in a torch zip",
            lambda: torch_zip(_sd(), extra=[ZipEntry("archive/extra/config.bin", _evil())]),
            "pytorch",
        ),
        s(
            "cve_2025_1944_name_mismatch.pt",
            True,
            "CVE-2025-1944 zip local/central name mismatch",
            lambda: torch_zip({}, data_pkl=_evil(), local_name="archive/data.pk1"),
            "pytorch",
        ),
        s(
            "cve_2025_1945_flag_bits.pt",
            True,
            "CVE-2025-1945 zip flag bits (encryption bit set, data plain)",
            lambda: torch_zip({}, data_pkl=_evil(), flags=0x1),
            "pytorch",
        ),
        s("cve_2025_10155_model.bin", True, "CVE-2025-10155 pickle with a .bin extension", _evil),
        s(
            "cve_2025_10155_model.pt",
            True,
            "CVE-2025-10155 plain pickle with a .pt extension",
            _evil,
        ),
        s(
            "cve_2025_10156_bad_crc.pt",
            True,
            "CVE-2025-10156 zip with a bad CRC",
            lambda: torch_zip({}, data_pkl=_evil(), bad_crc=True),
            "pytorch",
        ),
        s(
            "cve_2025_10157_asyncio_sub.pkl",
            True,
            "CVE-2025-10157 submodule of a deny-listed module",
            lambda: call_pickle("asyncio.unix_events", "_UnixSubprocessTransport._start", CMD),
        ),
        # nullifAI
        s(
            "nullifai_broken.pkl",
            True,
            "nullifAI broken pickle (payload, then invalid opcode)",
            lambda: broken_pickle("os", "system", CMD),
        ),
        s(
            "nullifai_broken_torch.pt",
            True,
            "nullifAI broken data.pkl inside a torch zip",
            lambda: torch_zip({}, data_pkl=broken_pickle("os", "system", CMD)),
            "pytorch",
        ),
        s(
            "nullifai_7z.pt.7z",
            True,
            "nullifAI 7z-compressed torch model with a broken pickle",
            lambda: seven_zip({"archive/data.pkl": broken_pickle("os", "system", CMD)}),
            "pytorch",
        ),
        # standard-library gadgets
        s(
            "gadget_cprofile_run.pkl",
            True,
            "cProfile.run",
            lambda: call_pickle("cProfile", "run", "import os"),
        ),
        s(
            "gadget_pydoc_pipepager.pkl",
            True,
            "pydoc.pipepager",
            lambda: call_pickle("pydoc", "pipepager", "x", CMD),
        ),
        s(
            "gadget_timeit.pkl",
            True,
            "timeit.timeit",
            lambda: call_pickle("timeit", "timeit", "import os"),
        ),
        s(
            "gadget_runpy.pkl",
            True,
            "runpy._run_code",
            lambda: call_pickle("runpy", "_run_code", "import os", 0),
        ),
        s(
            "gadget_posixsubprocess.pkl",
            True,
            "_posixsubprocess.fork_exec",
            lambda: call_pickle("_posixsubprocess", "fork_exec", CMD),
        ),
        s(
            "gadget_io_open.pkl",
            True,
            "io.open (file write)",
            lambda: call_pickle("io", "open", "/tmp/x", "w"),
        ),
        s(
            "gadget_importlib.pkl",
            True,
            "importlib.import_module",
            lambda: call_pickle("importlib", "import_module", "os"),
        ),
        s(
            "gadget_marshal.pkl",
            True,
            "marshal.loads (code objects)",
            lambda: call_pickle("marshal", "loads", "x"),
        ),
        s(
            "gadget_http_client.pkl",
            True,
            "http.client.HTTPConnection (network)",
            lambda: call_pickle("http.client", "HTTPConnection", "example.invalid"),
        ),
        s(
            "gadget_smtplib.pkl",
            True,
            "smtplib.SMTP (network)",
            lambda: call_pickle("smtplib", "SMTP", "example.invalid"),
        ),
        s(
            "gadget_tarfile.pkl",
            True,
            "tarfile.open (archive extraction)",
            lambda: call_pickle("tarfile", "open", "/tmp/x.tar"),
        ),
        s(
            "gadget_shelve.pkl",
            True,
            "shelve.open (nested unpickling)",
            lambda: call_pickle("shelve", "open", "/tmp/x"),
        ),
        s(
            "gadget_ctypes.pkl",
            True,
            "ctypes.CDLL",
            lambda: call_pickle("ctypes", "CDLL", "libc.so.6"),
        ),
        s(
            "gadget_numpy_load.pkl",
            True,
            "numpy.load (nested allow_pickle)",
            lambda: call_pickle("numpy", "load", "/tmp/x.npy"),
        ),
        s(
            "gadget_torch_load.pkl",
            True,
            "torch.load (nested unpickling)",
            lambda: call_pickle("torch.serialization", "load", "/tmp/x.pt"),
        ),
        # containers and other array formats
        s(
            "numpy_object_array.npy",
            True,
            "numpy object array holding a payload",
            lambda: npy_object_array(_evil()),
            "numpy",
        ),
        s(
            "joblib_object_array.joblib",
            True,
            "joblib object array with a nested payload stream",
            lambda: joblib_object_array(_evil()),
            "joblib",
        ),
        s(
            "joblib_zlib_payload.joblib",
            True,
            "zlib-compressed joblib payload",
            lambda: zlib.compress(_evil()),
            "joblib",
        ),
        s(
            "gzip_payload.pkl.gz",
            True,
            "gzip-compressed pickle payload",
            lambda: __import__("gzip").compress(_evil()),
        ),
        s(
            "legacy_torch_payload.pt",
            True,
            "legacy (pre-zip) torch format, payload in the main pickle",
            lambda: legacy_torch(_evil()),
            "pytorch",
        ),
        s(
            "npz_with_payload.npz",
            True,
            "npz member holding an object array payload",
            lambda: write_zip([ZipEntry("a.npy", npy_object_array(_evil()))]),
            "numpy",
        ),
        # other formats
        s(
            "keras_lambda.keras",
            True,
            "Keras v3 Lambda layer",
            lambda: keras_zip(keras_lambda_config()),
            "keras",
        ),
        s(
            "keras_module_ref.keras",
            True,
            "Keras config referencing os.system",
            lambda: keras_zip(keras_module_config()),
            "keras",
        ),
        s(
            "keras_lambda.h5",
            True,
            "Keras h5 Lambda layer",
            lambda: h5_keras(keras_lambda_config()),
            "keras",
        ),
        s(
            "saved_model_pyfunc.pb",
            True,
            "TensorFlow SavedModel with PyFunc",
            lambda: saved_model(["Const", "PyFunc"]),
            "tensorflow",
        ),
        s(
            "saved_model_readfile.pb",
            True,
            "TensorFlow SavedModel with ReadFile in a function",
            lambda: saved_model(["Const"], ["ReadFile"]),
            "tensorflow",
        ),
        s(
            "onnx_traversal.onnx",
            True,
            "ONNX external data ../../etc/passwd",
            lambda: onnx_model("../../etc/passwd"),
            "onnx",
        ),
        s(
            "onnx_absolute.onnx",
            True,
            "ONNX external data /etc/shadow",
            lambda: onnx_model("/etc/shadow"),
            "onnx",
        ),
    ]


def benign_samples() -> list[Sample]:
    """Benign files that need no third-party library beyond numpy/h5py/onnx."""
    import numpy as np

    def npy(array: object) -> bytes:
        out = io.BytesIO()
        np.save(out, array)
        return out.getvalue()

    def npz() -> bytes:
        out = io.BytesIO()
        np.savez(out, a=np.arange(6.0), b=np.eye(3, dtype=np.float32))
        return out.getvalue()

    s = Sample
    return [
        s(
            "handmade_state_dict.pt",
            False,
            "PyTorch zip state_dict (hand-built)",
            lambda: torch_zip(_sd()),
            "pytorch",
        ),
        s(
            "handmade_state_dict_p4.pt",
            False,
            "PyTorch zip state_dict, protocol 4 data.pkl",
            lambda: torch_zip(
                {"w": (2, 2)}, data_pkl=torch_state_dict_pickle({"w": (2, 2)}, proto=4)
            ),
            "pytorch",
        ),
        s(
            "handmade_legacy.pt",
            False,
            "legacy torch layout (hand-built)",
            lambda: legacy_torch(
                Asm(2).glob("collections", "OrderedDict").empty_tuple().reduce().stop()
            ),
            "pytorch",
        ),
        s("numpy_array.npy", False, "numpy float array", lambda: npy(np.arange(100.0)), "numpy"),
        s("numpy_arrays.npz", False, "numpy npz", npz, "numpy"),
        s(
            "numpy_in_pickle.pkl",
            False,
            "numpy arrays and scalars in a pickle",
            lambda: pickle.dumps(
                {"a": np.arange(5), "s": np.float32(1.5), "r": np.random.RandomState(0)}, protocol=4
            ),
        ),
        *(
            s(
                f"plain_p{p}.pkl",
                False,
                f"plain containers, protocol {p}",
                lambda p=p: pickle.dumps(
                    {"a": [1, 2.5, "x", b"y", None, True], "s": {1, 2}, "t": (1,)}, protocol=p
                ),
            )
            for p in range(6)
        ),
        s(
            "keras_dense.keras",
            False,
            "Keras v3 Dense model config",
            lambda: keras_zip(keras_benign_config()),
            "keras",
        ),
        s(
            "keras_dense.h5",
            False,
            "Keras h5 Dense model",
            lambda: h5_keras(keras_benign_config()),
            "keras",
        ),
        s(
            "saved_model_plain.pb",
            False,
            "SavedModel with ordinary ops",
            lambda: saved_model(["Const", "MatMul", "RestoreV2", "SaveV2"]),
            "tensorflow",
        ),
        s("onnx_inline.onnx", False, "ONNX with inline weights", lambda: onnx_model(None), "onnx"),
        s(
            "onnx_external_ok.onnx",
            False,
            "ONNX with external data in the same folder",
            lambda: onnx_model("weights.bin"),
            "onnx",
        ),
    ]


def library_benign_samples() -> list[Sample]:
    """Real checkpoints written by torch / scikit-learn / joblib, when those are installed."""
    samples: list[Sample] = []

    def _dump(fn: Callable[[io.BytesIO], None]) -> bytes:
        out = io.BytesIO()
        fn(out)
        return out.getvalue()

    try:
        import torch

        def lin() -> object:
            torch.manual_seed(0)
            return torch.nn.Sequential(
                torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
            )

        samples += [
            Sample(
                "torch_state_dict.pt",
                False,
                "torch.save(state_dict)",
                lambda: _dump(lambda f: torch.save(lin().state_dict(), f)),
                "pytorch",
            ),  # type: ignore[attr-defined]
            Sample(
                "torch_legacy.pt",
                False,
                "torch.save legacy format",
                lambda: _dump(
                    lambda f: torch.save(
                        lin().state_dict(), f, _use_new_zipfile_serialization=False
                    )
                ),
                "pytorch",
            ),  # type: ignore[attr-defined]
            Sample(
                "torch_checkpoint.pt",
                False,
                "model + optimizer + epoch checkpoint",
                lambda: _dump(
                    lambda f: torch.save(
                        {
                            "model": lin().state_dict(),
                            "optimizer": torch.optim.AdamW(lin().parameters()).state_dict(),
                            "epoch": 3,
                            "lr": 1e-3,
                        },
                        f,
                    )
                ),
                "pytorch",
            ),  # type: ignore[attr-defined]
            Sample(
                "torch_bf16_int8.pt",
                False,
                "bf16, int8, bool tensors",
                lambda: _dump(
                    lambda f: torch.save(
                        {
                            "a": torch.ones(3, dtype=torch.bfloat16),
                            "b": torch.zeros(2, dtype=torch.int8),
                            "c": torch.ones(2, dtype=torch.bool),
                            "p": torch.nn.Parameter(torch.ones(2)),
                        },
                        f,
                    )
                ),
                "pytorch",
            ),
        ]
    except ImportError:
        pass
    try:
        import joblib
        import numpy as np
        from sklearn.datasets import make_classification
        from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = make_classification(200, 8, random_state=0)
        samples += [
            Sample(
                "sklearn_pipeline.joblib",
                False,
                "joblib.dump(StandardScaler+LogisticRegression)",
                lambda: _dump(
                    lambda f: joblib.dump(
                        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), f
                    )
                ),
                "joblib",
            ),
            Sample(
                "sklearn_forest_z3.joblib",
                False,
                "joblib.dump(RandomForest, compress=3)",
                lambda: _dump(
                    lambda f: joblib.dump(
                        RandomForestClassifier(5, random_state=0).fit(X, y), f, compress=3
                    )
                ),
                "joblib",
            ),
            Sample(
                "sklearn_gbm.pkl",
                False,
                "pickle.dump(GradientBoosting)",
                lambda: pickle.dumps(
                    GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y)
                ),
            ),
            Sample(
                "joblib_arrays.joblib",
                False,
                "joblib.dump of numpy arrays (inline array data)",
                lambda: _dump(
                    lambda f: joblib.dump(
                        {"x": np.arange(1000.0), "m": np.ones((5, 5), order="F")}, f
                    )
                ),
                "joblib",
            ),
        ]
    except ImportError:
        pass
    return samples


def write_corpus(folder: Path, samples: list[Sample]) -> dict[str, Sample]:
    """Write each sample to its own sub-folder (so ONNX external data stays per-model)."""
    written: dict[str, Sample] = {}
    for sample in samples:
        target = folder / sample.filename.replace(".", "_") / sample.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sample.build())
        if sample.filename == "onnx_external_ok.onnx":
            (target.parent / "weights.bin").write_bytes(struct.pack("<2f", 1.0, 2.0))
        written[str(target)] = sample
    return written


def sample_bytes(filename: str) -> bytes:
    """The bytes of one malicious or benign sample, by file name."""
    samples = malicious_samples() + benign_samples()
    return next(s for s in samples if s.filename == filename).build()
