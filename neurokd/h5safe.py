"""HDF5 files from users, checked before a byte of their data is read.

HDF5 can make a dataset read bytes from somewhere other than the file itself: external raw
storage (``create_dataset(..., external=[(path, offset, size)])``, any file the user can read, or
a FIFO that never ends), external links and soft links (another file's objects, or a path that
goes round in a loop), and virtual datasets (pieces of other HDF5 files). A small file can also
declare a dataset far larger than what it stores (an unallocated dataset reads as its fill value;
a compressed one expands). :func:`check_hdf5` walks the file's links and dataset headers (metadata
only; nothing is decompressed and nothing outside the file is opened) and refuses all of these
with one line, before the caller reads anything. Every HDF5 file neurokd opens (NIR graphs, netx
networks, RadioML 2018) goes through it first.

This module sits on the ground floor: it imports nothing of neurokd but its error type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from neurokd.errors import NeurokdError

# Filters HDF5 itself implements (deflate, shuffle, fletcher32, szip, n-bit, scale-offset) and
# h5py's LZF. Anything else would need a plugin loaded from HDF5_PLUGIN_PATH: code from elsewhere.
BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})
# The most deflate (the strongest expanding filter here) can expand: about 1032 to 1.
MAX_EXPANSION = 1032
# Datasets this small may be unallocated (they read as their fill value) or compact.
SMALL_BYTES = 1 << 20
MAX_OBJECTS = 100_000
MAX_DEPTH = 64


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_budget() -> int:
    """Bytes one step may allocate from a user's file: half the memory available now (16 GiB
    where that is unknown)."""
    avail = available_memory()
    return avail // 2 if avail else 1 << 34


def format_bytes(n: float) -> str:
    """``n`` bytes as people read them (``512 B``, ``2.5 KB``, ``4.0 GB``)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def check_hdf5(path: Union[str, Path], what: str = "HDF5 file",
               max_bytes: Optional[int] = None) -> int:
    """Refuse an HDF5 file that reaches outside itself or declares more data than it can back.

    Walks every link from the root group without reading data. Refused, each with one line naming
    the object: an external link, a soft link, a dataset with external raw storage, a virtual
    dataset, a filter HDF5 does not build in, a dataset larger than its stored bytes can expand
    to, more than :data:`MAX_OBJECTS` objects or deeper than :data:`MAX_DEPTH` groups, and datasets
    that together hold more than ``max_bytes`` (default: half the memory available now).
    Returns the total bytes the file's datasets hold once read.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such file")
    if max_bytes is None:
        max_bytes = memory_budget()
    try:
        fh = h5py.File(p, "r")
    except OSError:
        raise NeurokdError(f"{p}: not an HDF5 file (a {what} is HDF5)") from None
    total = 0
    seen = set()
    count = 0
    with fh:
        stack = [("", fh, 0)]
        while stack:
            name, group, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise NeurokdError(f"{p}: refused: groups nested deeper than {MAX_DEPTH} at {name}")
            try:
                keys = list(group.keys())
            except Exception:  # noqa: BLE001 - a damaged group table
                raise NeurokdError(f"{p}: damaged HDF5 group {name or '/'}") from None
            for key in keys:
                count += 1
                if count > MAX_OBJECTS:
                    raise NeurokdError(f"{p}: refused: more than {MAX_OBJECTS} objects in one "
                                       f"{what}")
                full = f"{name}/{key}"
                link = group.get(key, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise NeurokdError(f"{p}: refused: {full} is an external link to "
                                       f"{link.filename}:{link.path}; a {what} must hold its "
                                       "data itself")
                if isinstance(link, h5py.SoftLink):
                    raise NeurokdError(f"{p}: refused: {full} is a soft link to {link.path}; a "
                                       f"{what} must hold its data in place")
                if not isinstance(link, h5py.HardLink):
                    raise NeurokdError(f"{p}: refused: {full} is a user-defined link")
                try:
                    obj = group[key]
                except Exception:  # noqa: BLE001 - a dangling or damaged object
                    raise NeurokdError(f"{p}: damaged HDF5 object {full}") from None
                addr = h5py.h5o.get_info(obj.id).addr
                if addr in seen:  # the same object under two names: walked once
                    continue
                seen.add(addr)
                if isinstance(obj, h5py.Group):
                    stack.append((full, obj, depth + 1))
                elif isinstance(obj, h5py.Dataset):
                    total += _check_dataset(p, full, obj, what)
                    if total > max_bytes:
                        raise NeurokdError(
                            f"{p}: refused: its datasets hold {format_bytes(total)} once read, more than "
                            f"the {format_bytes(max_bytes)} this machine can spare")
    return total


def _check_dataset(p: Path, name: str, ds, what: str) -> int:
    import h5py

    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise NeurokdError(f"{p}: refused: {name} is a virtual dataset (its data live in other "
                           f"files); a {what} must hold its data itself")
    if plist.get_external_count() > 0:
        source = plist.get_external(0)[0]
        source = source.decode(errors="replace") if isinstance(source, bytes) else str(source)
        raise NeurokdError(f"{p}: refused: {name} keeps its data in external storage ({source}); "
                           f"a {what} must hold its data itself")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    unknown = [f for f in filters if f not in BUILTIN_FILTERS]
    if unknown:
        raise NeurokdError(f"{p}: refused: {name} needs HDF5 filter {unknown[0]}, which is not "
                           "built into HDF5 (it would load a plugin)")
    try:
        nbytes = int(ds.dtype.itemsize)
        for n in ds.shape or ():
            nbytes *= int(n)
    except (TypeError, ValueError):  # a null dataspace
        return 0
    stored = int(ds.id.get_storage_size())
    backed = stored * (MAX_EXPANSION if filters else 1)
    if nbytes > SMALL_BYTES and nbytes > backed:
        raise NeurokdError(f"{p}: refused: {name} declares {tuple(ds.shape)} {ds.dtype} "
                           f"({format_bytes(nbytes)}) but the file stores {format_bytes(stored)} of it")
    return nbytes
