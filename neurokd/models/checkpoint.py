"""Checkpoints: a plain dict of tensors and JSON-like values, loaded with ``weights_only=True``."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict

import torch

from neurokd.errors import NeurokdError
from neurokd.fileio import atomic_path

FORMAT = "neurokd-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, kind: str, arch: Dict[str, Any],
                    state_dict: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> Path:
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "arch": arch,
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, kind: str | None = None) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such checkpoint file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError,
            ValueError, AttributeError, KeyError, TypeError):
        raise NeurokdError(f"{p}: not a neurokd checkpoint (unreadable or unsafe content)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NeurokdError(f"{p}: not a neurokd checkpoint")
    if payload.get("version") != VERSION:
        raise NeurokdError(f"{p}: checkpoint version {payload.get('version')} is not supported")
    if kind is not None and payload.get("kind") != kind:
        raise NeurokdError(f"{p}: is a {payload.get('kind')} checkpoint, expected a {kind} checkpoint")
    return payload
