"""Hostile RadioML files and radio configs: every one refused with one NeurokdError line, nothing
crashes the interpreter or allocates what the file cannot back; valid files of every pickle
protocol still read exactly."""

import codecs
import io
import json
import pickle
import pickletools
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from neurokd import h5safe
from neurokd.errors import NeurokdError
from neurokd.radio.config import radio_config, radio_bytes, symbols_bytes, symbols_config
from neurokd.radio.radioml import (MAX_FRAME_LENGTH, MAX_NESTING, RADIOML2016_MODULATIONS,
                                   RADIOML2018_CLASSES, load_restricted_pickle, read_radioml2016,
                                   read_radioml2018)
from tests.conftest import run_cli

GiB = 1 << 30


# ---------------------------------------------------------------- hostile pickles, by hand
def _binunicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def forged_pointer_pickle(dtype: str = "O") -> bytes:
    """``_codecs.encode(numpy.ndarray((1,), numpy.dtype('O'), <8 bytes>), 'idna')``: an object
    array whose element is a pointer the file chose, then dereferenced (crashes ``pickle.load``)."""
    return (b"\x80\x03" + b"c_codecs\nencode\n" + b"cnumpy\nndarray\n" + b"K\x01\x85"
            + b"cnumpy\ndtype\n" + _binunicode(dtype) + b"\x85R" + b"C\x08" + b"\x41" * 8
            + b"\x87R" + _binunicode("idna") + b"\x86R.")


def nested_tuple_pickle(depth: int = 200_000) -> bytes:
    """A dict whose key is ``depth`` nested 1-tuples (hashing it crashes ``pickle.load``)."""
    return b"\x80\x02}" + b"N" + b"\x85" * depth + b"Ns."


def hex_chain_pickle(k: int = 30) -> bytes:
    """``_codecs.encode(... _codecs.encode(b'AAAA', 'hex') ..., 'hex')``, ``k`` deep: 2**k times
    the bytes it starts from."""
    return (b"\x80\x03" + b"c_codecs\nencode\n" * k + b"C\x04AAAA"
            + (_binunicode("hex") + b"\x86R") * k + b".")


def zero_stride_pickle(n: int = 1 << 30) -> bytes:
    """``numpy.ndarray((n,), float64, buffer=<8 bytes>, offset=0, strides=(0,))``: 8 GB of
    float64 over 8 stored bytes, as soon as anything copies it."""
    return (b"\x80\x03cnumpy\nndarray\n(" + b"\x8a\x05" + n.to_bytes(5, "little") + b"\x85"
            + b"cnumpy\ndtype\n" + _binunicode("f8") + b"\x85R" + b"C\x08" + b"\x00" * 8
            + b"K\x00" + b"K\x00\x85" + b"tR.")


def huge_length_pickle() -> bytes:
    """A BINBYTES8 that claims 2**62 bytes."""
    return b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"abc."


def huge_memo_pickle() -> bytes:
    """LONG_BINPUT at index 2**32 - 16: the C unpickler grows its memo to that many slots."""
    return b"\x80\x02N" + b"r" + struct.pack("<I", 2**32 - 16) + b"."


class _SharedRaw:
    """Reduces to a real array reconstruction whose raw data is one shared bytes object."""

    def __init__(self, raw, n):
        self.raw, self.n = raw, n

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"),
                (1, (self.n, 2, 128), np.dtype(np.float32), False, self.raw))


def shared_array_pickle() -> bytes:
    """One 4 MB array under all 891 (modulation, SNR) keys: 3.6 GB once the frames are joined."""
    a = np.zeros((4000, 2, 128), np.float32)
    return pickle.dumps({(m, s): a for m in RADIOML2016_MODULATIONS for s in range(-40, 41)},
                        protocol=2)


