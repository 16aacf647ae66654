"""What every model family shares: divergence checks, results, history files."""

from __future__ import annotations

import csv
import importlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from fmnist.io import atomic_path


class DivergenceError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class TrainResult:
    """A trained model's per-epoch history and a way to save it."""

    history: list[dict[str, float]]
    trainable_params: int
    seconds: float
    save: Callable[[Path], None] = field(repr=False)


def family(name: str) -> ModuleType:
    """Import the package that implements one model family (`lowlevel`, ...)."""
    return importlib.import_module(f"fmnist.{name}")


def make_optimizer(variant):
    """The Keras optimizer a variant names (one of `config.OPTIMIZERS`), at its
    learning rate; both model families train with it."""
    import keras

    classes = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[variant.optimizer](learning_rate=variant.learning_rate)


def check_finite(variant: str, epoch: int, values: dict[str, float]) -> None:
    """Stop training when a loss is NaN or infinite, naming variant and epoch.

    Raises:
        DivergenceError: for the first non-finite value.
    """
    for key, value in values.items():
        if not math.isfinite(value):
            raise DivergenceError(
                f"variant {variant}: {key} became {value} at epoch {epoch}; training "
                "diverged (try a lower learning_rate); no outputs were written"
            )


def write_history(
    path: str | os.PathLike[str], rows: Sequence[dict[str, float]]
) -> None:
    """Write per-epoch rows as CSV (one row per epoch), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({key: _fmt(value) for key, value in row.items()})


def read_history(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Read a history CSV back as numbers."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.8g}"
