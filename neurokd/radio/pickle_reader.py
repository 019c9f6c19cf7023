"""A pure-Python reader of pickle opcodes for RadioML 2016 files: :func:`load_restricted_pickle`
builds plain data and numeric numpy arrays (through the checking stand-ins of
:mod:`neurokd.radio.pickle_standins`) and runs nothing the file names. The module notes of
:mod:`neurokd.radio.radioml` say what is read and what is refused.
"""

from __future__ import annotations

import codecs
import math
import os
import pickletools
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from neurokd import h5safe
from neurokd.errors import NeurokdError
from neurokd.radio.pickle_standins import (ALLOWED_GLOBALS, _ROLES, _Array, _DType, _Global,
                                           _is_int, _raw_bytes, _Refused, _Resolver, _shape,
                                           _short, _size, _Unreadable)

# How deep the objects of a pickle may nest (a RadioML 2016 file nests 4 deep: dict, state tuple,
# shape tuple). Hashing a deeply nested key recurses in C without a limit.
MAX_NESTING = 64
# When the memory available is unknown, the most a selection may take.
MEMORY_CAP = 1 << 34
# A tuple may expand (through parts it shares) to at most this many objects: hashing a tuple
# walks all of them, every time it is used as a key. A RadioML file's largest tuple holds 9.
MAX_TUPLE_OBJECTS = 256


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

