"""Sources of Fashion-MNIST: a mirror of IDX files, the checks on what was read,
the choice between sources, and the real files of Debian's package.

TFDS is replaced in every test by a function that fails the test when called,
unless the test installs its own stand-in: nothing here reaches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import make_repo, run

from fmnist.config import FetchConfig
from fmnist.data import DataError, sources
from fmnist.data.idx import IdxError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# SHA-256 of the decoded arrays (uint8, C order), written out independently of
# the module's constants so that a change to either is noticed.
KNOWN_SHA256 = {
    "train_images": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "train_labels": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "test_images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "test_labels": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}
FAKE_COUNTS = {"train": 20, "test": 10}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that would load through tensorflow-datasets."""

    def refuse(data_dir):
        pytest.fail("load_tfds was called: the test would have used the network")

    monkeypatch.setattr(sources, "load_tfds", refuse)


def fake_arrays() -> dict[str, np.ndarray]:
    """Small balanced arrays shaped like Fashion-MNIST (2 and 1 images a class)."""
    rng = np.random.default_rng(7)
    arrays = {}
    for split, count in FAKE_COUNTS.items():
        arrays[f"{split}_images"] = rng.integers(
            0, 256, (count, 28, 28), dtype=np.uint8
        )
        arrays[f"{split}_labels"] = rng.permutation(np.arange(count) % 10).astype(
            np.uint8
        )
    return arrays


def idx_gz(array: np.ndarray) -> bytes:
    """Encode a uint8 array as a gzip-compressed IDX file."""
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    head += struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(head + array.tobytes(), mtime=0)


