"""Test-set scores computed the same way for every model family."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES
from fmnist.io import atomic_path, read_json, write_json
from fmnist.training import family, read_history

log = logging.getLogger(__name__)


def predict_logits(
    logits_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int
) -> np.ndarray:
    """Run `logits_fn` over `x` in batches and stack the results."""
    parts = [logits_fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts, axis=0)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy from logits, in float64 log-sum-exp form."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def confusion_matrix(
    labels: np.ndarray, predicted: np.ndarray, n_classes: int
) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )


def score(logits: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """Loss, accuracy, per-class accuracy and confusion matrix of `logits`."""
    n_classes = logits.shape[1]
    predicted = logits.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, n_classes)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    names = CLASS_NAMES if n_classes == len(CLASS_NAMES) else range(n_classes)
    return {
        "accuracy": float((predicted == labels).mean()),
        "loss": cross_entropy(logits, labels),
        "per_class_accuracy": {
            str(name): round(float(value), 6)
            for name, value in zip(names, per_class, strict=True)
        },
        "confusion_matrix": matrix.tolist(),
        "predicted": predicted,
    }


def evaluate_variant(
    name: str,
    variant,
    data,
    model_dir: Path,
    metrics_dir: Path,
    batch_size: int,
) -> dict[str, object]:
    """Score a saved variant on the test set and write its metrics files.

    Writes `eval.json` (test accuracy and loss first, then final training and
    validation figures, parameter count, epochs, training seconds and per-class
    accuracy) and `predictions.csv` (true and predicted class per test image).

    Returns:
        The metrics written to `eval.json`.
    """
    logits_fn, params = family(variant.family).load_logits_fn(
        model_dir, variant, data.x_train.shape[1], data.n_classes
    )
    scores = score(predict_logits(logits_fn, data.x_test, batch_size), data.y_test)
    final = read_history(metrics_dir / "history.csv")[-1]
    summary = read_json(model_dir / "summary.json")

    metrics = {
        "accuracy": scores["accuracy"],
        "loss": scores["loss"],
        "train_accuracy": final["train_accuracy"],
        "train_loss": final["train_loss"],
    }
    if "val_accuracy" in final:
        metrics |= {
            "val_accuracy": final["val_accuracy"],
            "val_loss": final["val_loss"],
        }
    metrics |= {
        "trainable_params": params,
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "per_class_accuracy": scores["per_class_accuracy"],
    }

    write_json(metrics_dir / "eval.json", metrics)
    with atomic_path(metrics_dir / "predictions.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["actual", "predicted"])
            pairs = zip(data.y_test.tolist(), scores["predicted"].tolist(), strict=True)
            writer.writerows(pairs)
    log.info(
        "%s: test accuracy %.4f, loss %.4f", name, metrics["accuracy"], metrics["loss"]
    )
    return metrics
