"""Exact ``module.qualname`` allow-lists for the pickle scanner.

Why an allow-list: a deny-list has to name every dangerous callable in the standard library
and in every installed package, and each picklescan CVE of 2025 was one more name it missed
(``pip.main``, ``cProfile.run``, ``asyncio`` submodules...). Here a global that is not named
below is a finding, full stop. Entries are exact: ``numpy.dtype`` does not allow
``numpy.dtype.__class__`` or ``numpy.testing``.

The lists are deliberately data-only constructors: containers, numeric types, tensor and array
rebuild functions, and scikit-learn estimator classes (whose unpickling only restores
``__dict__``). Anything that can reach the file system, the network, the interpreter or an
arbitrary attribute is absent. Users extend the set per scan (``--allow``) rather than by
editing this module.
"""

from __future__ import annotations

from collections.abc import Iterable

PYTHON_CORE: frozenset[str] = frozenset(
    {
        "builtins.bool",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.complex",
        "builtins.dict",
        "builtins.float",
        "builtins.frozenset",
        "builtins.int",
        "builtins.list",
        "builtins.object",
        "builtins.range",
        "builtins.set",
        "builtins.slice",
        "builtins.str",
        "builtins.tuple",
        "_codecs.encode",
        "collections.Counter",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "copyreg._reconstructor",
        "datetime.date",
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
    }
)

NUMPY: frozenset[str] = frozenset(
    {
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random.mtrand.RandomState",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._generator.Generator",
        *(
            f"numpy.dtypes.{name}DType"
            for name in [
                "Bool",
                "Int8",
                "UInt8",
                "Int16",
                "UInt16",
                "Int32",
                "UInt32",
                "Int64",
                "UInt64",
                "Float16",
                "Float32",
                "Float64",
                "LongDouble",
                "Complex64",
                "Complex128",
                "CLongDouble",
                "Bytes",
                "Str",
                "Void",
                "Object",
                "DateTime64",
                "TimeDelta64",
                "Byte",
                "UByte",
                "Short",
                "UShort",
                "Int",
                "UInt",
                "Long",
                "ULong",
                "LongLong",
                "ULongLong",
                "Half",
                "Float",
                "Double",
                "CFloat",
                "CDouble",
                "StringDType",
            ]
        ),
        "numpy.dtypes.StringDType",
        *(
            f"numpy.{name}"
            for name in [
                "bool_",
                "int8",
                "uint8",
                "int16",
                "uint16",
                "int32",
                "uint32",
                "int64",
                "uint64",
                "float16",
                "float32",
                "float64",
                "complex64",
                "complex128",
                "longdouble",
                "clongdouble",
                "str_",
                "bytes_",
                "void",
                "datetime64",
                "timedelta64",
                "intc",
                "uintc",
                "longlong",
                "ulonglong",
            ]
        ),
    }
)

JOBLIB: frozenset[str] = frozenset(
    {
        # Reads the array that follows it in the stream; the scanner does the same and scans
        # nested object-array pickles. The legacy NDArrayWrapper (reads sibling files with
        # allow_pickle) is deliberately absent.
        "joblib.numpy_pickle.NumpyArrayWrapper",
    }
)

_TORCH_DTYPES = [
    "bfloat16",
    "bits16",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bool",
    "complex128",
    "complex32",
    "complex64",
    "float16",
    "float32",
    "float4_e2m1fn_x2",
    "float64",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "int1",
    "int16",
    "int2",
    "int3",
    "int32",
    "int4",
    "int5",
    "int6",
    "int64",
    "int7",
    "int8",
    "qint32",
    "qint8",
    "quint2x4",
    "quint4x2",
    "quint8",
    "uint1",
    "uint16",
    "uint2",
    "uint3",
    "uint32",
    "uint4",
    "uint5",
    "uint6",
    "uint64",
    "uint7",
    "uint8",
    "half",
    "float",
    "double",
    "long",
    "int",
    "short",
    "cfloat",
    "cdouble",
]
_TORCH_TYPES = [
    "BFloat16",
    "Bool",
    "Byte",
    "Char",
    "ComplexDouble",
    "ComplexFloat",
    "Double",
    "Float",
    "Half",
    "Int",
    "Long",
    "QInt32",
    "QInt8",
    "QUInt2x4",
    "QUInt4x2",
    "QUInt8",
    "Short",
]

