"""Readers for the public RadioML sets, from files the user already has (nothing is downloaded).

- **RadioML 2016.10a** (also 2016.04C): a Python 2 pickle of a dict
  ``{(modulation, snr_db): float32 array (n, 2, 128)}``, rows I and Q. It is read with a restricted
  unpickler that resolves only the globals numpy needs to rebuild arrays
  (:data:`ALLOWED_GLOBALS`); any other global, which is how a pickle runs code, is refused before it
  is looked up, with one line naming it. Keys must be (known modulation, integer SNR) pairs.
- **RadioML 2018.01A**: HDF5 with ``X`` (n, 1024, 2) float32 I/Q, ``Y`` (n, 24) one-hot classes and
  ``Z`` (n, 1) SNR in dB. It is read in bounded pieces: the labels and SNRs first, then only the
  frames selected by ``classes``, the SNR range and ``limit``.

Both return :class:`RadioML`: complex64 frames ``(n, L)`` with ``iq = I + jQ``, labels indexing
``class_names``, and per-frame SNRs. ``limit`` keeps that many frames evenly spaced over the
selection in file order (which runs class by class, SNR by SNR), so every class and SNR keeps
its share.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from neurokd.errors import NeurokdError

RADIOML2016_MODULATIONS: Tuple[str, ...] = (
    "8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16", "QAM64", "QPSK", "WBFM")

# The class order of Y in RadioML 2018.01A (the corrected list; the classes.txt shipped with the set
# is known to be in the wrong order).
RADIOML2018_CLASSES: Tuple[str, ...] = (
    "OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK", "16APSK", "32APSK", "64APSK",
    "128APSK", "16QAM", "32QAM", "64QAM", "128QAM", "256QAM", "AM-SSB-WC", "AM-SSB-SC",
    "AM-DSB-WC", "AM-DSB-SC", "FM", "GMSK", "OQPSK")

# What rebuilding numpy arrays needs, and nothing else. ``_codecs.encode`` (a pure str → bytes
# conversion) appears in protocol-2 pickles written by Python 3, which store bytes that way.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})

SNR_LIMIT_DB = 40
_READ_ROWS = 65_536  # rows per HDF5 read


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


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file, where: str) -> None:
        super().__init__(file, encoding="latin1")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise NeurokdError(f"{self.where}: refused: the pickle asks for {module}.{name}, which "
                               "an array file never needs (only numpy arrays are loaded)")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise NeurokdError(f"{self.where}: needs {module}.{name}, which this numpy lacks") from None

    def persistent_load(self, pid: Any) -> Any:
        raise NeurokdError(f"{self.where}: refused: the pickle holds a persistent reference")


def load_restricted_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only numpy array reconstruction (``encoding="latin1"``)."""
    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such file")
    try:
        with p.open("rb") as fh:
            return _ArraysOnly(fh, str(p)).load()
    except NeurokdError:
        raise
    except MemoryError:
        raise NeurokdError(f"{p}: too large to load into memory") from None
    except Exception as exc:  # any malformed stream: EOFError, UnpicklingError, ValueError, ...
        raise NeurokdError(f"{p}: not a readable pickle ({type(exc).__name__}: {exc})"[:300]) from None


def _evenly(index: np.ndarray, limit: Optional[int]) -> np.ndarray:
    """``limit`` entries of ``index`` evenly spaced (all of them without a limit)."""
    if limit is None or limit >= len(index):
        return index
    if limit <= 0:
        raise NeurokdError(f"limit must be positive, got {limit}")
    return index[np.unique(np.linspace(0, len(index) - 1, limit).round().astype(np.int64))]


def _pick_classes(classes: Optional[Sequence[str | int]], known: Sequence[str], where: str) -> List[int]:
    if classes is None:
        return list(range(len(known)))
    out = []
    for c in classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= c < len(known):
                raise NeurokdError(f"{where}: class index {c} is outside 0..{len(known) - 1}")
            out.append(int(c))
        elif isinstance(c, str) and c in known:
            out.append(list(known).index(c))
        else:
            raise NeurokdError(f"{where}: unknown class {c!r}; known: {', '.join(known)}")
    if not out or len(set(out)) != len(out):
        raise NeurokdError(f"{where}: give each selected class once, and at least one")
    return out


def _snr_mask(snr: np.ndarray, snr_range: Optional[Tuple[float, float]]) -> np.ndarray:
    if snr_range is None:
        return np.ones(len(snr), dtype=bool)
    lo, hi = snr_range
    return (snr >= lo) & (snr <= hi)


