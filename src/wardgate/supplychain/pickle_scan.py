"""An allow-list pickle scanner that emulates the pickle VM without ever executing it.

Why emulate rather than list opcodes: ``STACK_GLOBAL`` takes its module and name from the
stack, where they may come from the memo, from earlier frames, or from a previous call's result.
A scanner that only looks at ``GLOBAL`` opcodes (or pairs ``STACK_GLOBAL`` with the two
preceding strings) can be led astray; one that keeps a symbolic stack and memo cannot.

Rules, in order of importance:

* every global the stream would import (``GLOBAL``, ``STACK_GLOBAL``, ``INST``) must be on the
  exact ``module.qualname`` allow-list, after the same Python 2 name mapping the real unpickler
  applies; anything else is a finding;
* a global whose module or name is not a constant string is a finding (fail closed);
* calling something that is not an allowed global (``REDUCE`` on a computed object) is a finding;
* extension-registry opcodes and persistent ids outside a loader that defines them are findings;
* a stream that does not parse to ``STOP`` is a finding, *and* everything seen before the error is
  still reported (nullifAI's broken pickles execute their payload before the parser fails);
* every stream in the input is scanned, not only the first.

Nothing here imports the modules it names: numpy is used only to size dtypes from strings.
"""

from __future__ import annotations

import _compat_pickle
import ast
import io
import pickletools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from wardgate.supplychain.allowlist import is_dangerous
from wardgate.supplychain.findings import Finding, Severity

#: The first pickle of a legacy (pre-zip) ``torch.save`` file.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_BLOB_THRESHOLD = 1024
_LONG_TEXT = 4096
#: Bounds that no real pickle approaches; past them the stream is a resource attack.
MAX_MARK_DEPTH = 100_000
MAX_STACK = 20_000_000
MAX_OPS = 500_000_000


class _Mark:
    def __repr__(self) -> str:
        return "MARK"


MARK = _Mark()


@dataclass(eq=False)
class Global:
    """A class or function the unpickler would import."""

    module: str
    name: str
    allowed: bool

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Obj:
    """The result of a call; ``factory`` is what was called, ``state`` what BUILD set."""

    factory: Any
    args: Any = None
    state: Any = None


@dataclass(eq=False)
class Blob:
    """Large byte strings are not kept: their length is all the scanner needs."""

    size: int


@dataclass(eq=False)
class LongText:
    """Long strings are not kept either."""

    size: int


@dataclass(eq=False)
class PersistentRef:
    pid: Any


class PickleParseError(Exception):
    """The stream is malformed (or uses something the emulator refuses to model)."""


@dataclass
class StreamResult:
    """What one pickle stream held."""

    start: int
    end: int
    value: Any = None
    ok: bool = True
    globals: list[str] = field(default_factory=list)
    protocol: int = 0


@dataclass
class PickleScanOptions:
    """How the loader that will read this stream behaves.

    ``persistent_ids``: the loader defines ``persistent_load`` (PyTorch does, for storages).
    ``joblib_arrays``: array bytes follow a ``NumpyArrayWrapper`` BUILD (joblib does).
    """

    allowlist: frozenset[str]
    persistent_ids: bool = False
    joblib_arrays: bool = True
    max_nesting: int = 8


def resolve_name(module: str, name: str, protocol: int) -> tuple[str, str]:
    """Apply the Python 2 → 3 name mapping ``pickle.Unpickler(fix_imports=True)`` applies."""
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


