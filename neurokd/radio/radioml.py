"""Readers for the public RadioML sets, from files the user already has (nothing is downloaded).

- **RadioML 2016.10a** (also 2016.04C): a Python 2 pickle of a dict
  ``{(modulation, snr_db): float32 array (n, 2, 128)}``, rows I and Q. Nothing in the file is run:
  :func:`load_restricted_pickle` reads the pickle's opcodes itself, in pure Python, and builds
  only plain data (None, booleans, numbers, strings, bytes, tuples, lists, dicts) and numpy arrays
  of numeric dtypes. The globals a pickle may name are :data:`ALLOWED_GLOBALS`, numpy's array
  rebuilders and the two byte-string conversions; each resolves to a checking stand-in, never to
  the real callable, so numpy sees no argument the file controls (only numeric dtypes, and data
  whose length matches the shape). Any other global, which is how a pickle runs code, is refused
  where the stream names it, before anything is called, with one line naming it; so are the
  opcodes that build class instances or reach outside the stream (INST, OBJ, NEWOBJ, NEWOBJ_EX,
  EXT1/2/4, PERSID, BINPERSID, NEXT_BUFFER, READONLY_BUFFER) and sets. Every size comes from the
  file: a length is bounded by the bytes left in it, a memo index by the opcodes read so far,
  objects may nest at most :data:`MAX_NESTING` deep and a tuple expand to at most
  :data:`MAX_TUPLE_OBJECTS` objects through parts it shares, the arrays together may hold no more
  bytes than the file (each array's data must be stored in it, not used twice), and two keys may
  not share one array. Protocols 0 to 5 are read (Python 2's cPickle wrote protocol 0 or 2;
  Python 3 writes numpy arrays in protocol 5 through ``numpy.core.numeric._frombuffer``). Keys
  must be (known modulation, integer SNR) pairs.
- **RadioML 2018.01A**: HDF5 with ``X`` (n, 1024, 2) float32 I/Q, ``Y`` (n, 24) one-hot classes and
  ``Z`` (n, 1) SNR in dB. The file is first checked by :func:`neurokd.h5safe.check_hdf5` (no
  external storage or links, no virtual datasets, no dataset larger than its stored bytes), then
  read in bounded pieces: the labels and SNRs first, then only the frames selected by
  ``classes``, the SNR range and ``limit``, after checking that they fit in the memory available.

Frames may hold 1 to :data:`MAX_FRAME_LENGTH` samples (the sets have 128 and 1024). Both readers
return :class:`RadioML`: complex64 frames ``(n, L)`` with ``iq = I + jQ``, labels indexing
``class_names``, and per-frame SNRs. ``classes`` is a list of names or indices (one name or index
alone is one class); ``snr_range`` is ``(low, high)`` in dB, inclusive. ``limit`` keeps that many
frames evenly spaced over the selection in file order (which runs class by class, SNR by SNR), so
every class and SNR keeps its share.
"""

from __future__ import annotations

import codecs
import math
import os
import pickletools
import re
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from neurokd import h5safe
from neurokd.errors import NeurokdError

RADIOML2016_MODULATIONS: Tuple[str, ...] = (
    "8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK", "WBFM")

# The class order of Y in RadioML 2018.01A (the corrected list; the classes.txt shipped with the set
# is known to be in the wrong order).
RADIOML2018_CLASSES: Tuple[str, ...] = (
    "OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK", "16APSK", "32APSK", "64APSK",
    "128APSK", "16QAM", "32QAM", "64QAM", "128QAM", "256QAM", "AM-SSB-WC", "AM-SSB-SC",
    "AM-DSB-WC", "AM-DSB-SC", "FM", "GMSK", "OQPSK")

# The globals a RadioML pickle may name, each served by a checking stand-in (see
# load_restricted_pickle), never by the real callable: numpy's array rebuilders (``_reconstruct``
# with ``ndarray``, protocols 0 to 4; ``_frombuffer``, protocol 5), numeric dtypes and scalars,
# and the str → bytes conversions Python 3 writes into protocol 0-2 pickles
# (``_codecs.encode(text, 'latin1')``, and ``bytes()`` for an empty array's data).
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("__builtin__", "bytes"), ("builtins", "bytes"),
})

SNR_LIMIT_DB = 40
# RadioML 2016 frames hold 128 samples and RadioML 2018.01A frames 1024; longer frames are read
# up to 16 times that.
MAX_FRAME_LENGTH = 1024 * 16
# How deep the objects of a pickle may nest (a RadioML 2016 file nests 4 deep: dict, state tuple,
# shape tuple). Hashing a deeply nested key recurses in C without a limit.
MAX_NESTING = 64
# When the memory available is unknown, the most a selection may take.
MEMORY_CAP = 1 << 34
_READ_ROWS = 65_536  # rows per HDF5 read of Y and Z
_READ_BYTES = 1 << 26  # bytes per HDF5 read of X


