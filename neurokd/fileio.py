"""Atomic file and directory writes: a run interrupted half-way never leaves a file that looks whole."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from neurokd.errors import NeurokdError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    final = Path(path)
    if final.is_dir():
        raise NeurokdError(f"{final} is a directory; give a file name")
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it the usual mode
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))


def read_yaml(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such file")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise NeurokdError(f"{p}: not valid YAML{where}") from None


class RunDir:
    """A run directory built under a temporary name and renamed into place on success.

    Use as a context manager: on an exception the partial directory is removed, so ``--out DIR``
    either holds a whole run or nothing.
    """

    def __init__(self, out: str | os.PathLike, force: bool = False) -> None:
        self.final = Path(out)
        if self.final.exists() and not self.final.is_dir():
            raise NeurokdError(f"--out {self.final} exists and is not a directory")
        if self.final.is_dir() and any(self.final.iterdir()) and not force:
            raise NeurokdError(f"--out {self.final} already holds files; pass --force to replace it")
        self.force = force
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".partial",
                                          dir=self.final.parent))
        os.chmod(self.path, 0o777 & ~_umask())
        return self.path

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.path is not None
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.path, self.final)
        return False
