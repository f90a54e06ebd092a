"""The allow-list scanner against the bypass corpus, and the VM's corner cases."""

from __future__ import annotations

import io
import pickle
import zlib

import pytest
import supplychain_corpus as sc

from wardgate.supplychain.allowlist import default_allowlist
from wardgate.supplychain.findings import Severity
from wardgate.supplychain.pickle_scan import scan_pickle_bytes
from wardgate.supplychain.scan import ScanOptions, scan_path

MALICIOUS = [s.filename for s in sc.malicious_samples()]
BENIGN = [s.filename for s in sc.benign_samples()]


@pytest.mark.parametrize("filename", MALICIOUS)
def test_every_bypass_is_flagged(corpus_path, filename):
    report = scan_path(corpus_path(filename))
    assert not report.clean, f"{filename} was missed"
    assert report.worst is not None and report.worst >= Severity.HIGH


@pytest.mark.parametrize("filename", BENIGN)
def test_benign_files_are_clean(corpus_path, filename):
    report = scan_path(corpus_path(filename))
    assert report.clean, [f.message for f in report.findings]
    assert report.files_scanned >= 1


def _codes(data: bytes, **kw):
    findings, streams = scan_pickle_bytes(data, "t", default_allowlist(), **kw)
    return [f.code for f in findings], findings, streams


def test_nullifai_reports_payload_before_parse_error():
    codes, findings, _ = _codes(sc.broken_pickle("os", "system", "id"))
    assert codes[0] == "pickle.unsafe_global"
    assert "os.system" in findings[0].message
    assert "pickle.parse_error" in codes


def test_memoised_stack_global_is_resolved():
    data = sc.sample_bytes("memo_stack_global.pkl")
    codes, findings, _ = _codes(data)
    assert codes == ["pickle.unsafe_global"]
    assert "os.system" in findings[0].message


def test_computed_stack_global_fails_closed():
    data = sc.sample_bytes("computed_stack_global.pkl")
    codes, _, _ = _codes(data)
    assert "pickle.dynamic_global" in codes


def test_python2_names_are_mapped_like_the_unpickler():
    codes, findings, _ = _codes(sc.call_pickle("__builtin__", "eval", "1", proto=2))
    assert codes == ["pickle.unsafe_global"]
    assert "builtins.eval" in findings[0].message
    # and a mapped benign name stays allowed
    clean, _, _ = _codes(sc.Asm(2).glob("__builtin__", "set").empty_tuple().reduce().stop())
    assert clean == []


def test_allow_list_is_exact_not_prefix():
    allow = default_allowlist()
    assert "numpy.dtype" in allow
    codes, _, _ = _codes(sc.call_pickle("numpy.testing._private.utils", "runstring", "x"))
    assert codes == ["pickle.unsafe_global"]
    codes, _, _ = _codes(sc.call_pickle("collections", "OrderedDict.fromkeys", "ab"))
    assert codes == ["pickle.global_not_allowed"]


def test_extra_allow_entries_are_honoured():
    data = sc.call_pickle("mylib.layers", "Block", 3)
    findings, _ = scan_pickle_bytes(data, "t", default_allowlist())
    assert [f.code for f in findings] == ["pickle.global_not_allowed"]
    findings, _ = scan_pickle_bytes(data, "t", default_allowlist(["mylib.layers.Block"]))
    assert findings == []


def test_every_stream_is_scanned_and_trailing_garbage_is_a_finding():
    codes, _, streams = _codes(pickle.dumps(1) + pickle.dumps(2) + sc._evil())
    assert len(streams) == 3
    assert codes == ["pickle.unsafe_global"]
    codes, _, _ = _codes(pickle.dumps({"a": 1}) + b"\x00garbage")
    assert codes == ["pickle.parse_error"]


def test_truncated_pickle_is_a_finding():
    data = pickle.dumps({"a": list(range(100))}, protocol=4)
    codes, _, _ = _codes(data[:-10])
    assert codes == ["pickle.parse_error"]


