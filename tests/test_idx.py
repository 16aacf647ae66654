"""The IDX reader on small files written here: good ones round-trip, bad ones
raise `IdxError` quickly, without reading or allocating what a header claims."""

from __future__ import annotations

import contextlib
import gzip
import random
import signal
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fmnist.data.idx import DTYPES, IdxError, read_idx

# IDX type codes by NumPy kind and item size, written out here independently.
TYPE_CODES = {("u", 1): 0x08, ("i", 4): 0x0C, ("f", 8): 0x0E}
# What a reader may allocate while refusing a file: far less than any header in
# these tests claims (hundreds of megabytes to terabytes).
ALLOWED_PEAK = 16 << 20


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX: magic, big-endian sizes, big-endian data."""
    code = TYPE_CODES[array.dtype.kind, array.dtype.itemsize]
    big = array.astype(array.dtype.newbyteorder(">"))
    return header(array.shape, code) + big.tobytes()


def header(dims: tuple[int, ...], code: int = 0x08) -> bytes:
    """An IDX header alone: what a file claims before its data."""
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(
        f">{len(dims)}I", *dims
    )


def write(path: Path, payload: bytes) -> Path:
    """Write `payload`, gzip-compressed when the name ends in `.gz`."""
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail the test if the block runs longer than `seconds` (a hang guard)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def peak_memory():
    """Measure the peak of Python and NumPy allocations inside the block."""
    tracemalloc.start()
    measured = {}
    try:
        yield measured
    finally:
        measured["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


@pytest.fixture(params=["plain", "gz"])
def suffix(request) -> str:
    """Every test of a file runs on a plain and on a gzip-compressed copy."""
    return ".gz" if request.param == "gz" else ""


def test_images_round_trip(tmp_path, suffix):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = write(tmp_path / f"images{suffix}", idx_bytes(images))

    decoded = read_idx(path, expected_magic=0x00000803)

    assert decoded.dtype == np.uint8
    assert decoded.shape == (7, 28, 28)
    np.testing.assert_array_equal(decoded, images)


def test_labels_round_trip(tmp_path, suffix):
    labels = np.arange(25, dtype=np.uint8) % 10
    path = write(tmp_path / f"labels{suffix}", idx_bytes(labels))

    decoded = read_idx(path, expected_magic=0x00000801)

    assert decoded.shape == (25,)
    np.testing.assert_array_equal(decoded, labels)


@pytest.mark.parametrize("dtype", [">i4", ">f8"])
def test_wide_types_come_back_in_native_byte_order(tmp_path, suffix, dtype):
    array = np.linspace(-3e5, 3e5, 12).reshape(3, 4).astype(dtype)
    path = write(tmp_path / f"wide{suffix}", idx_bytes(array))

    decoded = read_idx(path)

    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, array)


def test_empty_array_decodes(tmp_path, suffix):
    path = write(tmp_path / f"empty{suffix}", header((0, 28, 28)))

    assert read_idx(path).shape == (0, 28, 28)


def test_wrong_magic_names_expected_and_found(tmp_path, suffix):
    labels = np.zeros(5, dtype=np.uint8)
    path = write(tmp_path / f"labels{suffix}", idx_bytes(labels))

    with pytest.raises(IdxError) as error:
        read_idx(path, expected_magic=0x00000803)

    message = str(error.value)
    assert str(path) in message
    assert "0x00000803" in message and "0x00000801" in message


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"\x01\x00\x08\x01", id="nonzero-lead"),
        pytest.param(b"\x00\x00\x07\x01", id="unknown-type"),
        pytest.param(b"\x00\x00\x08\x00", id="no-dimensions"),
        pytest.param(b"PK\x03\x04", id="zip-file"),
    ],
)
def test_not_an_idx_file(tmp_path, suffix, head):
    path = write(tmp_path / f"other{suffix}", head + b"\x00" * 16)

    with pytest.raises(IdxError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize("cut", [0, 3, 5, 11])
def test_truncated_header(tmp_path, suffix, cut):
    path = write(tmp_path / f"short{suffix}", header((2, 28, 28))[:cut])

    with pytest.raises(IdxError, match=r"4-byte IDX magic|truncated header"):
        read_idx(path)


def test_header_claims_more_items_than_present(tmp_path, suffix):
    images = np.ones((3, 28, 28), dtype=np.uint8)
    payload = header((4, 28, 28)) + images.tobytes()
    path = write(tmp_path / f"images{suffix}", payload)

    with pytest.raises(IdxError) as error:
        read_idx(path)

    message = str(error.value)
    assert "truncated" in message
    assert str(4 * 28 * 28) in message and str(3 * 28 * 28) in message


def test_trailing_data(tmp_path, suffix):
    labels = np.arange(10, dtype=np.uint8)
    path = write(tmp_path / f"labels{suffix}", idx_bytes(labels) + b"\x00")

    with pytest.raises(IdxError, match="trailing data"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    compressed = gzip.compress(idx_bytes(images), mtime=0)
    path = tmp_path / "images.gz"
    path.write_bytes(compressed[: len(compressed) // 2])

    with pytest.raises(IdxError) as error:
        read_idx(path)

    assert str(path) in str(error.value)


def test_gzip_with_bad_crc(tmp_path):
    labels = np.arange(100, dtype=np.uint8) % 10
    compressed = bytearray(gzip.compress(idx_bytes(labels), mtime=0))
    # The member ends with the CRC-32 of the data, then its length: spoil the CRC.
    compressed[-8] ^= 0xFF
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(compressed))

    with pytest.raises(IdxError, match="CRC"):
        read_idx(path)


def test_gzip_with_corrupted_stream(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    compressed = bytearray(gzip.compress(idx_bytes(images), mtime=0))
    middle = len(compressed) // 2
    compressed[middle : middle + 16] = bytes(16)
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(compressed))

    with pytest.raises(IdxError):
        read_idx(path)


@pytest.mark.parametrize(
    ("dims", "present"),
    [
        pytest.param((4_000_000_000, 28, 28), 784, id="billions-of-images"),
        # 784 MB is under the reader's cap: only reading in pieces avoids
        # allocating it for a file that holds a few bytes.
        pytest.param((1_000_000, 28, 28), 784, id="under-the-cap-but-absent"),
        # The product is 2**64: it wraps to 0 in 64-bit integers.
        pytest.param((65536, 65536, 65536, 65536), 0, id="wraps-64-bits"),
        pytest.param((0, 4_000_000_000, 4_000_000_000), 0, id="empty-but-huge"),
        pytest.param((2,) * 200, 0, id="too-many-dimensions"),
    ],
)
def test_huge_claims_fail_fast_without_allocating(tmp_path, suffix, dims, present):
    path = write(tmp_path / f"huge{suffix}", header(dims) + bytes(present))

    start = time.perf_counter()
    with peak_memory() as memory, pytest.raises(IdxError) as error:
        read_idx(path)
    seconds = time.perf_counter() - start

    assert str(path) in str(error.value)
    assert seconds < 2.0
    assert memory["peak"] < ALLOWED_PEAK, f"allocated {memory['peak']} bytes"


def test_max_bytes_is_honoured(tmp_path):
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    path = write(tmp_path / "images", idx_bytes(images))

    assert read_idx(path, max_bytes=images.nbytes).shape == (10, 28, 28)
    with pytest.raises(IdxError, match=f"{images.nbytes - 1} bytes allowed"):
        read_idx(path, max_bytes=images.nbytes - 1)


def test_missing_file_is_an_idx_error(tmp_path):
    with pytest.raises(IdxError, match="absent.gz"):
        read_idx(tmp_path / "absent.gz")


def fuzz_cases(rng: random.Random) -> list[bytes]:
    """Seeded hostile inputs: cut and flipped copies of a valid file, random
    headers over random payloads, and random bytes."""
    valid = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))
    head_size = 4 + 4 * 3
    cases = [valid[:cut] for cut in range(len(valid) + 1)]

    for _ in range(400):
        mutated = bytearray(valid)
        for _ in range(rng.randint(1, 3)):
            # Half the flips land in the header, where they change what it claims.
            end = head_size if rng.random() < 0.5 else len(mutated)
            mutated[rng.randrange(end)] = rng.randrange(256)
        cases.append(bytes(mutated))

    codes = [*DTYPES, 0x00, 0x07, 0xFF]
    for _ in range(400):
        ndim = rng.choice([1, 2, 3, 4, rng.randrange(256)])
        dims = [rng.choice([0, 1, 2, 28, rng.getrandbits(32)]) for _ in range(ndim)]
        head = bytes([0, 0, rng.choice(codes), ndim])
        body = b"".join(struct.pack(">I", dim) for dim in dims)
        cases.append(head + body + rng.randbytes(rng.randrange(64)))

    cases += [rng.randbytes(rng.randrange(40)) for _ in range(200)]
    return cases


def test_fuzz_decodes_or_raises_idx_error(tmp_path):
    rng = random.Random(20240917)
    cases = fuzz_cases(rng)
    gz_valid = gzip.compress(idx_bytes(np.arange(60, dtype=np.uint8)), mtime=0)
    gz_cases = []
    for _ in range(400):
        mutated = bytearray(gz_valid)
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        gz_cases.append(bytes(mutated))
    gz_cases += [gz_valid[:cut] for cut in range(len(gz_valid))]

    outcomes = {"decoded": 0, "refused": 0}
    plain, packed = tmp_path / "case", tmp_path / "case.gz"
    runs = [(plain, case, case) for case in cases]
    runs += [(packed, gzip.compress(case, mtime=0), case) for case in cases]
    runs += [(packed, case, None) for case in gz_cases]

    with peak_memory() as memory, deadline(60):
        for path, stored, content in runs:
            path.write_bytes(stored)
            try:
                array = read_idx(path)
            except IdxError:
                outcomes["refused"] += 1
                continue
            except Exception as error:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{path.name} {stored.hex()}: raised {error!r}")
            outcomes["decoded"] += 1
            if content is not None:
                # A decoded file holds exactly the header and the data it promised.
                assert 4 + 4 * array.ndim + array.nbytes == len(content)

    assert memory["peak"] < ALLOWED_PEAK, f"allocated {memory['peak']} bytes"
    # Both outcomes occur, so the loop really exercised the reader.
    assert outcomes["decoded"] > 50 and outcomes["refused"] > 1000, outcomes
