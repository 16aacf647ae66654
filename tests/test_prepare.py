"""Preparation: flat float32 pixels in [0, 1], subsets and a seeded validation
split whose sizes come from the configuration."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.config import PrepareConfig
from fmnist.data import DataError
from fmnist.data.prepare import Prepared, prepare
from fmnist.seeding import derive_seed

TRAIN, TEST = 300, 80


def raw_arrays() -> dict[str, np.ndarray]:
    """Raw arrays where every pixel of an image encodes its label and position,
    so a prepared row can be traced back to its image and label."""
    arrays = {}
    for split, count in (("train", TRAIN), ("test", TEST)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels * 20
        images[:, 0, 1] = np.arange(count) % 256
        images[:, 27, 27] = 255
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    return arrays


def test_flattens_to_784_float32_in_unit_range():
    arrays = raw_arrays()

    data = prepare(arrays, PrepareConfig(val_size=50), seed=1)

    for x, images in ((data.x_train, "train_images"), (data.x_test, "test_images")):
        assert x.dtype == np.float32
        assert x.shape == (len(arrays[images]), 784)
        assert x.min() == 0.0 and x.max() == 1.0
        expected = arrays[images].reshape(len(x), 784).astype(np.float32) / 255
        np.testing.assert_array_equal(x, expected)
    assert data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.y_test, arrays["test_labels"])


def test_sizes_come_from_the_config():
    config = PrepareConfig(val_size=40, train_limit=120, test_limit=30)

    data = prepare(raw_arrays(), config, seed=3)
    x_fit, y_fit, x_val, y_val = data.fit_split()

    assert data.x_train.shape == (120, 784) and data.y_train.shape == (120,)
    assert data.x_test.shape == (30, 784) and data.y_test.shape == (30,)
    assert len(data.val_index) == 40 and len(np.unique(data.val_index)) == 40
    assert data.val_index.min() >= 0 and data.val_index.max() < 120
    assert len(x_fit) == len(y_fit) == 80 and len(x_val) == len(y_val) == 40
    # Fit and validation rows partition the training subset.
    rows = {row.tobytes() for row in data.x_train}
    assert {row.tobytes() for row in np.concatenate([x_fit, x_val])} == rows


def test_subsets_keep_images_with_their_labels():
    data = prepare(raw_arrays(), PrepareConfig(20, 120, 30), seed=5)

    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        np.testing.assert_array_equal(np.rint(x[:, 0] * 255), y * 20)
    # A subset is a sample, not the first images.
    positions = np.rint(data.x_train[:, 1] * 255)
    assert positions.max() >= 120


def test_same_seed_same_split():
    config = PrepareConfig(val_size=60, train_limit=200, test_limit=50)

    first = prepare(raw_arrays(), config, seed=11)
    second = prepare(raw_arrays(), config, seed=11)

    for key in ("x_train", "y_train", "x_test", "y_test", "val_index"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))


def test_different_seed_different_split():
    config = PrepareConfig(val_size=60, train_limit=200, test_limit=50)

    first = prepare(raw_arrays(), config, seed=11)
    second = prepare(raw_arrays(), config, seed=12)

    assert not np.array_equal(first.val_index, second.val_index)
    assert not np.array_equal(first.x_train, second.x_train)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(42, "prepare") == derive_seed(42, "prepare")
    assert derive_seed(42, "prepare") != derive_seed(43, "prepare")
    assert derive_seed(42, "prepare") != derive_seed(42, "b_h4")


@pytest.mark.parametrize("val_size", [TRAIN, TRAIN + 1, 10**6])
def test_validation_set_must_leave_training_images(val_size):
    with pytest.raises(DataError) as error:
        prepare(raw_arrays(), PrepareConfig(val_size=val_size), seed=0)

    message = str(error.value)
    assert "prepare.val_size" in message
    assert str(val_size) in message and str(TRAIN) in message


def test_validation_set_counts_against_the_subset():
    with pytest.raises(DataError, match="prepare.val_size"):
        prepare(raw_arrays(), PrepareConfig(val_size=100, train_limit=100), seed=0)


def test_saved_and_loaded_data_are_equal(tmp_path):
    data = prepare(raw_arrays(), PrepareConfig(30, 100, 20), seed=2)

    data.save(tmp_path / "dataset.npz")
    loaded = Prepared.load(tmp_path / "dataset.npz")

    for key in ("x_train", "y_train", "x_test", "y_test", "val_index"):
        original, restored = getattr(data, key), getattr(loaded, key)
        assert restored.dtype == original.dtype
        np.testing.assert_array_equal(restored, original)