@dataclass(frozen=True)
class RadioML:
    """Frames of a RadioML set: ``iq`` complex64 ``(n, L)``, ``label`` int64 into
    ``class_names``, ``snr_db`` float32."""

    iq: np.ndarray
    label: np.ndarray
    snr_db: np.ndarray
    class_names: List[str]

    def __len__(self) -> int:
        return len(self.label)


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class _BoundedRepr(reprlib.Repr):
    """``repr`` that never prints (or builds) more than a few dozen characters of any part."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxtuple, self.maxlist, self.maxdict = 3, 6, 6, 4
        self.maxstring = self.maxother = self.maxlong = 40

    def repr_bytes(self, x: bytes, level: int) -> str:
        return repr(x[:self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return f"bytearray({self.repr_bytes(bytes(x[:self.maxstring + 1]), level)})"

    def repr_int(self, x: int, level: int) -> str:
        return repr(x) if x.bit_length() < 128 else f"<a {x.bit_length()}-bit integer>"


_REPR = _BoundedRepr()


def _short(value: Any, n: int = 60) -> str:
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a value that cannot be printed
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[:n - 3] + "..."


# ---------------------------------------------------------------- restricted pickle reading
class _Refused(Exception):
    """A stream the reader will not build; the message says why (after "refused: ")."""


class _Unreadable(Exception):
    """A stream that is not a well-formed pickle."""


class _Bounded:
    """The pickle file seen by the opcode reader: ``read`` and ``readline`` never return, nor ask
    the file for, more than the bytes left in it, so a length field cannot make it allocate."""

    def __init__(self, fh: Any, size: int) -> None:
        self.fh, self.left, self.pos = fh, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        self.pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        n = self.left if limit is None or limit < 0 else min(limit, self.left)
        data = self.fh.readline(n) if n > 0 else b""
        self.left -= len(data)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos


def _read_line(f: _Bounded, what: str) -> bytes:
    line = f.readline()
    if not line.endswith(b"\n"):
        raise _Unreadable(f"a {what} argument ends without a newline")
    return line[:-1]


def _read_string(f: _Bounded) -> str:
    """STRING (protocol 0): a quoted, backslash-escaped Python 2 str, decoded as latin-1."""
    line = _read_line(f, "STRING")
    if len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b"'", b'"'):
        raise _Unreadable("the STRING opcode argument must be quoted")
    return codecs.escape_decode(line[1:-1])[0].decode("latin-1")


def _read_global(f: _Bounded) -> str:
    module = _read_line(f, "GLOBAL").decode("utf-8")
    name = _read_line(f, "GLOBAL").decode("utf-8")
    return f"{module} {name}"


# Opcodes that build plain data, numpy arrays through the stand-ins, or steer the stream. Anything
# else (class instances, extension registry, persistent ids, out-of-band buffers, sets) is refused.
_DATA_OPS = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES",
    "BINBYTES8", "BYTEARRAY8", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
})
# Opcodes that push their argument: numbers, str (protocol 0-2 byte strings as latin-1), bytes.
_VALUE_OPS = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "BYTEARRAY8", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
})
_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
_READERS = {"STRING": _read_string, "GLOBAL": _read_global}


class _Global:
    """A stand-in for one of :data:`ALLOWED_GLOBALS`; only the reader calls it, with checks."""

    def __init__(self, role: str, module: str, name: str) -> None:
        self.role, self.qualname = role, f"{module}.{name}"

    def __repr__(self) -> str:
        return self.qualname


_ROLES = {"_reconstruct": "reconstruct", "scalar": "scalar", "_frombuffer": "frombuffer",
          "ndarray": "ndarray", "dtype": "dtype", "encode": "encode", "bytes": "bytes"}

# Numeric dtypes by kind and item size: booleans, integers, floats, complex numbers.
_DTYPE_STR = re.compile(r"[<>|=]?([biufc])([0-9]{1,2})")
_ITEM_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}
# A tuple may expand (through parts it shares) to at most this many objects: hashing a tuple
# walks all of them, every time it is used as a key. A RadioML file's largest tuple holds 9.
MAX_TUPLE_OBJECTS = 256


def _is_int(v: Any) -> bool:
    return type(v) is int


class _DType:
    """``numpy.dtype(spec, align, copy)`` for a numeric spec, and its ``__setstate__``."""

    def __init__(self, spec: Any, *flags: Any) -> None:
        m = _DTYPE_STR.fullmatch(spec) if isinstance(spec, str) else None
        if (m is None or int(m.group(2)) not in _ITEM_SIZES[m.group(1)] or len(flags) > 2
                or not all(isinstance(f, int) for f in flags)):
            raise _Refused(f"the pickle asks for dtype {_short(spec)}; only numeric dtypes "
                           "(bool, integer, float, complex) are loaded")
        self.kind, self.itemsize = m.group(1), int(m.group(2))
        self.order = spec[0] if spec[0] in "<>|=" else "="
        self.built = False

    def setstate(self, state: Any) -> None:
        if self.built:
            raise _Refused("a dtype is given its state twice")
        ok = (isinstance(state, tuple) and len(state) in (8, 9)
              and _is_int(state[0]) and state[0] == len(state) - 5
              and isinstance(state[1], str) and state[1] in ("<", ">", "|", "=")
              and state[2] is None and state[3] is None and state[4] is None
              and all(_is_int(v) for v in state[5:8]) and (len(state) == 8 or state[8] is None))
        if not ok:
            raise _Refused(f"a dtype's state {_short(state)} is not that of a plain numeric dtype "
                           "(no fields, subarrays or metadata)")
        self.order, self.built = state[1], True

    def real(self) -> np.dtype:
        dt = np.dtype(f"{self.kind}{self.itemsize}")
        return dt.newbyteorder(self.order) if self.order in ("<", ">") else dt


class _Array:
    """An array the pickle builds: ``_reconstruct(ndarray, (0,), b'b')`` waiting for its state,
    or a finished one (``array`` set, by its state or by ``_frombuffer``)."""

    def __init__(self) -> None:
        self.array: Optional[np.ndarray] = None


def _raw_bytes(raw: Any, what: str) -> bytes:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    if isinstance(raw, str):  # a Python 2 str, read as latin-1
        try:
            return raw.encode("latin-1")
        except UnicodeEncodeError:
            raise _Refused(f"{what} holds text that is not a byte string") from None
    raise _Refused(f"{what} is {type(raw).__name__}, not bytes (only numeric arrays are loaded)")


def _shape(shape: Any) -> Tuple[int, ...]:
    if (not isinstance(shape, tuple) or len(shape) > 32
            or not all(_is_int(n) and 0 <= n < 2**48 for n in shape)):
        raise _Refused(f"an array's shape {_short(shape)} is not a tuple of sizes")
    return shape


# A stack or memo entry: the object, how deep it nests, and for a tuple how many objects it
# expands to (1 for anything else).
_Item = Tuple[Any, int, int]
_DEEP = f"objects nest deeper than {MAX_NESTING} levels (a RadioML file nests 4)"


class _Loader:
    """Runs a pickle's opcodes in pure Python, building plain data and checked numpy arrays.

    Lists and dicts may be filled only until they are placed inside another object (as a plain
    data pickle does), so the nesting depth recorded for every object stays exact.
    """

    def __init__(self, f: _Bounded, size: int) -> None:
        self.f, self.size = f, size
        self.stack: List[_Item] = []
        self.marks: List[int] = []
        self.memo: Dict[int, _Item] = {}
        self.live: Dict[int, int] = {}  # id → depth of each list and dict, which can still grow
        self.sealed: set = set()  # ids of lists and dicts placed inside another object
        self.keep: List[Any] = []  # keeps those ids in use
        self.converted = 0  # bytes made by str → bytes conversions
        self.array_bytes = 0  # bytes of the arrays built
        avail = h5safe.available_memory()
        self.memory = avail if avail else MEMORY_CAP
        self.ops = 0

    # -- the stack
    def depth(self, item: _Item) -> int:
        value, d, _ = item
        return self.live.get(id(value), d) if type(value) in (list, dict) else d

    def push(self, value: Any, depth: int = 0, weight: int = 1) -> None:
        if depth > MAX_NESTING:
            raise _Refused(_DEEP)
        if type(value) in (list, dict):
            self.live[id(value)] = depth
            self.keep.append(value)
        self.stack.append((value, depth, weight))

    def floor(self) -> int:
        return self.marks[-1] if self.marks else 0

    def pop(self) -> _Item:
        if len(self.stack) <= self.floor():
            raise _Unreadable("an opcode takes more items than the stack holds")
        return self.stack.pop()

    def top(self) -> _Item:
        if len(self.stack) <= self.floor():
            raise _Unreadable("an opcode needs an item on the stack")
        return self.stack[-1]

    def pop_mark(self) -> List[_Item]:
        if not self.marks:
            raise _Unreadable("an opcode needs a MARK that is not there")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def contain(self, items: Sequence[_Item]) -> int:
        """Seal the lists and dicts among ``items`` (they now sit inside another object); the
        depth of an object that holds them."""
        for value, _, _ in items:
            if type(value) in (list, dict):
                self.sealed.add(id(value))
        return 1 + max((self.depth(i) for i in items), default=0)

    def tuple_of(self, items: Sequence[_Item]) -> None:
        weight = 1 + sum(w for _, _, w in items)
        if weight > MAX_TUPLE_OBJECTS:
            raise _Refused(f"a tuple expands to more than {MAX_TUPLE_OBJECTS} objects through "
                           "parts it shares (a RadioML file's tuples hold a few)")
        self.push(tuple(v for v, _, _ in items), self.contain(items), weight)

    def grow(self, kind: type, items: Sequence[_Item]) -> Any:
        value = self.top()[0]
        if type(value) is not kind:
            raise _Refused(f"the pickle adds items to a {type(value).__name__}, not a "
                           f"{kind.__name__}")
        d = self.contain(items)
        if id(value) in self.sealed:
            raise _Refused(f"a {kind.__name__} is changed after it was placed inside another "
                           "object (a plain data file never does that)")
        if d > MAX_NESTING:
            raise _Refused(_DEEP)
        self.live[id(value)] = max(self.live[id(value)], d)
        return value

    # -- the stand-ins
    def convert(self, data: bytes) -> bytes:
        self.converted += len(data)
        if self.converted > self.size:
            raise _Refused("its byte strings, once converted, hold more bytes than the file")
        return data

    def finish(self, holder: _Array, raw: Any, dtype: Any, shape: Any, order: str) -> _Array:
        if not isinstance(dtype, _DType):
            raise _Refused(f"an array's dtype is {type(dtype).__name__}, not a numpy dtype")
        shape = _shape(shape)
        if not isinstance(raw, (bytes, bytearray, str)):
            raise _Refused(f"an array's data is {type(raw).__name__}, not bytes (only numeric "
                           "arrays are loaded)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != len(raw):  # the len of a latin-1 str is its byte count
            raise _Refused(f"an array of shape {_short(shape)} and dtype "
                           f"{dtype.kind}{dtype.itemsize} needs {nbytes} bytes but the file gives "
                           f"{len(raw)}")
        self.array_bytes += nbytes
        if self.array_bytes > self.size:
            raise _Refused("its arrays hold more bytes than the file stores (stored data is used "
                           "twice)")
        if self.array_bytes > self.memory:
            raise _Refused(f"its arrays hold more than the {_size(self.memory)} of memory "
                           "available")
        data = _raw_bytes(raw, "an array's data")
        flat = np.frombuffer(data, dtype=dtype.real())
        holder.array = flat.reshape(shape, order=order).copy(order="K")
        return holder

    def call(self, func: Any, args: Any) -> Any:
        role = func.role if isinstance(func, _Global) else None
        if not isinstance(args, tuple):
            raise _Refused("a call's arguments are not a tuple")
        if role == "reconstruct":
            if (len(args) == 3 and isinstance(args[0], _Global) and args[0].role == "ndarray"
                    and isinstance(args[1], tuple) and len(args[1]) == 1 and _is_int(args[1][0])
                    and args[1][0] == 0 and isinstance(args[2], (bytes, str))
                    and args[2] in (b"b", "b")):
                return _Array()
            raise _Refused(f"{func!r} is called with {_short(args)}, not (numpy.ndarray, (0,), "
                           "b'b')")
        if role == "frombuffer":
            if (len(args) == 4 and isinstance(args[0], (bytes, bytearray))
                    and isinstance(args[3], str) and args[3] in ("C", "F")):
                return self.finish(_Array(), args[0], args[1], args[2], args[3])
            raise _Refused(f"{func!r} is called with {_short(args)}, not (bytes, dtype, shape, "
                           "'C' or 'F')")
        if role == "dtype":
            return _DType(*args)
        if role == "scalar":
            if (len(args) == 2 and isinstance(args[0], _DType)
                    and isinstance(args[1], (bytes, bytearray, str))
                    and len(args[1]) == args[0].itemsize):
                return np.frombuffer(_raw_bytes(args[1], "a scalar"), args[0].real())[0]
            raise _Refused(f"{func!r} is called with {_short(args)}, not (numeric dtype, bytes)")
        latin1 = (len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str)
                  and args[1] in ("latin1", "latin-1"))
        if role == "encode":
            if latin1:
                return self.convert(_raw_bytes(args[0], "a byte string"))
            raise _Refused(f"{func!r} is called with {_short(args)}; only (text, 'latin1') "
                           "converts stored bytes")
        if role == "bytes":
            if args == ():
                return b""
            if latin1:
                return self.convert(_raw_bytes(args[0], "a byte string"))
            raise _Refused(f"{func!r} is called with {_short(args)}; only () or (text, 'latin1') "
                           "make stored bytes")
        what = func.qualname if role else f"a {type(func).__name__}"
        raise _Refused(f"the pickle calls {what}, which an array file never calls")

    def build(self, target: Any, state: Any) -> None:
        if isinstance(target, _DType):
            target.setstate(state)
            return
        if not isinstance(target, _Array) or target.array is not None:
            raise _Refused(f"the pickle sets the state of {type(target).__name__}, which an "
                           "array file never does")
        if isinstance(state, tuple) and len(state) == 5 and _is_int(state[0]) and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4 and type(state[2]) in (bool, int)
                and state[2] in (0, 1)):
            raise _Refused(f"an array's state {_short(state)} is not (version, shape, dtype, "
                           "fortran order, data)")
        shape, dtype, fortran, raw = state
        self.finish(target, raw, dtype, shape, "F" if fortran else "C")

    # -- the opcodes
    def run(self) -> Any:
        f = self.f
        while True:
            pos = f.tell()
            code = f.read(1)
            if not code:
                raise _Unreadable("the file ends before the pickle's STOP opcode")
            op = _OPCODES.get(code)
            if op is None:
                raise _Unreadable(f"unknown opcode {code!r} at byte {pos}")
            name = op.name
            if name not in _DATA_OPS:
                raise _Refused(f"the pickle uses opcode {name} (byte {pos}), which builds objects "
                               "an array file never holds")
            self.ops += 1
            arg = _READERS.get(name, op.arg.reader)(f) if op.arg is not None else None
            if name == "STOP":
                return self.pop()[0]
            self.step(name, arg, pos)

    def step(self, name: str, arg: Any, pos: int) -> None:
        if name in _VALUE_OPS:
            self.push(arg)
        elif name == "PROTO":
            if arg > 5:
                raise _Unreadable(f"unsupported pickle protocol {arg}")
        elif name == "FRAME":
            pass  # the reader is bounded by the file already
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name == "POP":
            if self.marks and self.marks[-1] == len(self.stack):
                self.marks.pop()
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.stack.append(self.top())
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            self.push({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name == "EMPTY_TUPLE":
            self.push((), 1)
        elif name in ("EMPTY_LIST", "EMPTY_DICT"):
            self.push([] if name == "EMPTY_LIST" else {}, 1)
        elif name == "TUPLE":
            self.tuple_of(self.pop_mark())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            self.tuple_of([self.pop() for _ in range(int(name[-1]))][::-1])
        elif name in ("LIST", "DICT"):
            items = self.pop_mark()
            d = self.contain(items)
            values = [v for v, _, _ in items]
            if name == "LIST":
                self.push(values, d)
            elif len(values) % 2:
                raise _Unreadable("DICT with an odd number of items")
            else:
                self.push(dict(zip(values[::2], values[1::2])), d)
        elif name == "APPEND":
            item = self.pop()
            self.grow(list, [item]).append(item[0])
        elif name == "APPENDS":
            items = self.pop_mark()
            self.grow(list, items).extend(v for v, _, _ in items)
        elif name in ("SETITEM", "SETITEMS"):
            items = [self.pop(), self.pop()][::-1] if name == "SETITEM" else self.pop_mark()
            if len(items) % 2:
                raise _Unreadable("SETITEMS with an odd number of items")
            target = self.grow(dict, items)
            for k in range(0, len(items), 2):
                target[items[k][0]] = items[k + 1][0]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if isinstance(arg, bool) or arg not in self.memo:
                raise _Unreadable(f"byte {pos} refers to memo entry {_short(arg, 24)}, which was "
                                  "never stored")
            self.stack.append(self.memo[arg])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(self.memo) if name == "MEMOIZE" else arg
            if isinstance(index, bool) or not 0 <= index <= self.ops:
                raise _Refused(f"byte {pos} stores memo entry {_short(index, 24)}, beyond the "
                               f"{self.ops} opcodes read so far")
            self.memo[index] = self.top()
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
            else:
                attr, module = self.pop()[0], self.pop()[0]
                if not isinstance(module, str) or not isinstance(attr, str):
                    raise _Unreadable("STACK_GLOBAL names something other than a module and name")
            if (module, attr) not in ALLOWED_GLOBALS:
                shown = f"{module}.{attr}"
                if len(shown) > 120 or not shown.isprintable():
                    shown = _short(shown, 120)
                raise _Refused(f"the pickle asks for {shown}, which an array file never needs "
                               "(only numpy arrays are loaded)")
            self.push(_Global(_ROLES[attr], module, attr))
        elif name == "REDUCE":
            args = self.pop()
            func = self.pop()
            self.push(self.call(func[0], args[0]), self.contain([args]))
        elif name == "BUILD":
            state = self.pop()
            self.contain([state])
            self.build(self.top()[0], state[0])
        else:  # pragma: no cover - every name in _DATA_OPS is handled above
            raise _Unreadable(f"opcode {name} is not handled")


class _Resolver:
    """The loaded objects with each array stand-in replaced by its array, every object visited
    once. Refuses an array used twice (stored once, referenced under two keys), an array never
    given its data, an array as a dict key, and a bare numpy callable."""

    def __init__(self) -> None:
        self.done: Dict[int, Tuple[Any, bool, str]] = {}  # id → (result, holds an array, where)

    def __call__(self, value: Any, where: str, in_key: bool = False) -> Any:
        if not isinstance(value, (_Array, _DType, _Global, tuple, list, dict)):
            return value
        hit = self.done.get(id(value))
        if hit is not None:
            result, holds, first = hit
            if holds:
                raise _Refused(f"one array is stored once but used twice ({first} and {where}); "
                               "a RadioML file stores every array itself")
            return result
        holds = False
        if isinstance(value, _Array):
            if value.array is None:
                raise _Refused("an array is never given its data")
            if in_key:
                raise _Refused("an array is used as a dict key")
            result, holds = value.array, True
        elif isinstance(value, _DType):
            result = value.real()
        elif isinstance(value, _Global):
            raise _Refused(f"the pickle holds {value.qualname} itself, not data")
        elif isinstance(value, dict):
            result = {}
            for k, v in value.items():
                here = f"key {_short(k, 40)}"
                result[self(k, here, True)] = self(v, here)
        else:
            parts = [self(v, where if isinstance(value, tuple) else f"{where}[{i}]", in_key)
                     for i, v in enumerate(value)]
            result = tuple(parts) if isinstance(value, tuple) else parts
        if isinstance(value, (tuple, list, dict)):
            holds = any(self.done[id(v)][1] for v in (value.values() if isinstance(value, dict)
                                                      else value) if id(v) in self.done)
        self.done[id(value)] = (result, holds, where)
        return result


def load_restricted_pickle(path: str | Path) -> Any:
    """The data in the pickle ``path``, built without running anything it names.

    Its opcodes are read in pure Python (see the module notes): plain data and numeric numpy
    arrays only, protocol 0-2 byte strings decoded as latin-1 (Python 2's str). Any other global
    or opcode, a length beyond the file's end, nesting deeper than :data:`MAX_NESTING`, arrays
    that hold more bytes than the file or share their data: one :class:`NeurokdError` line.
    """
    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such file")
    try:
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            loaded = _Loader(_Bounded(fh, size), size).run()
        return _Resolver()(loaded, "the top level")
    except NeurokdError:
        raise
    except _Refused as exc:
        raise NeurokdError(f"{p}: refused: {exc}") from None
    except MemoryError:
        raise NeurokdError(f"{p}: too large to load into memory") from None
    except RecursionError:
        raise NeurokdError(f"{p}: refused: objects nest too deeply") from None
    except Exception as exc:  # any malformed stream: _Unreadable, ValueError, UnicodeError, ...
        detail = str(exc) if isinstance(exc, _Unreadable) else f"{type(exc).__name__}: {exc}"
        raise NeurokdError(f"{p}: not a readable pickle ({detail})"[:300].replace("\n", " ")) \
            from None


# ---------------------------------------------------------------- selection arguments
def _check_limit(limit: Any, where: str) -> Optional[int]:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit <= 0:
        raise NeurokdError(f"{where}: limit must be a positive whole number of frames, got "
                           f"{_short(limit)}")
    return int(limit)


def _check_snr_range(snr_range: Any, where: str) -> Optional[Tuple[float, float]]:
    """``(low, high)`` in dB, both numbers, neither NaN, low ≤ high."""
    if snr_range is None:
        return None
    try:
        lo, hi = snr_range
    except (TypeError, ValueError):
        raise NeurokdError(f"{where}: snr_range must be (low, high) in dB, got "
                           f"{_short(snr_range)}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
           for v in (lo, hi)):
        raise NeurokdError(f"{where}: snr_range must be two numbers (low, high) in dB, got "
                           f"{_short(snr_range)}")
    try:
        lo, hi = float(lo), float(hi)
    except OverflowError:
        raise NeurokdError(f"{where}: snr_range {_short(snr_range)} is out of any range in dB") \
            from None
    if math.isnan(lo) or math.isnan(hi):
        raise NeurokdError(f"{where}: snr_range {_short(snr_range)} holds NaN; give (low, high) "
                           "in dB")
    if lo > hi:
        raise NeurokdError(f"{where}: snr_range {_short(snr_range)} is reversed: low {lo:g} dB "
                           f"is above high {hi:g} dB")
    return lo, hi


def _as_classes(classes: Any, where: str) -> Optional[List[Any]]:
    """``classes`` as a list: one name or index alone is one class."""
    if classes is None:
        return None
    if isinstance(classes, (str, int, np.integer)) and not isinstance(classes, bool):
        return [classes]
    if isinstance(classes, (list, tuple, range, np.ndarray)):
        return list(np.asarray(classes).ravel()) if isinstance(classes, np.ndarray) else list(classes)
    raise NeurokdError(f"{where}: classes must be a class name, an index, or a list of them; got "
                       f"{type(classes).__name__}")


def _evenly(index: np.ndarray, limit: Optional[int]) -> np.ndarray:
    """``limit`` entries of ``index`` evenly spaced (all of them without a limit)."""
    if limit is None or limit >= len(index):
        return index
    return index[np.unique(np.linspace(0, len(index) - 1, limit).round().astype(np.int64))]


def _pick_classes(classes: Optional[List[Any]], known: Sequence[str], where: str) -> List[int]:
    if classes is None:
        return list(range(len(known)))
    out = []
    for c in classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)):
            if not 0 <= c < len(known):
                raise NeurokdError(f"{where}: class index {_short(c, 24)} is outside "
                                   f"0..{len(known) - 1}")
            out.append(int(c))
        elif isinstance(c, str) and c in known:
            out.append(list(known).index(c))
        else:
            raise NeurokdError(f"{where}: unknown class {_short(c)}; known: {', '.join(known)}")
    if not out or len(set(out)) != len(out):
        raise NeurokdError(f"{where}: give each selected class once, and at least one")
    return out


def _snr_mask(snr: np.ndarray, snr_range: Optional[Tuple[float, float]]) -> np.ndarray:
    if snr_range is None:
        return np.ones(len(snr), dtype=bool)
    lo, hi = snr_range
    return (snr >= lo) & (snr <= hi)


def _check_length(length: int, where: str) -> None:
    if not 1 <= length <= MAX_FRAME_LENGTH:
        raise NeurokdError(f"{where}: frames of {length} samples; RadioML frames hold 128 (2016) "
                           f"or 1024 (2018) samples, and at most {MAX_FRAME_LENGTH} are read")


def _check_memory(nbytes: int, what: str, where: str) -> None:
    avail = h5safe.available_memory()
    have = avail if avail else MEMORY_CAP
    if nbytes > have:
        said = f"the {_size(have)} available" if avail else \
            f"the {_size(have)} allowed when the memory available is unknown"
        raise NeurokdError(f"{where}: refused: {what} take {_size(nbytes)}, more than {said}; "
                           "narrow classes or snr_range, or set limit")


# ---------------------------------------------------------------- the readers
def read_radioml2016(path: str | Path, classes: Optional[Sequence[str | int]] = None,
                     snr_range: Optional[Tuple[float, float]] = None,
                     limit: Optional[int] = None) -> RadioML:
    """RadioML 2016.10a / 2016.04C from its pickle, safely.

    ``class_names`` are the file's modulations in sorted order, or ``classes`` in the given order.
    """
    where = str(path)
    limit = _check_limit(limit, where)
    snr_range = _check_snr_range(snr_range, where)
    wanted = _as_classes(classes, where)
    data = load_restricted_pickle(path)
    if not isinstance(data, dict) or not data:
        raise NeurokdError(f"{where}: expected a dict {{(modulation, snr): array}}, found "
                           f"{type(data).__name__}")
    length = None
    for key, value in data.items():
        if (not isinstance(key, tuple) or len(key) != 2 or not isinstance(key[0], str)
                or not isinstance(key[1], int) or isinstance(key[1], bool)):
            raise NeurokdError(f"{where}: key {_short(key)} is not a (modulation, integer SNR) pair")
        if key[0] not in RADIOML2016_MODULATIONS:
            raise NeurokdError(f"{where}: unknown modulation {_short(key[0])} in key {_short(key)}; "
                               f"known: {', '.join(RADIOML2016_MODULATIONS)}")
        if abs(key[1]) > SNR_LIMIT_DB:
            raise NeurokdError(f"{where}: SNR {_short(key[1])} dB in key {_short(key)} is outside "
                               f"±{SNR_LIMIT_DB} dB")
        if (not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[1] != 2
                or value.dtype.kind != "f"):
            shape = getattr(value, "shape", None)
            raise NeurokdError(f"{where}: {_short(key)} must hold a float array (n, 2, L), found "
                               f"{type(value).__name__} {shape}")
        _check_length(value.shape[2], where)
        if length is None:
            length = value.shape[2]
        elif value.shape[2] != length:
            raise NeurokdError(f"{where}: frames of {value.shape[2]} and {length} samples are mixed")
    present = sorted({k[0] for k in data})
    names = present if wanted is None else [present[i] for i in _pick_classes(wanted, present, where)]
    keys = sorted((k for k in data if k[0] in names), key=lambda k: (names.index(k[0]), k[1]))
    if snr_range is not None:
        keys = [k for k in keys if snr_range[0] <= k[1] <= snr_range[1]]
    counts = np.array([len(data[k]) for k in keys], dtype=np.int64)
    if counts.sum() == 0:
        raise NeurokdError(f"{where}: no frames match the selected classes and SNR range")
    starts = np.r_[0, np.cumsum(counts)]
    chosen = _evenly(np.arange(starts[-1]), limit)
    _check_memory(len(chosen) * int(length) * 8, f"the {len(chosen)} selected frames of {length} "
                  "samples", where)
    owner = np.searchsorted(starts[1:], chosen, side="right")  # which key each chosen frame is in
    iq = np.empty((len(chosen), int(length)), dtype=np.complex64)
    done = 0
    for o in np.unique(owner):
        part = data[keys[o]][chosen[owner == o] - starts[o]]
        iq.real[done:done + len(part)] = part[:, 0]
        iq.imag[done:done + len(part)] = part[:, 1]
        done += len(part)
    return RadioML(iq=iq, label=np.array([names.index(keys[o][0]) for o in owner], dtype=np.int64),
                   snr_db=np.array([keys[o][1] for o in owner], dtype=np.float32),
                   class_names=list(names))


def read_radioml2018(path: str | Path, classes: Optional[Sequence[str | int]] = None,
                     snr_range: Optional[Tuple[float, float]] = None, limit: Optional[int] = None,
                     class_names: Sequence[str] = RADIOML2018_CLASSES) -> RadioML:
    """RadioML 2018.01A from its HDF5 file, reading only the selected frames.

    Labels index ``classes`` (in the given order) or ``class_names`` (all of them). The file is
    checked by :func:`neurokd.h5safe.check_hdf5` first; the selection must fit in the memory
    available (as complex64, ``8 × frames × L`` bytes).
    """
    import h5py

    where = str(path)
    limit = _check_limit(limit, where)
    snr_range = _check_snr_range(snr_range, where)
    wanted = _as_classes(classes, where)
    if (isinstance(class_names, (str, bytes)) or not isinstance(class_names, (list, tuple))
            or not class_names or not all(isinstance(c, str) for c in class_names)
            or len(set(class_names)) != len(class_names)):
        raise NeurokdError(f"{where}: class_names must be a list of distinct names, got "
                           f"{_short(class_names)}")
    class_names = list(class_names)
    p = Path(path)
    # Only the selection is read, so the datasets' total size is not capped here (the real X is
    # 21 GB); check_hdf5 still refuses anything that reaches outside the file or that declares
    # more data than the file stores.
    h5safe.check_hdf5(p, "RadioML 2018 file", max_bytes=2**62)
    try:
        fh = h5py.File(p, "r")
    except OSError:
        raise NeurokdError(f"{p}: not an HDF5 file") from None
    try:
        with fh:
            label, snr, index, pick, frames = _read2018(fh, where, class_names, wanted, snr_range,
                                                        limit)
    except NeurokdError:
        raise
    except MemoryError:
        raise NeurokdError(f"{where}: too large to read into memory") from None
    except Exception as exc:  # noqa: BLE001 - h5py's errors on damaged data: OSError, KeyError, ...
        raise NeurokdError(f"{where}: unreadable RadioML 2018 file ({type(exc).__name__}: "
                           f"{exc})"[:300].replace("\n", " ")) from None
    remap = np.full(len(class_names), -1, dtype=np.int64)
    remap[pick] = np.arange(len(pick))
    return RadioML(iq=frames, label=remap[label[index]], snr_db=snr[index],
                   class_names=[class_names[i] for i in pick])


def _read2018(fh: Any, where: str, class_names: List[str], wanted: Optional[List[Any]],
              snr_range: Optional[Tuple[float, float]], limit: Optional[int]) -> Tuple[Any, ...]:
    import h5py

    missing = [k for k in ("X", "Y", "Z") if not isinstance(fh.get(k), h5py.Dataset)]
    if missing:
        raise NeurokdError(f"{where}: no dataset {', '.join(missing)}; a RadioML 2018.01A file "
                           f"holds X (n, 1024, 2), Y (n, {len(class_names)}) and Z (n, 1)")
    x, y, z = fh["X"], fh["Y"], fh["Z"]
    n = x.shape[0] if x.ndim else 0
    if x.ndim != 3 or x.shape[2] != 2 or x.dtype.kind != "f":
        raise NeurokdError(f"{where}: X must be float (n, L, 2), found {x.dtype} {x.shape}")
    length = int(x.shape[1])
    _check_length(length, where)
    if y.shape != (n, len(class_names)) or y.dtype.kind not in "biuf":
        raise NeurokdError(f"{where}: Y must be one-hot (n, {len(class_names)}) = "
                           f"({n}, {len(class_names)}), found {y.dtype} {y.shape}")
    if z.shape not in ((n, 1), (n,)) or z.dtype.kind not in "iuf":
        raise NeurokdError(f"{where}: Z must be the SNRs (n, 1) = ({n}, 1), found {z.dtype} "
                           f"{z.shape}")
    # labels, SNRs, the selection mask and its indices: about 32 bytes per frame
    _check_memory(32 * n, f"the labels and SNRs of {n} frames", where)
    pick = _pick_classes(wanted, class_names, where)
    label = np.empty(n, dtype=np.int64)
    snr = np.empty(n, dtype=np.float32)
    for a in range(0, n, _READ_ROWS):
        block = np.asarray(y[a:a + _READ_ROWS])
        if not (np.all((block == 0) | (block == 1)) and np.all(block.sum(axis=1) == 1)):
            raise NeurokdError(f"{where}: Y is not one-hot (rows {a}..{a + len(block) - 1})")
        label[a:a + len(block)] = block.argmax(axis=1)
        snr[a:a + len(block)] = np.asarray(z[a:a + len(block)]).reshape(len(block))
    keep = np.isin(label, pick) & _snr_mask(snr, snr_range)
    index = _evenly(np.flatnonzero(keep), limit)
    del keep
    row_bytes = length * 2 * x.dtype.itemsize
    rows = max(1, min(_READ_ROWS, _READ_BYTES // row_bytes))
    _check_memory(len(index) * length * 8 + min(rows, len(index)) * (row_bytes + length * 8),
                  f"the {len(index)} selected frames of {length} samples", where)
    frames = np.empty((len(index), length), dtype=np.complex64)
    # contiguous runs of the selection, read slice by slice (at most `rows` rows at a time)
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    done = 0
    for run in np.split(index, breaks) if len(index) else []:
        for a in range(0, len(run), rows):
            part = run[a:a + rows]
            block = x[int(part[0]):int(part[-1]) + 1]
            frames.real[done:done + len(part)] = block[..., 0]
            frames.imag[done:done + len(part)] = block[..., 1]
            done += len(part)
    return label, snr, index, pick, frames
