"""Atomic file and directory writes: a run interrupted half-way never leaves a file that looks whole."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

import yaml

from neurokd.errors import NeurokdError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parents(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    created: List[Path] = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NeurokdError(f"{probe} is a file, not a folder; cannot create {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeurokdError(f"cannot create {folder} ({exc.strerror})") from None
    return created


def _remove_empty(folders: Iterable[Path]) -> None:
    """Remove the folders this run created (deepest first), where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    With ``replace=False`` a file that appeared at ``path`` meanwhile is never replaced: the
    temporary file is linked into place, which fails if the name exists. Folders created for
    ``path`` are removed again when the block fails.
    """
    final = Path(path)
    if final.is_dir():
        raise NeurokdError(f"{final} is a directory; give a file name")
    created = _make_parents(final.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    except OSError as exc:
        _remove_empty(created)
        raise NeurokdError(f"cannot write in {final.parent} ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    ok = False
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it the usual mode
        if replace:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise NeurokdError(f"{final} appeared while it was being written; kept it, "
                                   "and wrote nothing") from None
        ok = True
    finally:
        if tmp.exists():
            tmp.unlink()
        if not ok:
            _remove_empty(created)


def write_json(path: str | os.PathLike, data: Any, replace: bool = True) -> None:
    with atomic_path(path, replace=replace) as tmp:
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


# ---------------------------------------------------------------- outputs that never destroy data
RUN_MARKER = ".neurokd-run"


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _inside(path: Path, folder: Path) -> bool:
    p, f = _resolved(path), _resolved(folder)
    return p == f or f in p.parents


def _check_not_special(flag: str, out: Path) -> None:
    """Refuse an output that names the working directory, one of its parents, home or root."""
    if str(out).strip() == "":
        raise NeurokdError(f"{flag} is empty; give a new directory or file name")
    target = _resolved(out)
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise NeurokdError(f"{flag} {out} is the working directory or one of its parents; give a "
                           "new name")
    if target == Path(target.anchor) or target == Path.home().resolve():
        raise NeurokdError(f"{flag} {out} is the root or home folder; give a new name")


def _check_parent_writable(flag: str, out: Path) -> None:
    probe = Path(os.path.abspath(out)).parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NeurokdError(f"{flag} {out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise NeurokdError(f"{flag} {out}: cannot write in {probe} (permission denied or read-only)")


def check_inputs_outside(flag: str, out: Path, inputs: Iterable[Optional[str | os.PathLike]]) -> None:
    """An input is never an output: refuse when an input file is ``out`` or lies inside it."""
    for item in inputs:
        if item is None or str(item) == "":
            continue
        if _inside(Path(item), out):
            raise NeurokdError(f"{flag} {out} would hold or replace the input {item}; an input is "
                               "never an output, choose another name")


def check_output_file(out: str | os.PathLike, inputs: Iterable[Optional[str | os.PathLike]] = (),
                      force: bool = False, ours: Optional[Callable[[Path], bool]] = None,
                      flag: str = "--out") -> Path:
    """Check, before any work, that ``out`` may be written: it is no input, it does not exist (or,
    with ``force``, it is a file neurokd wrote, as ``ours`` tells), and its folder is writable."""
    path = Path(out)
    _check_not_special(flag, path)
    check_inputs_outside(flag, path, inputs)
    if path.is_symlink() or path.exists():
        if path.is_dir():
            raise NeurokdError(f"{flag} {out} is a directory; give a file name")
        if not force:
            raise NeurokdError(f"{flag} {out} already exists; pass --force to replace it")
        if path.is_symlink() or (ours is not None and not ours(path)):
            raise NeurokdError(f"{flag} {out} was not written by neurokd; --force replaces only "
                               "neurokd's own outputs")
    _check_parent_writable(flag, path)
    return path


def _listing(folder: Path, skip: Sequence[str] = ()) -> dict:
    """Top-level entries of ``folder`` with size and modification time, to notice changes."""
    out = {}
    for entry in os.scandir(folder):
        if entry.name in skip:
            continue
        st = entry.stat(follow_symlinks=False)
        out[entry.name] = (st.st_size, st.st_mtime_ns, entry.is_dir(follow_symlinks=False))
    return out


class RunDir:
    """A run directory that appears whole or not at all, and never destroys what it did not write.

    Use as a context manager; inside, write into the yielded staging folder. The rules:

    - ``out`` must be new, or an empty directory, or (with ``force``) a previous neurokd run
      directory, recognised by its ``.neurokd-run`` marker. Nothing else is ever replaced, and
      ``force`` removes nothing but such a directory's files.
    - The working directory, its parents, home and root are refused; so is an ``out`` that holds
      one of the run's ``inputs``.
    - A lock beside ``out`` keeps two runs from claiming it at once; the second is refused.
    - On failure (or a signal) the staging folder and the folders the run created are removed and
      ``out`` is as it was. On success the staging folder becomes ``out`` with one rename; an
      existing directory, a symlinked one or a mount point, is filled entry by entry instead.
    - If files appear in ``out`` during the run, nothing is replaced: the results are kept beside
      it under a new name and the run fails with a line that says where.
    """

    def __init__(self, out: str | os.PathLike, force: bool = False,
                 inputs: Iterable[Optional[str | os.PathLike]] = (), command: str = "") -> None:
        self.final = Path(out)
        self.force = force
        self.command = command
        _check_not_special("--out", self.final)
        if self.final.is_symlink() and not self.final.exists():
            raise NeurokdError(f"--out {out} is a broken symbolic link")
        if self.final.exists() and not self.final.is_dir():
            raise NeurokdError(f"--out {out} exists and is not a directory")
        check_inputs_outside("--out", self.final, inputs)
        self.replacing = False
        if self.final.is_dir():
            try:
                entries = os.listdir(self.final)
            except OSError as exc:
                raise NeurokdError(f"--out {out}: cannot read ({exc.strerror})") from None
            if entries:
                if not force:
                    raise NeurokdError(f"--out {out} already holds files; pass --force to replace "
                                       "a previous neurokd run directory")
                if not (self.final / RUN_MARKER).is_file():
                    raise NeurokdError(f"--out {out} is not a neurokd run directory (no "
                                       f"{RUN_MARKER}); --force replaces only those, so choose "
                                       "another name")
                self.replacing = True
            if not os.access(self.final, os.W_OK | os.X_OK):
                raise NeurokdError(f"--out {out}: cannot write in it (permission denied or read-only)")
        else:
            _check_parent_writable("--out", self.final)
        # In place: a directory that cannot be renamed over (a mount point, a symlink to a folder).
        self.in_place = self.final.is_dir() and (self.final.is_symlink() or os.path.ismount(self.final))
        self.path: Optional[Path] = None
        self._created: List[Path] = []
        self._lock_fd: Optional[int] = None
        self._lock_path: Optional[Path] = None
        self._before: dict = {}

    # -- locking
    def _lock(self) -> None:
        import fcntl

        parent = Path(os.path.abspath(self.final)).parent
        folder = parent if os.access(parent, os.W_OK) else self.final
        self._lock_path = folder / f".{self.final.name}.neurokd-lock"
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise NeurokdError(f"--out {self.final}: another neurokd run is writing it now") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            assert self._lock_path is not None
            self._lock_path.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def _skip(self) -> List[str]:
        names = [f".{self.final.name}.neurokd-lock"]
        if self.path is not None:
            names.append(self.path.name)
        return names

    def __enter__(self) -> Path:
        self._created = _make_parents(Path(os.path.abspath(self.final)).parent)
        try:
            self._lock()
            if self.final.exists() and not self.replacing and os.listdir(self.final):
                raise NeurokdError(f"--out {self.final} gained files before the run started")
            home = self.final if self.in_place else self.final.parent
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".partial",
                                              dir=home))
            os.chmod(self.path, 0o777 & ~_umask())
            if self.final.is_dir():
                self._before = _listing(self.final, self._skip())
            import datetime

            from neurokd import __version__

            (self.path / RUN_MARKER).write_text(json.dumps({
                "neurokd": __version__, "command": self.command,
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            }) + "\n")
        except BaseException:
            self._cleanup_failed()
            raise
        return self.path

    def _cleanup_failed(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        self._unlock()
        _remove_empty(self._created)

    def _keep_aside(self, why: str) -> None:
        """Move the staged results beside ``out`` under a free name and fail, naming it."""
        assert self.path is not None
        base = Path(os.path.abspath(self.final))
        for i in range(1, 1000):
            alt = base.with_name(f"{base.name}.{i}")
            if not alt.exists():
                break
        os.rename(self.path, alt)
        self.path = None
        self._unlock()
        raise NeurokdError(f"--out {self.final}: {why}; it was left untouched and the results "
                           f"are in {alt}")

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.path is not None
        if exc_type is not None:
            self._cleanup_failed()
            return False
        try:
            self._finish()
        except BaseException:
            if self.path is not None and self.path.exists():
                self._cleanup_failed()
            else:
                self._unlock()
            raise
        self._unlock()
        return False

    def _finish(self) -> None:
        assert self.path is not None
        final = self.final
        if not final.exists() and not final.is_symlink():
            try:
                os.rename(self.path, final)  # the usual case: one atomic rename
            except OSError:
                self._keep_aside("it was created by someone else during the run")
            return
        if _listing(final, self._skip()) != self._before:
            self._keep_aside("files in it changed during the run")
        if self.in_place:
            old = Path(tempfile.mkdtemp(prefix=".neurokd-old.", suffix=".partial", dir=final))
            for name in self._before:
                os.rename(final / name, old / name)
            for entry in os.listdir(self.path):
                os.rename(self.path / entry, final / entry)
            self.path.rmdir()
            shutil.rmtree(old, ignore_errors=True)
            return
        parent = Path(os.path.abspath(final)).parent
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", suffix=".partial", dir=parent))
        os.rename(final, old / "run")  # an empty directory or a previous neurokd run, checked above
        os.rename(self.path, final)
        shutil.rmtree(old, ignore_errors=True)