def write_mirror(directory: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write the four IDX `.gz` files under their original names."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, (name, _) in sources.FILES.items():
        (directory / name).write_bytes(idx_gz(arrays[key]))
    return directory


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A mirror directory of tiny fake IDX files."""
    return write_mirror(tmp_path / "mirror", fake_arrays())


def test_mirror_of_fake_files_loads(mirror):
    dataset = sources.load_mirror(mirror)

    expected = fake_arrays()
    assert set(dataset.arrays) == set(expected)
    for key, array in expected.items():
        np.testing.assert_array_equal(dataset.arrays[key], array)
    assert dataset.source == {"kind": "mirror", "location": str(mirror.resolve())}


def test_fake_mirror_passes_verify_with_its_own_counts(mirror):
    arrays = sources.load_mirror(mirror).arrays
    digests = {key: sources.sha256(array) for key, array in arrays.items()}

    summary = sources.verify(arrays, FAKE_COUNTS, digests)

    assert summary["train"] == {"images": 20, "per_class": [2] * 10}
    assert summary["test"] == {"images": 10, "per_class": [1] * 10}
    assert summary["sha256"] == digests


def test_sha256_is_of_c_order_bytes():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)

    assert sources.sha256(array) == hashlib.sha256(array.tobytes()).hexdigest()
    # A transposed view hashes as its C-order copy, not as the memory beneath it.
    assert sources.sha256(array.T) == sources.sha256(np.ascontiguousarray(array.T))
    assert sources.sha256(array.T) != sources.sha256(array)


def spoil(arrays: dict[str, np.ndarray], case: str) -> dict[str, np.ndarray]:
    """Return a copy of `arrays` broken in the way `case` names."""
    arrays = {key: array.copy() for key, array in arrays.items()}
    if case == "label-out-of-range":
        arrays["train_labels"][3] = 10
    elif case == "wrong-dtype":
        arrays["test_images"] = arrays["test_images"].astype(np.float32)
    elif case == "wrong-image-shape":
        arrays["test_images"] = arrays["test_images"][:, :, :27]
    elif case == "labels-not-one-per-image":
        arrays["test_labels"] = arrays["test_labels"][:-1]
    elif case == "class-imbalance":
        # Still ten valid labels, but class 0 has one image too few.
        arrays["train_labels"][arrays["train_labels"] == 0] = [0, 1]
    elif case == "missing-array":
        del arrays["test_labels"]
    return arrays


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("label-out-of-range", ["train_labels", "0 to 9", "found 10"]),
        ("wrong-dtype", ["test_images", "uint8", "float32"]),
        ("wrong-image-shape", ["test_images", "(N, 28, 28)", "(10, 28, 27)"]),
        ("labels-not-one-per-image", ["test_labels", "(10)", "(9,)"]),
        (
            "class-imbalance",
            ["train_labels", "2 images per class", "[1, 3, 2, 2, 2, 2, 2, 2, 2, 2]"],
        ),
        ("missing-array", ["missing", "test_labels"]),
    ],
)
def test_verify_rejects_bad_arrays(case, fragments):
    arrays = spoil(fake_arrays(), case)

    with pytest.raises(DataError) as error:
        sources.verify(arrays, FAKE_COUNTS)

    for fragment in fragments:
        assert fragment in str(error.value)


def test_verify_rejects_wrong_image_count():
    with pytest.raises(DataError) as error:
        sources.verify(fake_arrays(), {"train": 20, "test": 12})

    message = str(error.value)
    assert "test_images" in message
    assert "expected 12 images" in message and "got 10" in message


def test_verify_rejects_wrong_sha256():
    arrays = fake_arrays()
    digests = {key: sources.sha256(array) for key, array in arrays.items()}
    arrays["test_images"][0, 0, 0] ^= 1

    with pytest.raises(DataError) as error:
        sources.verify(arrays, FAKE_COUNTS, digests)

    message = str(error.value)
    assert "test_images" in message
    assert digests["test_images"] in message
    assert sources.sha256(arrays["test_images"]) in message


def test_fetch_reads_a_user_mirror(mirror, tmp_path):
    config = FetchConfig(
        mirror_dir=str(mirror), mirror_dirs=[str(tmp_path)], allow_download=True
    )

    dataset = sources.fetch(config)

    assert dataset.source["kind"] == "mirror"
    np.testing.assert_array_equal(
        dataset.arrays["train_labels"], fake_arrays()["train_labels"]
    )


def test_fetch_searches_mirror_dirs_in_order(tmp_path):
    first = write_mirror(tmp_path / "first", fake_arrays())
    second = write_mirror(tmp_path / "second", fake_arrays())
    config = FetchConfig(
        mirror_dirs=[str(tmp_path / "absent"), str(first), str(second)],
        allow_download=False,
    )

    assert sources.fetch(config).source["location"] == str(first.resolve())


def test_fetch_prefers_tfds_when_asked_and_falls_back_to_the_mirror(
    mirror, monkeypatch
):
    calls = []

    def offline(data_dir):
        calls.append(data_dir)
        raise ConnectionError("no network")

    monkeypatch.setattr(sources, "load_tfds", offline)
    config = FetchConfig(
        prefer="tfds", mirror_dir=str(mirror), mirror_dirs=[], tfds_data_dir="tfds"
    )

    dataset = sources.fetch(config)

    assert calls == ["tfds"]
    assert dataset.source["kind"] == "mirror"


def test_fetch_uses_tfds_only_when_no_mirror_is_found(tmp_path, monkeypatch):
    arrays = fake_arrays()
    monkeypatch.setattr(
        sources, "load_tfds", lambda data_dir: sources.Dataset(arrays, {"kind": "tfds"})
    )
    config = FetchConfig(mirror_dirs=[str(tmp_path)], allow_download=True)

    assert sources.fetch(config).source == {"kind": "tfds"}


def test_no_source_and_download_off_says_how_to_get_the_data(tmp_path):
    config = FetchConfig(mirror_dirs=[str(tmp_path)], allow_download=False)

    with pytest.raises(DataError) as error:
        sources.fetch(config)

    message = str(error.value)
    assert "dataset-fashion-mnist" in message
    assert "fetch.allow_download" in message
    assert "fetch.mirror_dir" in message
    assert str(tmp_path) in message


def test_failed_download_and_no_mirror_reports_both(tmp_path, monkeypatch):
    def offline(data_dir):
        raise ConnectionError("name resolution failed")

    monkeypatch.setattr(sources, "load_tfds", offline)
    config = FetchConfig(mirror_dirs=[str(tmp_path)], allow_download=True)

    with pytest.raises(DataError) as error:
        sources.fetch(config)

    message = str(error.value)
    assert "name resolution failed" in message
    assert "dataset-fashion-mnist" in message


@pytest.mark.parametrize("missing", ["t10k-labels-idx1-ubyte.gz", None])
def test_user_mirror_dir_without_the_files_is_rejected(mirror, tmp_path, missing):
    if missing is None:
        directory = tmp_path / "nowhere"
    else:
        (mirror / missing).unlink()
        directory = mirror
    # A good mirror elsewhere must not hide the mistake in fetch.mirror_dir.
    other = write_mirror(tmp_path / "other", fake_arrays())
    config = FetchConfig(
        mirror_dir=str(directory), mirror_dirs=[str(other)], allow_download=False
    )

    with pytest.raises(DataError) as error:
        sources.fetch(config)

    message = str(error.value)
    assert "fetch.mirror_dir" in message
    assert str(directory) in message
    assert "t10k-labels-idx1-ubyte.gz" in message


def test_corrupt_mirror_file_is_reported_by_name(mirror):
    name = "train-labels-idx1-ubyte.gz"
    data = (mirror / name).read_bytes()
    (mirror / name).write_bytes(data[: len(data) - 12])

    with pytest.raises(IdxError, match=name):
        sources.fetch(FetchConfig(mirror_dir=str(mirror), allow_download=False))


def test_debian_files_decode_to_the_known_digests():
    # The Debian package's gzip headers differ from the upstream archives, so
    # the decoded arrays are compared, not the files.
    dataset = sources.load_mirror(DEBIAN_DIR)
    summary = sources.verify(dataset.arrays, sources.COUNTS, sources.SHA256)

    assert summary["sha256"] == KNOWN_SHA256
    assert sources.SHA256 == KNOWN_SHA256
    assert summary["train"]["per_class"] == [6000] * 10
    assert summary["test"]["per_class"] == [1000] * 10
    assert dataset.arrays["train_images"].shape == (60000, 28, 28)
    assert dataset.arrays["test_images"].shape == (10000, 28, 28)


# The fetch stage end to end, in a throwaway copy of the repository.


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """A tiny-profile copy of the repository with downloads off."""
    return make_repo(tmp_path_factory.mktemp("fetch") / "repo")


def truncate(path: Path) -> None:
    """Cut a file to two thirds of its length."""
    data = path.read_bytes()
    path.write_bytes(data[: 2 * len(data) // 3])


def spoil_crc(path: Path) -> None:
    """Flip the CRC-32 stored at the end of a gzip member."""
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))


def swap_labels(path: Path) -> None:
    """Replace the labels with a valid IDX file of different, balanced labels."""
    with gzip.open(path, "rb") as handle:
        labels = np.frombuffer(handle.read()[8:], dtype=np.uint8)
    path.write_bytes(idx_gz(np.roll(labels, 1)))


@pytest.mark.parametrize(
    ("name", "damage", "named"),
    [
        ("train-labels-idx1-ubyte.gz", truncate, "train-labels-idx1-ubyte.gz"),
        ("t10k-labels-idx1-ubyte.gz", spoil_crc, "t10k-labels-idx1-ubyte.gz"),
        ("t10k-labels-idx1-ubyte.gz", swap_labels, "test_labels: SHA-256"),
    ],
    ids=["truncated", "bad-crc", "wrong-content"],
)
def test_fetch_stage_on_a_bad_mirror_fails_and_keeps_earlier_output(
    repo_copy, tmp_path, name, damage, named
):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for file_name, _ in sources.FILES.values():
        shutil.copy(DEBIAN_DIR / file_name, mirror / file_name)
    damage(mirror / name)
    raw = repo_copy / "data" / "raw" / "fashion_mnist.npz"
    raw.parent.mkdir(parents=True, exist_ok=True)
    with open(raw, "wb") as handle:
        np.savez(handle, earlier=np.arange(5))
    earlier = raw.read_bytes()

    result = run(
        [
            "python",
            "-m",
            "stages.fetch",
            f"fetch.mirror_dir={mirror}",
            "fetch.prefer=mirror",
            "fetch.allow_download=false",
        ],
        repo_copy,
        check=False,
        timeout=300,
    )

    assert result.returncode != 0
    assert named in result.stderr
    assert raw.read_bytes() == earlier
    assert os.listdir(raw.parent) == ["fashion_mnist.npz"]
    assert not (repo_copy / "metrics" / "fetch.json").exists()
