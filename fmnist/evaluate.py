"""Test-set scores computed the same way for every model family."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fmnist import CLASS_NAMES


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


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
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
            str(name): round(float(value), 6) for name, value in zip(names, per_class)
        },
        "confusion_matrix": matrix.tolist(),
        "predicted": predicted,
    }
