"""Where Fashion-MNIST comes from: a local mirror of the IDX files, or TFDS.

Whichever source is used, the decoded arrays are checked against the dataset's
known shapes, label range, class balance and SHA-256 digests, so every source
yields the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmnist.config import FetchConfig
from fmnist.data import DataError
from fmnist.data.idx import read_idx

log = logging.getLogger(__name__)

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", IMAGES_MAGIC),
    "train_labels": ("train-labels-idx1-ubyte.gz", LABELS_MAGIC),
    "test_images": ("t10k-images-idx3-ubyte.gz", IMAGES_MAGIC),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", LABELS_MAGIC),
}
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
COUNTS = {"train": 60_000, "test": 10_000}
# SHA-256 of each decoded array's bytes (C order, uint8), the same from every source.
SHA256 = {
    "train_images": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "train_labels": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "test_images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "test_labels": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}
HOW_TO_GET = (
    "Fashion-MNIST was not found. Get it one of these ways: install Debian's "
    "package (`apt-get install dataset-fashion-mnist`, which puts the files in "
    "/usr/share/datasets/fashion-mnist); allow a network download through "
    "tensorflow-datasets (fetch.allow_download=true); or put the four IDX files "
    f"({', '.join(name for name, _ in FILES.values())}) in a directory and set "
    "fetch.mirror_dir to it."
)


@dataclass
class Dataset:
    """The four arrays of Fashion-MNIST and where they came from."""

    arrays: dict[str, np.ndarray]
    source: dict[str, str] = field(default_factory=dict)


def sha256(array: np.ndarray) -> str:
    """Return the SHA-256 of an array's bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(
    arrays: Mapping[str, np.ndarray],
    counts: Mapping[str, int] | None = None,
    digests: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Check shapes, dtypes, label range, class balance and digests.

    Args:
        arrays: `train_images`, `train_labels`, `test_images`, `test_labels`.
        counts: expected images per split; None skips the count check.
        digests: expected SHA-256 per array; None skips the digest check.

    Returns:
        A summary: counts, per-class counts and digests.

    Raises:
        DataError: naming the array, what was expected and what was found.
    """
    missing = sorted(set(FILES) - set(arrays))
    if missing:
        raise DataError(f"expected the arrays {sorted(FILES)}, missing {missing}")

    summary: dict[str, object] = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        for name, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
            if array.dtype != np.uint8:
                raise DataError(f"{name}: expected dtype uint8, got {array.dtype}")
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise DataError(
                f"{split}_images: expected shape (N, 28, 28), got {images.shape}"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{split}_labels: expected one label per image ({images.shape[0]}), "
                f"got shape {labels.shape}"
            )
        if counts is not None and images.shape[0] != counts[split]:
            raise DataError(
                f"{split}_images: expected {counts[split]} images, "
                f"got {images.shape[0]}"
            )
        if labels.size and labels.max() >= NUM_CLASSES:
            raise DataError(
                f"{split}_labels: expected labels 0 to {NUM_CLASSES - 1}, "
                f"found {int(labels.max())}"
            )
        per_class = np.bincount(labels, minlength=NUM_CLASSES)
        if counts is not None and np.any(per_class != counts[split] // NUM_CLASSES):
            raise DataError(
                f"{split}_labels: expected {counts[split] // NUM_CLASSES} images per "
                f"class, got {per_class.tolist()}"
            )
        summary[split] = {
            "images": int(images.shape[0]),
            "per_class": per_class.tolist(),
        }

    found = {name: sha256(array) for name, array in arrays.items()}
    if digests is not None:
        for name, expected in digests.items():
            if found[name] != expected:
                raise DataError(
                    f"{name}: SHA-256 of the decoded array is {found[name]}, "
                    f"expected {expected}"
                )
    summary["sha256"] = found
    return summary


def find_mirror(directories: list[str]) -> Path | None:
    """Return the first directory holding all four IDX files, or None."""
    for directory in directories:
        path = Path(directory).expanduser()
        if all((path / name).is_file() for name, _ in FILES.values()):
            return path
    return None


def load_mirror(directory: str | os.PathLike[str]) -> Dataset:
    """Decode the four IDX `.gz` files in `directory`."""
    directory = Path(directory)
    arrays = {
        key: read_idx(directory / name, expected_magic=magic)
        for key, (name, magic) in FILES.items()
    }
    return Dataset(arrays, {"kind": "mirror", "location": str(directory.resolve())})


def load_tfds(data_dir: str | None) -> Dataset:
    """Load (downloading if needed) Fashion-MNIST through tensorflow-datasets."""
    import tensorflow_datasets as tfds

    arrays = {}
    for split in ("train", "test"):
        images, labels = tfds.as_numpy(
            tfds.load(
                "fashion_mnist",
                split=split,
                batch_size=-1,
                as_supervised=True,
                data_dir=data_dir,
                shuffle_files=False,
            )
        )
        arrays[f"{split}_images"] = images.reshape(-1, *IMAGE_SHAPE).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    return Dataset(arrays, {"kind": "tfds", "location": data_dir or "default"})


def fetch(config: FetchConfig) -> Dataset:
    """Get Fashion-MNIST from the preferred available source.

    The mirror directories are searched first (`fetch.mirror_dir`, then
    `fetch.mirror_dirs`); TFDS is tried before a found mirror only when
    `fetch.prefer` is `tfds`.

    Raises:
        DataError: when no source works; the message says how to get the data.
    """
    directories = [config.mirror_dir] if config.mirror_dir else []
    directories += list(config.mirror_dirs)
    if config.mirror_dir and find_mirror([config.mirror_dir]) is None:
        raise DataError(
            f"fetch.mirror_dir: expected a directory holding "
            f"{', '.join(name for name, _ in FILES.values())}; "
            f"{config.mirror_dir!r} does not"
        )
    mirror = find_mirror(directories)

    attempts = []
    if config.prefer == "tfds" and config.allow_download:
        attempts.append("tfds")
    if mirror is not None:
        attempts.append("mirror")
    if config.prefer != "tfds" and config.allow_download:
        attempts.append("tfds")
    if not attempts:
        raise DataError(
            f"no source available (searched {directories}, download disabled). "
            + HOW_TO_GET
        )

    errors = []
    for kind in attempts:
        if kind == "mirror":
            log.info("reading the IDX files in %s", mirror)
            return load_mirror(mirror)
        try:
            log.info("loading through tensorflow-datasets")
            return load_tfds(config.tfds_data_dir)
        except Exception as error:  # noqa: BLE001 - any failure falls back
            errors.append(f"tfds: {error}")
            log.warning(
                "tensorflow-datasets failed (%s); trying the next source", error
            )
    raise DataError(
        f"no source worked (searched {directories}; {'; '.join(errors)}). " + HOW_TO_GET
    )