class _VM:
    """Symbolic pickle machine for one stream; appends findings as it goes."""

    def __init__(
        self,
        source: IO[bytes],
        location: str,
        options: PickleScanOptions,
        report: Callable[[Finding], None],
        depth: int,
    ) -> None:
        self.source = source
        self.location = location
        self.options = options
        self.report = report
        self.depth = depth
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.protocol = 0
        self.globals: list[str] = []

    # -- helpers --------------------------------------------------------------------------
    def _where(self, pos: int | None) -> str:
        return f"{self.location}@{pos}" if pos is not None else self.location

    def _flag(self, severity: Severity, code: str, message: str, pos: int | None) -> None:
        self.report(Finding(severity, code, message, self._where(pos)))

    def _pop(self) -> Any:
        if not self.stack:
            raise PickleParseError("stack underflow")
        value = self.stack.pop()
        if value is MARK:
            raise PickleParseError("unexpected MARK on the stack")
        return value

    def _top(self) -> Any:
        if not self.stack:
            raise PickleParseError("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise PickleParseError("no MARK to pop to")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _global(self, module: Any, name: Any, pos: int | None, opname: str) -> Global:
        if not isinstance(module, str) or not isinstance(name, str):
            self._flag(
                Severity.CRITICAL,
                "pickle.dynamic_global",
                f"{opname} takes its module/name from a non-constant "
                f"({type(module).__name__}, {type(name).__name__}); refusing to guess",
                pos,
            )
            return Global(str(module), str(name), allowed=False)
        mod, nm = resolve_name(module, name, self.protocol)
        qualname = f"{mod}.{nm}"
        self.globals.append(qualname)
        allowed = qualname in self.options.allowlist
        if not allowed:
            dangerous = is_dangerous(mod, nm) or is_dangerous(module, name)
            shown = qualname if (mod, nm) == (module, name) else f"{qualname} (as {module}.{name})"
            self._flag(
                Severity.CRITICAL if dangerous else Severity.HIGH,
                "pickle.unsafe_global" if dangerous else "pickle.global_not_allowed",
                f"{opname} imports {shown}, which is not on the allow-list"
                + (" and can execute code or reach files/network" if dangerous else ""),
                pos,
            )
        return Global(mod, nm, allowed)

    def _call(self, factory: Any, args: Any, pos: int | None, opname: str) -> Obj:
        if isinstance(factory, Global):
            # Disallowed globals were already reported at import time.
            pass
        else:
            self._flag(
                Severity.HIGH,
                "pickle.call_on_computed_object",
                f"{opname} calls a {type(factory).__name__} that is not an imported global",
                pos,
            )
        return Obj(factory, args)

    @staticmethod
    def _const(value: Any) -> Any:
        if isinstance(value, bytes | bytearray) and len(value) > _BLOB_THRESHOLD:
            return Blob(len(value))
        if isinstance(value, str) and len(value) > _LONG_TEXT:
            return LongText(len(value))  # never a module or class name; not worth the memory
        return value

    # -- the machine ----------------------------------------------------------------------
    def run(self) -> StreamResult:
        start = self.source.tell()
        result = StreamResult(start=start, end=start)
        try:
            for count, (opcode, arg, pos) in enumerate(pickletools.genops(self.source)):
                name = opcode.name
                if name == "STOP":
                    result.value = self._pop()
                    break
                self._step(name, arg, pos)
                if len(self.stack) > MAX_STACK or count > MAX_OPS:
                    raise PickleParseError("stream exceeds the scanner's size bounds")
            else:  # pragma: no cover - genops raises before exhausting without STOP
                raise PickleParseError("stream ended without STOP")
        except (ValueError, PickleParseError, TypeError, KeyError, IndexError) as exc:
            result.ok = False
            self._flag(
                Severity.HIGH,
                "pickle.parse_error",
                f"malformed pickle stream ({exc}); a loader may still have executed what came "
                "before the error, so the file is not trusted",
                self.source.tell(),
            )
        result.end = self.source.tell()
        result.globals = self.globals
        result.protocol = self.protocol
        return result

    def _step(self, name: str, arg: Any, pos: int | None) -> None:
        stack = self.stack
        if name in _CONST_OPS:
            stack.append(self._const(arg))
        elif name == "NONE":
            stack.append(None)
        elif name == "NEWTRUE":
            stack.append(True)
        elif name == "NEWFALSE":
            stack.append(False)
        elif name == "NEXT_BUFFER":
            stack.append(Blob(0))
        elif name in ("READONLY_BUFFER", "FRAME"):
            pass
        elif name == "PROTO":
            self.protocol = int(arg)
        elif name == "MARK":
            if len(self.metastack) >= MAX_MARK_DEPTH:
                raise PickleParseError("MARK nesting too deep")
            self.metastack.append(stack)
            self.stack = []
        elif name == "POP":
            if stack and stack[-1] is MARK:  # pragma: no cover - MARK lives on the metastack
                stack.pop()
            else:
                self._pop()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            stack.append(self._top())
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "EMPTY_SET":
            stack.append(set())
        elif name == "LIST":
            stack_items = self._pop_mark()
            self.stack.append(list(stack_items))
        elif name == "TUPLE":
            stack_items = self._pop_mark()
            self.stack.append(tuple(stack_items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            items = [self._pop() for _ in range(count)][::-1]
            stack.append(tuple(items))
        elif name == "FROZENSET":
            stack_items = self._pop_mark()
            self.stack.append(frozenset(_hashable(i) for i in stack_items))
        elif name == "DICT":
            stack_items = self._pop_mark()
            self.stack.append(_pairs_to_dict(stack_items))
        elif name == "APPEND":
            value = self._pop()
            self._extend(self._top(), [value], pos)
        elif name == "APPENDS":
            stack_items = self._pop_mark()
            self._extend(self._top(), stack_items, pos)
        elif name == "SETITEM":
            value = self._pop()
            key = self._pop()
            self._setitems(self._top(), [key, value], pos)
        elif name == "SETITEMS":
            stack_items = self._pop_mark()
            self._setitems(self._top(), stack_items, pos)
        elif name == "ADDITEMS":
            stack_items = self._pop_mark()
            target = self._top()
            if isinstance(target, set):
                target.update(_hashable(i) for i in stack_items)
            elif not isinstance(target, Obj):
                raise PickleParseError("ADDITEMS on a non-set")
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            index = int(arg)
            if index not in self.memo:
                raise PickleParseError(f"memo key {index} was never stored")
            stack.append(self.memo[index])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = self._top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self._top()
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(self._global(module, attr, pos, name))
        elif name == "STACK_GLOBAL":
            attr = self._pop()
            module = self._pop()
            self.stack.append(self._global(module, attr, pos, name))
        elif name == "INST":
            module, _, attr = str(arg).partition(" ")
            factory = self._global(module, attr, pos, name)
            stack_items = self._pop_mark()
            self.stack.append(self._call(factory, tuple(stack_items), pos, name))
        elif name == "OBJ":
            stack_items = self._pop_mark()
            if not stack_items:
                raise PickleParseError("OBJ without a class")
            self.stack.append(self._call(stack_items[0], tuple(stack_items[1:]), pos, name))
        elif name == "REDUCE" or name == "NEWOBJ":
            args = self._pop()
            factory = self._pop()
            self.stack.append(self._call(factory, args, pos, name))
        elif name == "NEWOBJ_EX":
            kwargs = self._pop()
            args = self._pop()
            factory = self._pop()
            self.stack.append(self._call(factory, (args, kwargs), pos, name))
        elif name == "BUILD":
            state = self._pop()
            target = self._top()
            self._build(target, state, pos)
        elif name in ("PERSID", "BINPERSID"):
            pid = arg if name == "PERSID" else self._pop()
            if not self.options.persistent_ids:
                self._flag(
                    Severity.MEDIUM,
                    "pickle.persistent_id",
                    f"{name} outside a loader that defines persistent_load; what it resolves "
                    "to is up to the loader",
                    pos,
                )
            self.stack.append(PersistentRef(pid))
        elif name in ("EXT1", "EXT2", "EXT4"):
            self._flag(
                Severity.HIGH,
                "pickle.extension_code",
                f"{name} {arg} resolves a global through the copyreg extension registry, which "
                "the scanner cannot see",
                pos,
            )
            stack.append(Global("<extension>", str(arg), allowed=False))
        else:  # pragma: no cover - genops only yields known opcodes
            raise PickleParseError(f"unsupported opcode {name}")

    def _extend(self, target: Any, items: list[Any], pos: int | None) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, Obj):
            pass  # e.g. a deque or an allow-listed class's own extend(); its class was checked
        else:
            raise PickleParseError(f"APPEND to a {type(target).__name__}")

    def _setitems(self, target: Any, items: list[Any], pos: int | None) -> None:
        if len(items) % 2:
            raise PickleParseError("odd number of items for SETITEMS")
        if isinstance(target, dict):
            target.update(_pairs_to_dict(items))
        elif isinstance(target, Obj):
            pass  # OrderedDict and friends: __setitem__ of an allow-listed class
        else:
            raise PickleParseError(f"SETITEM on a {type(target).__name__}")

    def _build(self, target: Any, state: Any, pos: int | None) -> None:
        if isinstance(target, Global):
            # BUILD on a class object sets attributes on the class itself: never legitimate.
            self._flag(
                Severity.HIGH,
                "pickle.build_on_global",
                f"BUILD sets state on the global {target.qualname} itself",
                pos,
            )
            return
        if isinstance(target, Obj):
            target.state = state
            factory = target.factory
            if (
                self.options.joblib_arrays
                and isinstance(factory, Global)
                and factory.qualname == "joblib.numpy_pickle.NumpyArrayWrapper"
            ):
                self._joblib_array(target, pos)

    def _joblib_array(self, wrapper: Obj, pos: int | None) -> None:
        """joblib writes the array bytes (or a nested pickle) right after the wrapper's BUILD."""
        state = wrapper.state
        if not isinstance(state, dict):
            raise PickleParseError("joblib NumpyArrayWrapper without a state dict")
        shape = state.get("shape")
        dtype = state.get("dtype")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise PickleParseError("joblib array with a non-constant shape")
        itemsize, has_object = _dtype_size(dtype)
        if has_object:
            if self.depth >= self.options.max_nesting:
                raise PickleParseError("joblib object arrays nested too deeply")
            nested = _VM(
                self.source,
                f"{self.location}#joblib-object-array",
                self.options,
                self.report,
                self.depth + 1,
            ).run()
            if not nested.ok:
                raise PickleParseError("nested joblib object-array pickle is malformed")
            self.globals.extend(nested.globals)
        else:
            if state.get("numpy_array_alignment_bytes") is not None:
                pad = self.source.read(1)
                if len(pad) != 1:
                    raise PickleParseError("truncated joblib array padding")
                self._skip(pad[0])
            count = 1
            for dim in shape:
                count *= dim
            self._skip(count * itemsize)
        self.stack.pop()
        self.stack.append(Obj(Global("numpy", "ndarray", True), None))

    def _skip(self, size: int) -> None:
        here = self.source.tell()
        self.source.seek(0, io.SEEK_END)
        end = self.source.tell()
        if here + size > end:
            raise PickleParseError("array data runs past the end of the file")
        self.source.seek(here + size)


_CONST_OPS = frozenset(
    [
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "FLOAT",
        "BINFLOAT",
    ]
)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError as exc:
        raise PickleParseError("unhashable key") from exc
    return value


def _pairs_to_dict(items: list[Any]) -> dict[Any, Any]:
    if len(items) % 2:
        raise PickleParseError("odd number of items for a dict")
    return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _dtype_size(dtype: Any) -> tuple[int, bool]:
    """(itemsize, has_object) of a pickled ``numpy.dtype`` call, computed without unpickling."""
    if not (
        isinstance(dtype, Obj)
        and isinstance(dtype.factory, Global)
        and dtype.factory.qualname == "numpy.dtype"
        and isinstance(dtype.args, tuple)
        and dtype.args
        and isinstance(dtype.args[0], str)
    ):
        raise PickleParseError("joblib array dtype is not a plain numpy.dtype")
    import numpy as np

    code = dtype.args[0]
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    try:
        parsed = np.dtype(code)
    except (TypeError, ValueError) as exc:
        raise PickleParseError(f"unknown dtype {code!r}") from exc
    itemsize = parsed.itemsize
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        itemsize = state[5]
    has_object = parsed.hasobject or bool(flags & 1)
    if state and len(state) > 4 and state[4] is not None and not has_object and itemsize <= 0:
        raise PickleParseError("structured dtype without a size")
    return itemsize, has_object


def looks_like_pickle(head: bytes) -> bool:
    """A binary pickle (protocol 2-5) starts with PROTO; that is a strong signal."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


#: Opcodes a protocol 0/1 pickle can plausibly start with.
_TEXT_START = frozenset(b"(c]})NIJKLMSVXTUBCGFdl\x80")


def scan_stream(
    source: IO[bytes],
    location: str,
    options: PickleScanOptions,
    report: Callable[[Finding], None],
) -> StreamResult:
    """Scan one pickle stream starting at the current position of ``source``."""
    return _VM(source, location, options, report, depth=0).run()


def iter_streams(
    source: IO[bytes],
    location: str,
    options: PickleScanOptions,
    report: Callable[[Finding], None],
) -> Iterator[StreamResult]:
    """Scan every stream in ``source``: a file may hold several (and loaders read them all).

    Legacy ``torch.save`` files hold exactly five pickles followed by raw storage bytes, which
    are recognised by the magic number in the first stream. Anything else that follows the
    last stream and is not itself a pickle is a finding: trailing bytes are where a second,
    hidden payload would go.
    """
    source.seek(0, io.SEEK_END)
    end = source.tell()
    source.seek(0)
    index = 0
    legacy_torch = False
    while source.tell() < end:
        here = source.tell()
        stream_options = options
        if legacy_torch and index == 3:
            stream_options = PickleScanOptions(
                allowlist=options.allowlist,
                persistent_ids=True,
                joblib_arrays=options.joblib_arrays,
                max_nesting=options.max_nesting,
            )
        result = _VM(source, f"{location}#stream{index}", stream_options, report, depth=0).run()
        yield result
        if not result.ok:
            return
        if index == 0 and result.value == TORCH_LEGACY_MAGIC:
            legacy_torch = True
        index += 1
        if legacy_torch and index == 5:
            return  # raw storage data follows; torch never unpickles it
        if source.tell() <= here:  # pragma: no cover - defensive, genops always advances
            return


def scan_pickle_bytes(
    data: bytes, location: str, allowlist: frozenset[str], **kwargs: Any
) -> tuple[list[Finding], list[StreamResult]]:
    """Convenience for tests and callers holding bytes: every finding and every stream."""
    findings: list[Finding] = []
    options = PickleScanOptions(allowlist=allowlist, **kwargs)
    streams = list(iter_streams(io.BytesIO(data), location, options, findings.append))
    return findings, streams


def probe_pickle(source: IO[bytes], allowlist: frozenset[str]) -> tuple[bool, bool]:
    """(is a pickle, is a complete pickle that imports globals) for data without a PROTO header.

    The whole input is parsed, not a prefix: a payload placed after a long harmless opening
    must not escape. A broken text pickle (nullifAI style) still counts when it names a
    real-looking global before the error: that is exactly the payload we must not skip.
    """
    head = source.read(1)
    source.seek(0)
    if not head or head[0] not in _TEXT_START:
        return False, False
    findings: list[Finding] = []
    options = PickleScanOptions(allowlist=allowlist)
    result = _VM(source, "probe", options, findings.append, depth=0).run()
    source.seek(0)
    named = any(_IDENT.match(name) for name in result.globals)
    return result.ok or named, result.ok and named


def literal_header(text: str) -> Any:
    """Parse a ``.npy`` header dict safely (``ast.literal_eval`` never calls anything)."""
    return ast.literal_eval(text)
