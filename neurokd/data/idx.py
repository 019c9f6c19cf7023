"""Reader for the IDX format of MNIST-style files (raw or gzip), with the checks a corrupt or
hostile file needs.

The header is read first, from the stream, and the sizes it claims are checked against what the
file can back before any data is read: a raw file must hold exactly header + data bytes; a gzip
file cannot expand more than deflate's maximum ratio and must end with a gzip size field that
agrees with the header. Data is then read with a bound, so a file that lies about its size costs
no more memory than its header honestly claims.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from neurokd.errors import NeurokdError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# Deflate expands at most about 1032:1; gzip adds an 18-byte frame.
_MAX_DEFLATE_RATIO = 1032
# Refuse any IDX array larger than this whatever the file claims (MNIST's largest file is 47 MB).
MAX_IDX_BYTES = 2 * 2**30


def _read_exact(stream: BinaryIO, n: int, path: Path) -> bytes:
    try:
        data = stream.read(n)
    except (OSError, EOFError, zlib.error):
        raise NeurokdError(f"{path}: corrupt or truncated gzip data") from None
    return data


def read_idx(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array; raise NeurokdError on anything malformed."""
    path = Path(path)
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise NeurokdError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        gz_size_field = None
        if gzipped:
            if size < 18:
                raise NeurokdError(f"{path}: corrupt or truncated gzip data")
            fh.seek(size - 4)
            gz_size_field = struct.unpack("<I", fh.read(4))[0]  # uncompressed size mod 2**32
            fh.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=fh, mode="rb") if gzipped else fh
        head = _read_exact(stream, 4, path)
        if len(head) < 4:
            raise NeurokdError(f"{path}: too short to be an IDX file ({len(head)} bytes)")
        zero, dtype_code, ndim = struct.unpack(">HBB", head)
        if zero != 0 or dtype_code not in _DTYPES or ndim == 0:
            raise NeurokdError(f"{path}: wrong magic number 0x{head.hex()}; not an IDX file")
        raw_dims = _read_exact(stream, 4 * ndim, path)
        if len(raw_dims) < 4 * ndim:
            raise NeurokdError(f"{path}: truncated IDX header")
        dims = struct.unpack(f">{ndim}I", raw_dims)
        header = 4 + 4 * ndim
        dtype = np.dtype(_DTYPES[dtype_code])
        expected = math.prod(dims) * dtype.itemsize  # Python integers: no overflow
        if expected > max_bytes:
            raise NeurokdError(f"{path}: IDX header claims {dims} ({expected} bytes), more than "
                               f"the {max_bytes}-byte limit; refused")
        if gzipped:
            if expected + header > (size - 18) * _MAX_DEFLATE_RATIO + 1024:
                raise NeurokdError(f"{path}: IDX header claims {dims} ({expected} bytes), more "
                                   f"than {size} bytes of gzip can hold; refused")
            if gz_size_field != (expected + header) % 2**32:
                raise NeurokdError(f"{path}: IDX header claims {dims} ({expected} bytes) but the "
                                   f"gzip data is {gz_size_field - header} bytes long")
        elif size - header != expected:
            body = size - header
            kind = "truncated" if body < expected else "has trailing bytes"
            raise NeurokdError(f"{path}: IDX data {kind}: header says {dims} ({expected} bytes), "
                               f"file holds {body} bytes")
        body = _read_exact(stream, expected + 1, path)  # one byte more reveals trailing data
    if len(body) != expected:
        kind = "truncated" if len(body) < expected else "has trailing bytes"
        raise NeurokdError(f"{path}: IDX data {kind}: header says {dims} ({expected} bytes)")
    return np.frombuffer(body, dtype=dtype).reshape(dims)
