"""Readers for the public RadioML sets, from files the user already has (nothing is downloaded).

- **RadioML 2016.10a** (also 2016.04C): a Python 2 pickle of a dict
  ``{(modulation, snr_db): float32 array (n, 2, 128)}``, rows I and Q. Nothing in the file is run:
  :func:`load_restricted_pickle` (in :mod:`neurokd.radio.pickle_reader`, with the stand-ins of
  :mod:`neurokd.radio.pickle_standins`) reads the pickle's opcodes itself, in pure Python, and
  builds only plain data (None, booleans, numbers, strings, bytes, tuples, lists, dicts) and numpy
  arrays of numeric dtypes. The globals a pickle may name are :data:`ALLOWED_GLOBALS`, numpy's
  array rebuilders and the two byte-string conversions; each resolves to a checking stand-in, never
  to the real callable, so numpy sees no argument the file controls (only numeric dtypes, and data
  whose length matches the shape). Any other global, which is how a pickle runs code, is refused
  where the stream names it, before anything is called, with one line naming it; so are the opcodes
  that build class instances or reach outside the stream (INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4,
  PERSID, BINPERSID, NEXT_BUFFER, READONLY_BUFFER) and sets. Every size comes from the file: a
  length is bounded by the bytes left in it, a memo index by the opcodes read so far, objects may
  nest at most :data:`MAX_NESTING` deep and a tuple expand to at most :data:`MAX_TUPLE_OBJECTS`
  objects through parts it shares, the arrays together may hold no more bytes than the file (each
  array's data must be stored in it, not used twice), and two keys may not share one array.
  Protocols 0 to 5 are read (Python 2's cPickle wrote protocol 0 or 2; Python 3 writes numpy arrays
  in protocol 5 through ``numpy.core.numeric._frombuffer``). Keys must be (known modulation,
  integer SNR) pairs.
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

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from neurokd import h5safe
from neurokd.errors import NeurokdError
from neurokd.radio.pickle_reader import (MAX_NESTING, MAX_TUPLE_OBJECTS, MEMORY_CAP,
                                         load_restricted_pickle)
from neurokd.radio.pickle_standins import ALLOWED_GLOBALS, _short, _size

__all__ = ["ALLOWED_GLOBALS", "MAX_FRAME_LENGTH", "MAX_NESTING", "MAX_TUPLE_OBJECTS", "MEMORY_CAP",
           "RADIOML2016_MODULATIONS", "RADIOML2018_CLASSES", "SNR_LIMIT_DB", "RadioML",
           "load_restricted_pickle", "read_radioml2016", "read_radioml2018"]

RADIOML2016_MODULATIONS: Tuple[str, ...] = (
    "8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK", "WBFM")

# The class order of Y in RadioML 2018.01A (the corrected list; the classes.txt shipped with the set
# is known to be in the wrong order).
RADIOML2018_CLASSES: Tuple[str, ...] = (
    "OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK", "16APSK", "32APSK", "64APSK",
    "128APSK", "16QAM", "32QAM", "64QAM", "128QAM", "256QAM", "AM-SSB-WC", "AM-SSB-SC",
    "AM-DSB-WC", "AM-DSB-SC", "FM", "GMSK", "OQPSK")

SNR_LIMIT_DB = 40
# RadioML 2016 frames hold 128 samples and RadioML 2018.01A frames 1024; longer frames are read
# up to 16 times that.
MAX_FRAME_LENGTH = 1024 * 16
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
