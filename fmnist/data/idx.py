"""A reader for the IDX format of the original MNIST-style files.

An IDX file starts with a magic number (two zero bytes, a type code and the number
of dimensions), then one big-endian 32-bit size per dimension, then the data. The
reader checks every part before it trusts it: no size in a header can make it
allocate more than the file really holds.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

# Type codes of the IDX format; Fashion-MNIST uses only unsigned bytes.
DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# No legitimate file here holds more than this; a header that claims more is bad.
MAX_BYTES = 1 << 30
# NumPy 1.x cannot make arrays of more dimensions; the IDX files here have 1 or 3.
MAX_NDIM = 32
# Data is read in pieces of this size, so memory grows with what the file really
# holds, never with what its header claims.
CHUNK_BYTES = 1 << 20


class IdxError(ValueError):
    """An IDX file is truncated, corrupted or not what was expected."""


def read_idx(
    path: str | os.PathLike[str],
    expected_magic: int | None = None,
    max_bytes: int = MAX_BYTES,
) -> np.ndarray:
    """Read an IDX file, gzip-compressed or plain, into a NumPy array.

    Args:
        path: the file; a name ending in `.gz` is decompressed.
        expected_magic: the full magic number required (for example `0x00000803`
            for unsigned-byte images of three dimensions), or None for any.
        max_bytes: the largest data size a header may claim.

    Returns:
        The array with the shape the header gives.

    Raises:
        IdxError: naming the file and what was wrong with it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return _read(handle, path, expected_magic, max_bytes)
    except (OSError, EOFError, zlib.error) as error:
        # gzip raises these for truncated archives and bad checksums.
        raise IdxError(f"{path}: cannot be read as IDX data ({error})") from None


def _read(handle, path: Path, expected_magic: int | None, max_bytes: int) -> np.ndarray:
    head = handle.read(4)
    if len(head) < 4:
        raise IdxError(
            f"{path}: expected a 4-byte IDX magic number, file has {len(head)} bytes"
        )
    magic = struct.unpack(">I", head)[0]
    if expected_magic is not None and magic != expected_magic:
        raise IdxError(
            f"{path}: wrong magic number: expected 0x{expected_magic:08x}, "
            f"got 0x{magic:08x}"
        )
    zeros, type_code, ndim = head[0] << 8 | head[1], head[2], head[3]
    if zeros != 0 or type_code not in DTYPES or ndim == 0:
        raise IdxError(
            f"{path}: not an IDX file: magic number 0x{magic:08x} has no valid type "
            "code and dimension count"
        )

    if ndim > MAX_NDIM:
        raise IdxError(
            f"{path}: header claims {ndim} dimensions, expected at most {MAX_NDIM}"
        )

    raw_dims = handle.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IdxError(f"{path}: truncated header: expected {ndim} dimension sizes")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = DTYPES[type_code]
    # Python integers: a product in fixed-width NumPy integers can wrap around to
    # a small number. Zero-length dimensions count as one, because NumPy refuses
    # a shape like (0, 4e9, 4e9) even though it holds nothing.
    size = math.prod(dims) * dtype.itemsize
    span = math.prod(max(dim, 1) for dim in dims) * dtype.itemsize
    if span > max_bytes:
        raise IdxError(
            f"{path}: header claims shape {dims} ({span} bytes), more than the "
            f"{max_bytes} bytes allowed"
        )

    data = _read_up_to(handle, size)
    if len(data) < size:
        raise IdxError(
            f"{path}: truncated: header promises {size} data bytes for shape {dims}, "
            f"file holds {len(data)}"
        )
    if handle.read(1):
        raise IdxError(f"{path}: trailing data after the {size} bytes of shape {dims}")
    return (
        np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))
    )


def _read_up_to(handle, size: int) -> bytearray:
    """Read at most `size` bytes, stopping early at the end of the file."""
    data = bytearray()
    while len(data) < size:
        chunk = handle.read(min(CHUNK_BYTES, size - len(data)))
        if not chunk:
            break
        data += chunk
    return data
