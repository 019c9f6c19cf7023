"""Checkpoints: a plain dict of tensors and JSON-like values, loaded with ``weights_only=True``.

``torch.load(..., weights_only=True)`` is not enough on its own with the torch that lava-dl pins
(2.3.1): any zip that holds ``constants.pkl`` is handed to ``torch.jit.load`` before the safety
check, and a TorchScript ``__setstate__`` can then create or overwrite files. So every checkpoint
is first checked as an archive, without torch: it must be a zip holding exactly the entries that
``torch.save`` writes for plain tensors (``data.pkl``, ``data/<n>`` storages, ``version``,
``byteorder``, ``.data/...``) under one top-level folder, stored uncompressed, with sizes the file
can back. Anything else (TorchScript code or constants, extra pickles, compressed or oversized
members, the legacy non-zip format) is refused before torch opens it.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np
import torch

from neurokd.errors import NeurokdError
from neurokd.fileio import atomic_path

FORMAT = "neurokd-checkpoint"
VERSION = 1


def non_finite(items: Iterable[Tuple[str, Any]]) -> List[str]:
    """Names of the floating-point tensors or arrays among ``(name, value)`` pairs (a
    state_dict's ``items()``, a model's named parameters) that hold NaN or infinite values."""
    bad = []
    for name, v in items:
        if isinstance(v, torch.Tensor):
            if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
                bad.append(name)
        elif isinstance(v, np.ndarray) and v.dtype.kind in "fc" and not bool(np.isfinite(v).all()):
            bad.append(name)
    return bad


def save_checkpoint(path: str | Path, kind: str, arch: Dict[str, Any],
                    state_dict: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> Path:
    bad = non_finite(state_dict.items())
    if bad:
        raise NeurokdError(f"{path}: not written: {bad[0]!r}"
                           + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
                           + " hold NaN or infinite values")
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "arch": arch,
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


_PLAIN_ENTRY = re.compile(r"(data\.pkl|version|byteorder|data/\d+|\.data/version|"
                          r"\.data/serialization_id)")


def check_archive(data: bytes, p: Path, what: str = "neurokd checkpoint") -> None:
    """Raise NeurokdError unless ``data`` (the bytes of ``p``) is a zip of plain tensors as
    ``torch.save`` writes it. Reads only the zip directory; nothing is unpickled or executed.
    ``what`` names the expected file in the messages."""
    size = len(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise NeurokdError(f"{p}: not a {what} (not a torch zip archive)") from None
    roots = {info.filename.split("/", 1)[0] for info in infos}
    if len(roots) != 1 or not infos:
        raise NeurokdError(f"{p}: not a {what} (archive has {len(roots)} top-level folders, "
                           "expected one)")
    root = roots.pop()
    names = set()
    total = 0
    for info in infos:
        rel = info.filename[len(root) + 1:] if info.filename.startswith(root + "/") else ""
        if not _PLAIN_ENTRY.fullmatch(rel):
            found = "TorchScript code" if rel in ("constants.pkl", "code") or rel.startswith(
                ("code/", "constants")) else "an unexpected entry"
            raise NeurokdError(f"{p}: refused: the archive holds {found} ({info.filename!r}); a "
                               f"{what} holds only plain tensors")
        if info.compress_type != zipfile.ZIP_STORED:
            raise NeurokdError(f"{p}: refused: compressed entry {info.filename!r} (torch.save "
                               "stores entries uncompressed)")
        names.add(rel)
        total += info.file_size
    if "data.pkl" not in names:
        raise NeurokdError(f"{p}: not a {what} (no data.pkl in the archive)")
    if total > size:
        raise NeurokdError(f"{p}: refused: entries claim {total} bytes, more than the file's {size}")


def load_checkpoint(path: str | Path, kind: str | None = None) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such checkpoint file")
    try:
        data = p.read_bytes()  # read once: the bytes checked are the bytes torch loads
    except OSError as exc:
        raise NeurokdError(f"{p}: cannot read ({exc.strerror})") from None
    check_archive(data, p)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError,
            ValueError, AttributeError, KeyError, TypeError):
        raise NeurokdError(f"{p}: not a neurokd checkpoint (unreadable or unsafe content)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NeurokdError(f"{p}: not a neurokd checkpoint")
    if payload.get("version") != VERSION:
        raise NeurokdError(f"{p}: checkpoint version {payload.get('version')} is not supported")
    if kind is not None and payload.get("kind") != kind:
        raise NeurokdError(f"{p}: is a {payload.get('kind')} checkpoint, expected a {kind} checkpoint")
    for key, want in (("arch", dict), ("meta", dict), ("state_dict", dict)):
        if not isinstance(payload.get(key), want):
            raise NeurokdError(f"{p}: checkpoint field {key!r} is missing or not a mapping")
    bad = [k for k, v in payload["state_dict"].items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise NeurokdError(f"{p}: state_dict entry {bad[0]!r} is not a named tensor")
    bad = non_finite(payload["state_dict"].items())
    if bad:
        raise NeurokdError(f"{p}: refused: {bad[0]!r}"
                           + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
                           + " hold NaN or infinite values")
    return payload
