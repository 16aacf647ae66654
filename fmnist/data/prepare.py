"""Turn the raw arrays into model inputs: flat, scaled, split."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fmnist.config import PrepareConfig
from fmnist.data import DataError


@dataclass
class Prepared:
    """Flattened float32 images in [0, 1] and integer labels.

    `x_train`/`y_train` is the whole training set (Part A trains on it);
    `val_index` marks the images Part B holds out for validation.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    val_index: np.ndarray

    @property
    def n_classes(self) -> int:
        """Number of classes: one more than the largest label of either split."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def fit_split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return (x_fit, y_fit, x_val, y_val): the training set minus validation."""
        mask = np.ones(len(self.y_train), dtype=bool)
        mask[self.val_index] = False
        return (
            self.x_train[mask],
            self.y_train[mask],
            self.x_train[self.val_index],
            self.y_train[self.val_index],
        )

    def save(self, path) -> None:
        """Write the arrays to an uncompressed `.npz` file (fast to load)."""
        with open(path, "wb") as handle:
            np.savez(handle, **self.__dict__)

    @classmethod
    def load(cls, path) -> Prepared:
        """Read what `save` wrote."""
        with np.load(path) as data:
            return cls(**{key: data[key] for key in cls.__dataclass_fields__})


def prepare(
    arrays: Mapping[str, np.ndarray], config: PrepareConfig, seed: int
) -> Prepared:
    """Flatten, scale to [0, 1], subset and split off a seeded validation set.

    Args:
        arrays: the raw uint8 arrays (`train_images`, `train_labels`, ...).
        config: subset sizes and the validation size.
        seed: seeds the subset and split, so they are the same on every run.

    Raises:
        DataError: when the validation set would not leave training images.
    """
    rng = np.random.default_rng(seed)
    train_index = _subset(len(arrays["train_labels"]), config.train_limit, rng)
    test_index = _subset(len(arrays["test_labels"]), config.test_limit, rng)
    if config.val_size >= len(train_index):
        raise DataError(
            f"prepare.val_size: expected fewer than the {len(train_index)} training "
            f"images, got {config.val_size}"
        )
    val_index = np.sort(rng.permutation(len(train_index))[: config.val_size])

    return Prepared(
        x_train=_flatten(arrays["train_images"][train_index]),
        y_train=arrays["train_labels"][train_index].astype(np.int64),
        x_test=_flatten(arrays["test_images"][test_index]),
        y_test=arrays["test_labels"][test_index].astype(np.int64),
        val_index=val_index.astype(np.int64),
    )


def _subset(size: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= size:
        return np.arange(size)
    return np.sort(rng.permutation(size)[:limit])


def _flatten(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0).astype(
        np.float32
    )
