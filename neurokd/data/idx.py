"""Reader for the IDX format of MNIST-style files (raw or gzip), with the checks a corrupt file needs."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from neurokd.errors import NeurokdError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array; raise NeurokdError on anything malformed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NeurokdError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            raise NeurokdError(f"{path}: corrupt or truncated gzip data") from None
    if len(raw) < 4:
        raise NeurokdError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _DTYPES or ndim == 0:
        raise NeurokdError(f"{path}: wrong magic number 0x{raw[:4].hex()}; not an IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise NeurokdError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[dtype_code])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        kind = "truncated" if body < expected else "has trailing bytes"
        raise NeurokdError(f"{path}: IDX data {kind}: header says {dims} ({expected} bytes), "
                           f"file holds {body} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
