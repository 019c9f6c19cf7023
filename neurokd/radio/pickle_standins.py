"""What a RadioML pickle may build besides plain data: the checking stand-ins for the globals
it may name (:data:`ALLOWED_GLOBALS`), the checks on their arguments, and the resolver that swaps
each array stand-in for its array once the stream is read. Used by
:mod:`neurokd.radio.pickle_reader`; nothing here calls a callable the file names.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any, Dict, Optional, Tuple

import numpy as np

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


# ---------------------------------------------------------------- what the reader refuses
class _Refused(Exception):
    """A stream the reader will not build; the message says why (after "refused: ")."""


class _Unreadable(Exception):
    """A stream that is not a well-formed pickle."""


# ---------------------------------------------------------------- the stand-ins
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

