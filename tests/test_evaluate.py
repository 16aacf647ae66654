"""Test-set scoring: loss, confusion matrix, per-class accuracy, metrics files."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import logging
import math

import numpy as np
import pytest
from conftest import TINY, compose_config

from fmnist import CLASS_NAMES
from fmnist.data.prepare import Prepared
from fmnist.evaluate import (
    confusion_matrix,
    cross_entropy,
    evaluate_variant,
    predict_logits,
    score,
)
from fmnist.io import write_json
from fmnist.training import write_history

log = logging.getLogger(__name__)

lowlevel_train = importlib.import_module("fmnist.lowlevel.train")


def direct_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean of `log(sum_j exp(z_j)) - z_y`, each row summed with `math.fsum`."""
    total = []
    for row, label in zip(np.asarray(logits, dtype=np.float64), labels, strict=True):
        top = max(row)
        log_sum = top + math.log(math.fsum(math.exp(z - top) for z in row))
        total.append(log_sum - row[label])
    return math.fsum(total) / len(total)


def test_cross_entropy_matches_a_direct_float64_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 4.0, size=(200, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=200)

    got = cross_entropy(logits, labels)

    assert got == pytest.approx(direct_cross_entropy(logits, labels), rel=1e-12)
    # The plain textbook form agrees where it does not overflow.
    probs = np.exp(logits.astype(np.float64))
    probs /= probs.sum(axis=1, keepdims=True)
    textbook = -np.log(probs[np.arange(200), labels]).mean()
    assert got == pytest.approx(textbook, rel=1e-10)


def test_cross_entropy_with_saturated_logits_is_large_and_finite():
    logits = np.array(
        [
            [1000.0, -1000.0, 0.0],  # confidently wrong: costs 2000
            [1e4, 0.0, -1e4],  # confidently right: costs ~0
            [1e4, 1e4, 0.0],  # a tie between two classes: costs log 2
        ],
        dtype=np.float32,
    )
    labels = np.array([1, 0, 1])
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        naive = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        naive_loss = -np.log(naive[np.arange(3), labels]).mean()
    # The case is a real one: the textbook form breaks here.
    assert not np.isfinite(naive_loss)

    got = cross_entropy(logits, labels)

    assert math.isfinite(got)
    assert got == pytest.approx((2000.0 + 0.0 + math.log(2.0)) / 3, rel=1e-12)
    assert got == pytest.approx(direct_cross_entropy(logits, labels), rel=1e-12)


def loop_confusion(labels, predicted, n_classes: int) -> np.ndarray:
    """Confusion counts, one image at a time."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for actual, guess in zip(labels, predicted, strict=True):
        matrix[actual, guess] += 1
    return matrix


def test_confusion_matrix_matches_a_loop():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=500)
    predicted = np.where(rng.uniform(size=500) < 0.6, labels, rng.integers(0, 10, 500))
    # Class 9 is never predicted: its column must stay zero, not vanish.
    predicted[predicted == 9] = 8

    matrix = confusion_matrix(labels, predicted, 10)

    assert matrix.shape == (10, 10)
    np.testing.assert_array_equal(matrix, loop_confusion(labels, predicted, 10))
    assert matrix[:, 9].sum() == 0
    assert matrix.sum() == 500


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 0, 2]), np.array([1, 1, 2]), 3)
    np.testing.assert_array_equal(matrix, [[0, 2, 0], [0, 0, 0], [0, 0, 1]])


def test_score_gives_per_class_accuracy_by_class_name():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, size=400)
    logits = rng.normal(size=(400, 10))
    # Right for a share of each class that grows with the class index.
    right = rng.uniform(size=400) < (labels + 1) / 11
    logits[right, labels[right]] += 10.0
    predicted = logits.argmax(axis=1)

    scores = score(logits, labels)

    assert list(scores["per_class_accuracy"]) == list(CLASS_NAMES)
    for index, name in enumerate(CLASS_NAMES):
        members = labels == index
        expected = (predicted[members] == index).mean()
        assert scores["per_class_accuracy"][name] == pytest.approx(expected, abs=1e-6)
    assert scores["accuracy"] == pytest.approx((predicted == labels).mean())
    assert scores["loss"] == pytest.approx(direct_cross_entropy(logits, labels))
    assert scores["confusion_matrix"] == loop_confusion(labels, predicted, 10).tolist()
    np.testing.assert_array_equal(scores["predicted"], predicted)
    # The classes differ, so a single shared figure would fail the loop above.
    assert len(set(scores["per_class_accuracy"].values())) > 5


def test_score_with_an_absent_class_and_other_class_counts():
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0]])
    labels = np.array([0, 1, 1])

    scores = score(logits, labels)

    # Three classes are named by index; class 2 has no images and scores 0.
    assert scores["per_class_accuracy"] == {"0": 1.0, "1": 0.5, "2": 0.0}
    assert scores["accuracy"] == pytest.approx(2 / 3)


def test_predict_logits_stacks_batches_in_order():
    x = np.random.default_rng(3).normal(size=(23, 4))
    weights = np.random.default_rng(4).normal(size=(4, 3))
    calls = []

    def logits_fn(batch):
        calls.append(len(batch))
        return batch @ weights

    got = predict_logits(logits_fn, x, batch_size=10)

    assert calls == [10, 10, 3]
    np.testing.assert_allclose(got, x @ weights)


def test_evaluate_variant_scores_the_saved_model(tmp_path):
    config = compose_config(*TINY)
    rng = np.random.default_rng(5)
    data = Prepared(
        x_train=rng.uniform(size=(60, 784)).astype(np.float32),
        y_train=np.arange(60) % 10,
        x_test=rng.uniform(size=(40, 784)).astype(np.float32),
        y_test=np.arange(40) % 10,
        val_index=np.arange(10),
    )
    variant = dataclasses.replace(config.variants["a_softmax"], epochs=1)
    model_dir, metrics_dir = tmp_path / "model", tmp_path / "metrics"
    model_dir.mkdir()
    result = lowlevel_train.train(
        "a_softmax", variant, data, seed=0, jit_compile=False, progress=False
    )
    result.save(model_dir)
    write_json(model_dir / "summary.json", {"epochs": 1, "train_seconds": 0.5})
    write_history(metrics_dir / "history.csv", result.history)

    metrics = evaluate_variant(
        "a_softmax", variant, data, model_dir, metrics_dir, batch_size=16
    )

    # An independent forward pass from the saved arrays.
    with np.load(model_dir / "weights.npz") as state:
        logits = data.x_test @ state["dense0/kernel"] + state["dense0/bias"]
    predicted = logits.argmax(axis=1)
    written = json.loads((metrics_dir / "eval.json").read_text(encoding="utf-8"))
    assert written == metrics
    assert list(written)[:2] == ["accuracy", "loss"]
    assert written["accuracy"] == pytest.approx((predicted == data.y_test).mean())
    assert written["loss"] == pytest.approx(
        direct_cross_entropy(logits, data.y_test), rel=1e-5
    )
    assert written["train_loss"] == pytest.approx(result.history[-1]["train_loss"])
    assert written["trainable_params"] == 7850
    assert "val_accuracy" not in written
    with open(metrics_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["actual", "predicted"]
    assert rows[1:] == [
        [str(a), str(p)] for a, p in zip(data.y_test, predicted, strict=True)
    ]