def shared_raw_pickle() -> bytes:
    """Distinct arrays that all take their data from one stored byte string (the memo)."""
    raw = bytes(4000 * 2 * 128 * 4)
    return pickle.dumps({("QPSK", s): _SharedRaw(raw, 4000) for s in range(-40, 41)}, protocol=3)


def _run_readers(tmp_path, files, address_space=None):
    """Read each file with read_radioml2016 in a fresh interpreter (under an address-space
    ceiling if given): {name: [exit-like code, message]}; its own return code."""
    script = textwrap.dedent(f"""
        import json, resource, sys
        if {address_space!r}:
            resource.setrlimit(resource.RLIMIT_AS, ({address_space!r}, {address_space!r}))
        from neurokd.errors import NeurokdError
        from neurokd.radio.radioml import read_radioml2016
        out = {{}}
        for name in sys.argv[1:]:
            try:
                read_radioml2016(name)
                out[name] = [0, "read"]
            except NeurokdError as exc:
                out[name] = [2, str(exc)]
            except BaseException as exc:
                out[name] = [1, type(exc).__name__ + ": " + str(exc)[:200]]
        print(json.dumps(out))
        sys.exit(max(code for code, _ in out.values()))
    """)
    paths = []
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
        paths.append(str(tmp_path / name))
    r = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True,
                       timeout=300)
    results = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    return r.returncode, {k.rsplit("/", 1)[-1]: v for k, v in results.items()}, r.stderr


@pytest.mark.parametrize("name, blob, message", [
    ("pointer.pkl", forged_pointer_pickle("O"), r"dtype 'O'"),
    ("pointer_f8.pkl", forged_pointer_pickle("f8"), r"numpy\.ndarray"),
    ("nested.pkl", nested_tuple_pickle(), f"deeper than {MAX_NESTING} levels"),
], ids=["pointer", "pointer-f8", "nested"])
def test_pickles_that_crash_the_unpickler_are_clean_errors(tmp_path, name, blob, message):
    rc, results, err = _run_readers(tmp_path, {name: blob})
    assert rc == 2, (rc, results, err)  # a NeurokdError, never a signal
    code, text = results[name]
    assert code == 2 and "refused" in text and "\n" not in text
    assert re.search(message, text), text


def test_the_crashing_pickles_are_what_they_claim():
    # the pointer pickle really asks numpy for an object array over file bytes, then encodes it
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(forged_pointer_pickle())]
    assert ("GLOBAL", "numpy ndarray") in ops and ("SHORT_BINBYTES", b"A" * 8) in ops
    assert ("BINUNICODE", "O") in ops and ("BINUNICODE", "idna") in ops
    assert sum(1 for op, _ in ops if op == "TUPLE1") == 2  # (1,) and ('O',)
    nested = nested_tuple_pickle()
    assert nested.count(b"\x85") == 200_000 and len(nested) == 200_007


@pytest.mark.parametrize("name, blob, message", [
    ("hex.pkl", hex_chain_pickle(), r"_codecs\.encode is called with \(b'AAAA', 'hex'\)"),
    ("stride.pkl", zero_stride_pickle(), r"calls numpy\.ndarray"),
    ("shared.pkl", shared_array_pickle(), r"stored once but used twice \(key \("),
    ("raw.pkl", shared_raw_pickle(), "more bytes than the file stores"),
    ("length.pkl", huge_length_pickle(), "not a readable pickle"),
    ("memo.pkl", huge_memo_pickle(), "memo entry 4294967280"),
], ids=["hex", "stride", "shared", "shared-raw", "length", "memo"])
def test_growth_bombs_are_refused_under_a_memory_ceiling(tmp_path, name, blob, message):
    rc, results, err = _run_readers(tmp_path, {name: blob}, address_space=2 * GiB)
    assert rc == 2, (rc, results, err)
    code, text = results[name]
    assert code == 2 and re.search(message, text), text
    assert len(blob) < 8 * 1024 * 1024 and "\n" not in text