TORCH: frozenset[str] = frozenset(
    {
        # The same set torch.load(weights_only=True) accepts (torch 2.13), minus nothing:
        # every callable below only rebuilds tensors from storages and plain values.
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch.storage.TypedStorage",
        "torch.storage.UntypedStorage",
        "torch.strided",
        "torch.sparse_coo",
        "torch.per_channel_affine",
        "torch.per_channel_affine_float_qparams",
        "torch.per_channel_symmetric",
        "torch.per_tensor_affine",
        "torch.per_tensor_symmetric",
        "torch._tensor._rebuild_from_type_v2",
        *(
            f"torch._utils.{name}"
            for name in [
                "_rebuild_device_tensor_from_cpu_tensor",
                "_rebuild_device_tensor_from_numpy",
                "_rebuild_meta_tensor_no_storage",
                "_rebuild_nested_tensor",
                "_rebuild_parameter",
                "_rebuild_parameter_with_state",
                "_rebuild_qtensor",
                "_rebuild_sparse_tensor",
                "_rebuild_tensor",
                "_rebuild_tensor_v2",
                "_rebuild_tensor_v3",
                "_rebuild_wrapper_subclass",
            ]
        ),
        *(f"torch.{name}" for name in _TORCH_DTYPES),
        *(f"torch.{t}Storage" for t in _TORCH_TYPES),
        *(f"torch.cuda.{t}Storage" for t in _TORCH_TYPES),
        *(f"torch.{t}Tensor" for t in _TORCH_TYPES),
        *(f"torch.cuda.{t}Tensor" for t in _TORCH_TYPES),
        *(f"torch.sparse.{t}Tensor" for t in _TORCH_TYPES),
        *(f"torch.cuda.sparse.{t}Tensor" for t in _TORCH_TYPES),
    }
)


def _sklearn_names() -> frozenset[str]:
    """Estimator classes and the fitted helpers their state holds (trees, losses, links)."""
    from wardgate.supplychain.allowlist_sklearn import SKLEARN_CLASSES

    return frozenset(SKLEARN_CLASSES)


def default_allowlist(extra: Iterable[str] = ()) -> frozenset[str]:
    """The allow-list the CLI and the gateway use unless told otherwise."""
    return PYTHON_CORE | NUMPY | JOBLIB | TORCH | _sklearn_names() | frozenset(extra)


def load_allowlist_file(path: str) -> frozenset[str]:
    """One ``module.qualname`` a line; ``#`` starts a comment. Used by ``--allow-file``."""
    names: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            entry = line.split("#", 1)[0].strip()
            if entry:
                names.add(entry)
    return frozenset(names)


#: Modules whose reachable callables run code, touch files or the network. A global from one of
#: these is reported as CRITICAL rather than HIGH; it is *not* what decides whether a global is
#: allowed (the allow-list does), only how loudly we say so.
DANGEROUS_ROOTS: frozenset[str] = frozenset(
    [
        "os",
        "posix",
        "nt",
        "posixpath",
        "ntpath",
        "subprocess",
        "sys",
        "builtins",
        "__builtin__",
        "importlib",
        "runpy",
        "pty",
        "socket",
        "shutil",
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "types",
        "code",
        "codeop",
        "ctypes",
        "webbrowser",
        "pip",
        "_pip",
        "cProfile",
        "profile",
        "pdb",
        "bdb",
        "timeit",
        "trace",
        "pydoc",
        "asyncio",
        "multiprocessing",
        "threading",
        "_thread",
        "functools",
        "operator",
        "torch.hub",
        "torch.jit",
        "torch.ops",
        "torch._dynamo",
        "torch.utils",
        "tempfile",
        "glob",
        "zipimport",
        "site",
        "sysconfig",
        "ensurepip",
        "venv",
        "distutils",
        "setuptools",
        "pkg_resources",
        "http",
        "urllib",
        "urllib3",
        "requests",
        "smtplib",
        "ftplib",
        "telnetlib",
        "xmlrpc",
        "idlelib",
        "lib2to3",
        "tkinter",
        "commands",
        "popen2",
        "dill",
        "cloudpickle",
        "joblib.numpy_pickle_compat",
        "numpy.testing",
        "numpy.f2py",
        "numpy.distutils",
        "numpy.lib.npyio",
        "numpy.load",
        "keras",
        "tensorflow",
        "jinja2",
        "yaml",
        "platform",
        "signal",
        "sqlite3",
        "gc",
        "inspect",
        "linecache",
    ]
)

DANGEROUS_BUILTINS: frozenset[str] = frozenset(
    [
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "input",
        "help",
        "exit",
        "quit",
        "memoryview",
        "classmethod",
        "staticmethod",
        "property",
        "super",
        "type",
        "print",
        "dir",
    ]
)


def is_dangerous(module: str, name: str) -> bool:
    """True when a global is known to reach code execution, files or the network."""
    if module in ("builtins", "__builtin__"):
        return name in DANGEROUS_BUILTINS
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in DANGEROUS_ROOTS for i in range(len(parts)))