def read_radioml2016(path: str | Path, classes: Optional[Sequence[str | int]] = None,
                     snr_range: Optional[Tuple[float, float]] = None,
                     limit: Optional[int] = None) -> RadioML:
    """RadioML 2016.10a / 2016.04C from its pickle, safely.

    ``class_names`` are the file's modulations in sorted order, or ``classes`` in the given order.
    """
    where = str(path)
    data = load_restricted_pickle(path)
    if not isinstance(data, dict) or not data:
        raise NeurokdError(f"{where}: expected a dict {{(modulation, snr): array}}, found "
                           f"{type(data).__name__}")
    length = None
    for key, value in data.items():
        if (not isinstance(key, tuple) or len(key) != 2 or not isinstance(key[0], str)
                or not isinstance(key[1], int) or isinstance(key[1], bool)):
            raise NeurokdError(f"{where}: key {key!r} is not a (modulation, integer SNR) pair")
        if key[0] not in RADIOML2016_MODULATIONS:
            raise NeurokdError(f"{where}: unknown modulation {key[0]!r} in key {key!r}; known: "
                               f"{', '.join(RADIOML2016_MODULATIONS)}")
        if abs(key[1]) > SNR_LIMIT_DB:
            raise NeurokdError(f"{where}: SNR {key[1]} dB in key {key!r} is outside ±{SNR_LIMIT_DB} dB")
        if (not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[1] != 2
                or value.dtype.kind != "f"):
            shape = getattr(value, "shape", None)
            raise NeurokdError(f"{where}: {key!r} must hold a float array (n, 2, L), found "
                               f"{type(value).__name__} {shape}")
        if length is None:
            length = value.shape[2]
        elif value.shape[2] != length:
            raise NeurokdError(f"{where}: frames of {value.shape[2]} and {length} samples are mixed")
    present = sorted({k[0] for k in data})
    names = present if classes is None else [present[i] for i in _pick_classes(classes, present, where)]
    keys = sorted((k for k in data if k[0] in names), key=lambda k: (names.index(k[0]), k[1]))
    if snr_range is not None:
        keys = [k for k in keys if snr_range[0] <= k[1] <= snr_range[1]]
    counts = np.array([len(data[k]) for k in keys], dtype=np.int64)
    if counts.sum() == 0:
        raise NeurokdError(f"{where}: no frames match the selected classes and SNR range")
    starts = np.r_[0, np.cumsum(counts)]
    chosen = _evenly(np.arange(starts[-1]), limit)
    owner = np.searchsorted(starts[1:], chosen, side="right")  # which key each chosen frame is in
    parts = [data[keys[o]][chosen[owner == o] - starts[o]] for o in np.unique(owner)]
    frames = np.concatenate(parts).astype(np.float32, copy=False)
    return RadioML(iq=(frames[:, 0] + 1j * frames[:, 1]).astype(np.complex64),
                   label=np.array([names.index(keys[o][0]) for o in owner], dtype=np.int64),
                   snr_db=np.array([keys[o][1] for o in owner], dtype=np.float32),
                   class_names=list(names))


def read_radioml2018(path: str | Path, classes: Optional[Sequence[str | int]] = None,
                     snr_range: Optional[Tuple[float, float]] = None, limit: Optional[int] = None,
                     class_names: Sequence[str] = RADIOML2018_CLASSES) -> RadioML:
    """RadioML 2018.01A from its HDF5 file, reading only the selected frames.

    Labels index ``classes`` (in the given order) or ``class_names`` (all of them).
    """
    import h5py

    where = str(path)
    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such file")
    try:
        fh = h5py.File(p, "r")
    except OSError:
        raise NeurokdError(f"{p}: not an HDF5 file") from None
    with fh:
        missing = [k for k in ("X", "Y", "Z") if not isinstance(fh.get(k), h5py.Dataset)]
        if missing:
            raise NeurokdError(f"{where}: no dataset {', '.join(missing)}; a RadioML 2018.01A file "
                               f"holds X (n, 1024, 2), Y (n, {len(class_names)}) and Z (n, 1)")
        x, y, z = fh["X"], fh["Y"], fh["Z"]
        n = x.shape[0] if x.ndim else 0
        if x.ndim != 3 or x.shape[2] != 2 or x.dtype.kind != "f":
            raise NeurokdError(f"{where}: X must be float (n, L, 2), found {x.dtype} {x.shape}")
        if y.shape != (n, len(class_names)):
            raise NeurokdError(f"{where}: Y must be one-hot (n, {len(class_names)}) = "
                               f"({n}, {len(class_names)}), found {y.shape}")
        if z.shape not in ((n, 1), (n,)):
            raise NeurokdError(f"{where}: Z must be the SNRs (n, 1) = ({n}, 1), found {z.shape}")
        label = np.empty(n, dtype=np.int64)
        for a in range(0, n, _READ_ROWS):
            block = np.asarray(y[a:a + _READ_ROWS])
            if not (np.all((block == 0) | (block == 1)) and np.all(block.sum(axis=1) == 1)):
                raise NeurokdError(f"{where}: Y is not one-hot (rows {a}..{a + len(block) - 1})")
            label[a:a + len(block)] = block.argmax(axis=1)
        snr = np.asarray(z[:]).reshape(n).astype(np.float32)
        pick = _pick_classes(classes, class_names, where)
        keep = np.isin(label, pick) & _snr_mask(snr, snr_range)
        index = _evenly(np.flatnonzero(keep), limit)
        frames = np.empty((len(index), x.shape[1], 2), dtype=np.float32)
        # contiguous runs of the selection, read slice by slice (at most _READ_ROWS rows at a time)
        breaks = np.flatnonzero(np.diff(index) != 1) + 1
        done = 0
        for run in np.split(index, breaks) if len(index) else []:
            for a in range(0, len(run), _READ_ROWS):
                part = run[a:a + _READ_ROWS]
                frames[done:done + len(part)] = x[int(part[0]):int(part[-1]) + 1]
                done += len(part)
    remap = np.full(len(class_names), -1, dtype=np.int64)
    remap[pick] = np.arange(len(pick))
    return RadioML(iq=(frames[..., 0] + 1j * frames[..., 1]).astype(np.complex64),
                   label=remap[label[index]], snr_db=snr[index],
                   class_names=[class_names[i] for i in pick])