def test_the_bombs_are_bombs():
    assert len(hex_chain_pickle()) < 1000  # 4 bytes doubled 30 times: 4 GiB of hex
    assert len(zero_stride_pickle()) < 110
    data = pickle.loads(zero_stride_pickle())  # a view; copying it would take 8 GiB
    assert data.shape == (1 << 30,) and data.strides == (0,) and data.dtype == np.float64
    blob = shared_array_pickle()
    assert len(blob) < 5 * 1024 * 1024
    ops = [op.name for op, _, _ in pickletools.genops(blob)]
    assert ops.count("BINGET") >= 890  # the array stored once, referenced 890 more times


# ---------------------------------------------------------------- valid files, every protocol
class _Py2Protocol0(pickle._Pickler):
    """Writes str and bytes as Python 2 protocol-0 STRING opcodes (quoted, backslash escaped), as
    Python 2's cPickle wrote RadioML 2016 by default."""

    def save_bytes(self, obj):
        self.write(b"S'" + codecs.escape_encode(obj)[0] + b"'\n")
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin-1"))

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _dataset(empty=False):
    gen = np.random.default_rng(11)
    data = {(m, s): gen.standard_normal((2 + (s % 3), 2, 128)).astype(np.float32)
            for m in ("QPSK", "BPSK", "8PSK") for s in (-4, 0, 8)}
    if empty:
        data[("QPSK", 2)] = np.zeros((0, 2, 128), np.float32)
        data[("8PSK", 20)] = np.zeros((0, 2, 128), np.float32)
    return data


def _expected(data, names, snr_range=None):
    keys = sorted((k for k in data if k[0] in names), key=lambda k: (names.index(k[0]), k[1]))
    if snr_range is not None:
        keys = [k for k in keys if snr_range[0] <= k[1] <= snr_range[1]]
    frames = np.concatenate([data[k] for k in keys])
    label = np.concatenate([[names.index(k[0])] * len(data[k]) for k in keys])
    snr = np.concatenate([[k[1]] * len(data[k]) for k in keys])
    return frames[:, 0] + 1j * frames[:, 1], label, snr


@pytest.mark.parametrize("writer", ["protocol2", "protocol5", "protocol0_py2", "protocol0",
                                    "protocol4"])