def test_persistent_ids_only_inside_torch_archives():
    data = sc.torch_state_dict_pickle({"w": (2,)})
    codes, _, _ = _codes(data)
    assert codes == ["pickle.persistent_id"]
    codes, _, _ = _codes(data, persistent_ids=True)
    assert codes == []


def test_joblib_array_bytes_are_skipped_and_object_arrays_scanned():
    import numpy as np

    joblib = pytest.importorskip("joblib")
    out = io.BytesIO()
    joblib.dump({"x": np.arange(4096.0), "f": np.ones((7, 3), order="F")}, out)
    codes, _, streams = _codes(out.getvalue())
    assert codes == [] and len(streams) == 1
    out = io.BytesIO()
    joblib.dump({"o": np.array([1, "two", None], dtype=object)}, out)
    codes, _, _ = _codes(out.getvalue())
    assert codes == []
    codes, _, _ = _codes(sc.joblib_object_array(sc._evil()))
    assert codes == ["pickle.unsafe_global"]


def test_legacy_torch_layout_stops_before_raw_storage():
    main = sc.Asm(2).glob("collections", "OrderedDict").empty_tuple().reduce().stop()
    codes, _, streams = _codes(sc.legacy_torch(main) + b"\x80\x02raw-storage-bytes")
    assert codes == [] and len(streams) == 5


def test_compressed_and_nested_containers(tmp_path):
    path = tmp_path / "nested.bin"
    inner = sc.write_zip([sc.ZipEntry("a/data.pkl", sc._evil(), deflate=True)])
    path.write_bytes(zlib.compress(inner))
    report = scan_path(path)
    assert not report.clean
    assert {"zlib", "zip", "pickle"} <= set(report.formats)


def test_corrupt_zip_is_an_error_not_clean(tmp_path):
    data = sc.torch_zip({"w": (2,)})
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    report = scan_path(path)
    assert not report.clean and report.errors


def test_scan_limit_on_decompression(tmp_path):
    path = tmp_path / "bomb.gz"
    import gzip

    path.write_bytes(gzip.compress(b"\x80\x04" + b"\x00" * 2_000_000))
    report = scan_path(path, ScanOptions(max_member_bytes=1_000_000))
    assert report.errors and not report.clean


def test_text_protocol_zero_payload_without_stop_is_caught(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_bytes(b"cos\nsystem\n(S'id'\ntR")  # no STOP: a broken protocol-0 pickle
    report = scan_path(path)
    assert any(f.code == "pickle.unsafe_global" for f in report.findings)


def test_plain_text_and_json_are_not_pickles(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "README.md").write_text("# model\nVery good model.\n")
    report = scan_path(tmp_path)
    assert report.clean and report.files_scanned == 2


def test_handmade_torch_zip_matches_torch():
    torch = pytest.importorskip("torch")
    buf = io.BytesIO(sc.torch_zip({"weight": (3, 4), "bias": (3,)}))
    state = torch.load(buf, weights_only=True)
    assert list(state) == ["weight", "bias"] and tuple(state["weight"].shape) == (3, 4)


@pytest.mark.parametrize("sample", sc.library_benign_samples(), ids=lambda s: s.filename)
def test_real_library_checkpoints_are_clean(tmp_path, sample):
    path = tmp_path / sample.filename
    path.write_bytes(sample.build())
    report = scan_path(path)
    assert report.clean, [f.message for f in report.findings]


def test_resource_bounds_fail_closed_quickly():
    codes, findings, _ = _codes(b"(" * 200_000)
    assert codes == ["pickle.parse_error"] and "too deep" in findings[0].message


def test_long_strings_are_not_kept_but_still_scanned():
    data = pickle.dumps({"k" * 10_000: "v" * 100_000, "b": b"x" * 100_000}, protocol=4)
    codes, _, streams = _codes(data + sc._evil())
    assert codes == ["pickle.unsafe_global"] and len(streams) == 2