def test_valid_pickles_of_every_protocol_read_exactly(tmp_path, writer):
    data = _dataset(empty=True)
    if writer == "protocol0_py2":
        buf = io.BytesIO()
        _Py2Protocol0(buf, protocol=0).dump(data)
        blob = buf.getvalue()
    else:
        blob = pickle.dumps(data, protocol=int(writer[-1]))
    path = tmp_path / "rml.pkl"
    path.write_bytes(blob)
    if writer == "protocol0_py2":  # (pickletools cannot list these: it reads STRING as ASCII)
        assert blob.startswith(b"(dp0\n") and b"S'QPSK'\np" in blob and b"\nS'\\x" in blob
    else:
        globals_ = {arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
        names = [op.name for op, _, _ in pickletools.genops(blob)]
        if writer == "protocol2":  # an empty array's data is bytes(), a full one's _codecs.encode
            assert {"__builtin__ bytes", "_codecs encode"} <= globals_
        if writer == "protocol5":  # numpy's protocol-5 path, the data in-band
            assert "BYTEARRAY8" in names and b"_frombuffer" in blob

    loaded = load_restricted_pickle(path)
    assert set(loaded) == set(data)
    for k, v in data.items():
        assert loaded[k].dtype == np.float32 and loaded[k].shape == v.shape
        assert np.array_equal(loaded[k], v)

    rml = read_radioml2016(path)
    iq, label, snr = _expected(data, ["8PSK", "BPSK", "QPSK"])
    assert rml.class_names == ["8PSK", "BPSK", "QPSK"]
    assert rml.iq.dtype == np.complex64 and np.array_equal(rml.iq, iq.astype(np.complex64))
    assert np.array_equal(rml.label, label) and np.array_equal(rml.snr_db, snr)

    one = read_radioml2016(path, classes="BPSK", snr_range=(0, 8))
    iq, label, snr = _expected(data, ["BPSK"], (0, 8))
    assert one.class_names == ["BPSK"] and np.array_equal(one.iq, iq.astype(np.complex64))
    assert np.array_equal(one.label, label) and np.array_equal(one.snr_db, snr)


def test_numpy_scalars_dtypes_and_byte_orders_survive(tmp_path):
    gen = np.random.default_rng(3)
    value = {
        "big": gen.standard_normal((3, 4)).astype(">f8"),
        "fortran": np.asfortranarray(gen.standard_normal((3, 4, 2))),
        "strided": gen.integers(0, 9, (6, 6)).astype(np.int16)[::2, 1::2],
        "complex": (gen.standard_normal(5) + 1j).astype(np.complex64),
        "bool": np.array([True, False, True]),
        "scalar": np.float32(2.5),
        "plain": [1, 2.5, None, True, "text", b"bytes", (1, 2)],
    }
    for protocol in range(6):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        got = load_restricted_pickle(path)
        for key in ("big", "fortran", "strided", "complex", "bool"):
            a, b = value[key], got[key]
            assert type(b) is np.ndarray and b.shape == a.shape and np.array_equal(a, b)
            assert b.dtype.kind == a.dtype.kind and b.dtype.itemsize == a.dtype.itemsize
        assert got["scalar"] == np.float32(2.5) and got["scalar"].dtype == np.float32
        assert got["plain"] == value["plain"]


@pytest.mark.parametrize("blob, message", [
    (pickle.dumps({("QPSK", 0): np.array(["a", "b"])}, protocol=2), "numeric dtypes"),
    (pickle.dumps({("QPSK", 0): np.array([1, "b"], dtype=object)}, protocol=2), "numeric dtypes"),
    (pickle.dumps({("QPSK", 0): np.zeros(2, dtype=[("a", "f4")])}, protocol=2), "numeric dtype"),
    (pickle.dumps({("QPSK", 0): {1, 2}}, protocol=2), r"__builtin__\.set"),
    (pickle.dumps({("QPSK", 0): {1, 2}}, protocol=4), "opcode EMPTY_SET"),
    (b"\x80\x02cnumpy\nndarray\nK\x00\x85b.", "sets the state of _Global"),
    (b"\x80\x02]q\x00h\x00a.", "changed after it was placed inside"),
    (b"\x80\x02(" + b"N" * 300 + b"t.", "more than 256 objects"),
    (b"\x80\x02N" + b"q\x00" + b"(" + b"h\x00" * 20 + b"tq\x01" + b"(" + b"h\x01" * 20 + b"t.",
     "more than 256 objects"),
    (b"\x80\x02\x8c", "not a readable pickle"),
], ids=["str-array", "object-array", "structured", "set", "set4", "build-global", "self-append",
        "wide-tuple", "shared-tuple", "truncated"])
def test_other_hostile_pickles_are_one_line(tmp_path, blob, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(blob)
    with pytest.raises(NeurokdError, match=message) as err:
        load_restricted_pickle(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


# ---------------------------------------------------------------- RadioML 2016 arguments
@pytest.fixture
def rml2016(tmp_path):
    path = tmp_path / "rml.pkl"
    data = _dataset()
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path, data


@pytest.mark.parametrize("kwargs, message", [
    ({"snr_range": (float("nan"), 10)}, "holds NaN"),
    ({"snr_range": (0, float("nan"))}, "holds NaN"),
    ({"snr_range": (10, 0)}, "reversed: low 10 dB is above high 0 dB"),
    ({"snr_range": 5}, r"must be \(low, high\)"),
    ({"snr_range": ("a", "b")}, "two numbers"),
    ({"limit": 2.5}, "limit must be a positive whole number"),
    ({"limit": True}, "limit must be a positive whole number"),
    ({"limit": "3"}, "limit must be a positive whole number"),
    ({"limit": 0}, "limit must be a positive whole number"),
    ({"classes": {"BPSK"}}, "classes must be a class name, an index, or a list"),
    ({"classes": 2.0}, "classes must be"),
    ({"classes": ["BPSK", None]}, "unknown class None"),
    ({"classes": "FM"}, "unknown class 'FM'"),
    ({"classes": [10**5000]}, "class index <a 16610-bit integer> is outside"),
    ({"snr_range": (10**400, 1)}, "out of any range"),
])
def test_radioml2016_bad_arguments_are_one_line(rml2016, kwargs, message):
    path, _ = rml2016
    with pytest.raises(NeurokdError, match=message) as err:
        read_radioml2016(path, **kwargs)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_radioml2016_single_class_name_or_index(rml2016):
    path, data = rml2016
    by_name = read_radioml2016(path, classes="BPSK")
    by_index = read_radioml2016(path, classes=1)  # sorted: 8PSK, BPSK, QPSK
    by_list = read_radioml2016(path, classes=["BPSK"])
    for r in (by_name, by_index):
        assert r.class_names == ["BPSK"] and np.array_equal(r.iq, by_list.iq)
        assert np.array_equal(r.snr_db, by_list.snr_db) and set(r.label.tolist()) == {0}
    assert len(by_name) == sum(len(v) for k, v in data.items() if k[0] == "BPSK")
    wide = read_radioml2016(path, snr_range=(-np.inf, np.inf), limit=np.int64(4))
    assert len(wide) == 4


def test_radioml2016_refuses_frames_longer_than_the_bound(tmp_path):
    path = tmp_path / "long.pkl"
    path.write_bytes(pickle.dumps({("QPSK", 0): np.zeros((1, 2, MAX_FRAME_LENGTH + 1),
                                                         np.float32)}, protocol=2))
    with pytest.raises(NeurokdError, match=f"at most {MAX_FRAME_LENGTH} are read"):
        read_radioml2016(path)


# ---------------------------------------------------------------- RadioML 2018
def _radioml2018(path, x=None, n_per=1, length=1024):
    import h5py

    n = 24 * n_per
    label = np.repeat(np.arange(24), n_per)
    snr = np.tile(np.arange(n_per) * 2 - 2, 24)
    if x is None:
        x = np.random.default_rng(5).standard_normal((n, length, 2)).astype(np.float32)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("X", data=x)
        fh.create_dataset("Y", data=np.eye(24, dtype=np.int64)[label])
        fh.create_dataset("Z", data=snr[:, None].astype(np.int64))
    return x, label, snr


def test_radioml2018_refuses_external_storage_and_never_reads_the_secret(tmp_path):
    import h5py

    secret = b"TOP-SECRET-KEY-" * 1024 * 8  # 122 880 bytes
    (tmp_path / "secret.bin").write_bytes(secret)
    n = 24
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("X", shape=(n, 640, 2), dtype=np.float32,
                          external=[(str(tmp_path / "secret.bin"), 0, n * 640 * 2 * 4)])
        fh.create_dataset("Y", data=np.eye(24, dtype=np.int64))
        fh.create_dataset("Z", data=np.zeros((n, 1), np.int64))
    with h5py.File(path, "r") as fh:  # the file really reads the secret when opened naively
        assert fh["X"][0].tobytes()[:15] == b"TOP-SECRET-KEY-"
    with pytest.raises(NeurokdError, match="external storage") as err:
        read_radioml2018(path)
    text = str(err.value)
    assert "TOP-SECRET" not in text and "\n" not in text and str(path) in text


def test_radioml2018_refuses_links_and_virtual_datasets(tmp_path):
    import h5py

    x, _, _ = _radioml2018(tmp_path / "real.h5")
    path = tmp_path / "link.h5"
    with h5py.File(path, "w") as fh:
        fh["X"] = h5py.ExternalLink(str(tmp_path / "real.h5"), "/X")
        fh.create_dataset("Y", data=np.eye(24, dtype=np.int64))
        fh.create_dataset("Z", data=np.zeros((24, 1), np.int64))
    with pytest.raises(NeurokdError, match="external link"):
        read_radioml2018(path)

    path = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=x.shape, dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(tmp_path / "real.h5"), "X", shape=x.shape)
    with h5py.File(path, "w") as fh:
        fh.create_virtual_dataset("X", layout)
        fh.create_dataset("Y", data=np.eye(24, dtype=np.int64))
        fh.create_dataset("Z", data=np.zeros((24, 1), np.int64))
    with pytest.raises(NeurokdError, match="virtual dataset"):
        read_radioml2018(path)


def test_radioml2018_refuses_a_declared_size_the_file_cannot_back(tmp_path):
    import h5py

    path = tmp_path / "huge.h5"
    n = 10_000_000
    with h5py.File(path, "w") as fh:  # 76 GiB declared, nothing stored
        fh.create_dataset("X", shape=(n, 1024, 2), dtype=np.float32, chunks=(1, 1024, 2))
        fh.create_dataset("Y", shape=(n, 24), dtype=np.int8, chunks=(1024, 24))
        fh.create_dataset("Z", shape=(n, 1), dtype=np.int8, chunks=(1024, 1))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(NeurokdError, match="declares") as err:
            read_radioml2018(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(err.value) and peak < 16 << 20


def test_radioml2018_frame_length_and_memory_bounds(tmp_path, monkeypatch):
    _radioml2018(tmp_path / "long.h5", length=MAX_FRAME_LENGTH + 1)
    with pytest.raises(NeurokdError, match=f"at most {MAX_FRAME_LENGTH} are read"):
        read_radioml2018(tmp_path / "long.h5")

    x, label, snr = _radioml2018(tmp_path / "ok.h5", n_per=2)
    n = len(label)
    monkeypatch.setattr(h5safe, "available_memory", lambda: 32 * n + 100_000)
    with pytest.raises(NeurokdError, match=r"the 48 selected frames of 1024 samples take "
                                           r"[0-9.]+ MiB, more than the 0\.1 MiB available") as err:
        read_radioml2018(tmp_path / "ok.h5")
    assert "\n" not in str(err.value)
    few = read_radioml2018(tmp_path / "ok.h5", limit=3)  # 3 frames fit
    rows = np.linspace(0, n - 1, 3).round().astype(int)
    assert np.array_equal(few.iq, (x[rows, :, 0] + 1j * x[rows, :, 1]).astype(np.complex64))
    monkeypatch.setattr(h5safe, "available_memory", lambda: None)  # unknown: the fixed cap
    assert len(read_radioml2018(tmp_path / "ok.h5")) == n


@pytest.mark.parametrize("kwargs, message", [
    ({"snr_range": (float("nan"), 10)}, "holds NaN"),
    ({"snr_range": (10, -10)}, "reversed"),
    ({"limit": -1}, "limit must be a positive whole number"),
    ({"limit": 1.5}, "limit must be a positive whole number"),
    ({"classes": 3.5}, "classes must be"),
    ({"classes": "NOPE"}, "unknown class 'NOPE'"),
    ({"class_names": "ABC"}, "class_names must be a list"),
])
def test_radioml2018_bad_arguments_are_one_line(tmp_path, kwargs, message):
    _radioml2018(tmp_path / "ok.h5")
    with pytest.raises(NeurokdError, match=message) as err:
        read_radioml2018(tmp_path / "ok.h5", **kwargs)
    assert "\n" not in str(err.value)


def test_radioml2018_single_class_string(tmp_path):
    x, label, snr = _radioml2018(tmp_path / "ok.h5", n_per=3)
    rows = np.flatnonzero(label == RADIOML2018_CLASSES.index("BPSK"))
    for classes in ("BPSK", ["BPSK"], RADIOML2018_CLASSES.index("BPSK")):
        sel = read_radioml2018(tmp_path / "ok.h5", classes=classes)
        assert sel.class_names == ["BPSK"] and np.array_equal(sel.label, np.zeros(len(rows)))
        assert np.array_equal(sel.iq, (x[rows, :, 0] + 1j * x[rows, :, 1]).astype(np.complex64))
        assert np.array_equal(sel.snr_db, snr[rows])


# ---------------------------------------------------------------- radio configs
@pytest.mark.parametrize("make, options", [
    (radio_config, {"snr_db": [True]}),
    (radio_config, {"snr_db": [-4, False, 4]}),
    (symbols_config, {"ebn0_db": [True]}),
    (symbols_config, {"ebn0_db": [0, 10, True]}),
])
def test_radio_config_grids_refuse_booleans(make, options):
    with pytest.raises(NeurokdError, match=r"expected a number, got (true|false)") as err:
        make(**options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("make, options, message", [
    (radio_config, {"n_frames": 10_000_000},
     r"n_frames 10000000 × frame_length 128 \(\+ \d+ samples generated around each frame\) "
     r"needs about [0-9.]+ GiB to generate, and 8\.0 GiB is available; lower n_frames"),
    (radio_config, {"n_frames": 10_000_000, "frame_length": 65536, "task": "modulation"},
     r"n_frames 10000000 × frame_length 65536 .* and 8\.0 GiB is available"),
    (symbols_config, {"n_subframes": 1_000_000, "data_symbols": 256, "subcarriers": 4096},
     r"n_subframes 1000000 × data_symbols 256 × subcarriers 4096 × n_tx 2 = 2097152000000 "
     r"samples \(2×2 antennas\) needs about [0-9.]+ GiB to generate, and 8\.0 GiB is available"),
])
def test_radio_config_size_bombs_are_refused_before_allocating(monkeypatch, make, options, message):
    monkeypatch.setattr(h5safe, "available_memory", lambda: 8 * GiB)
    tracemalloc.start()
    try:
        with pytest.raises(NeurokdError, match=message) as err:
            make(**options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20 and "\n" not in str(err.value)


def test_radio_config_memory_bound_follows_the_machine(monkeypatch):
    cfg = radio_config(task="modulation")
    need = radio_bytes(cfg)
    assert need == cfg.n_frames * (96 * 128 + 24 * (26 + (3 * 10 + 2) * 8 + 1))
    monkeypatch.setattr(h5safe, "available_memory", lambda: need)
    assert radio_config(task="modulation") == cfg
    monkeypatch.setattr(h5safe, "available_memory", lambda: need - 1)
    with pytest.raises(NeurokdError, match="is available; lower n_frames or frame_length"):
        radio_config(task="modulation")
    monkeypatch.setattr(h5safe, "available_memory", lambda: None)  # unknown: a 16 GiB cap
    assert radio_config(n_frames=100_000).n_frames == 100_000
    with pytest.raises(NeurokdError, match="memory available is unknown, so at most 16.0 GiB"):
        radio_config(n_frames=10_000_000)
    sym = symbols_config()
    monkeypatch.setattr(h5safe, "available_memory", lambda: symbols_bytes(sym) - 1)
    with pytest.raises(NeurokdError, match="lower n_subframes, data_symbols or subcarriers"):
        symbols_config()


@pytest.mark.parametrize("override, message", [
    ("data.radio={n_frames: 10000000, frame_length: 65536}", "n_frames 10000000 × frame_length 65536"),
    ("data.radio={snr_db: [true]}", "snr_db: expected a number, got true"),
])
def test_radio_config_bombs_through_the_cli(tmp_path, override, message):
    r = run_cli("train-snn", "--dataset", "sensing", "--set", override, "--out", "x", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()
