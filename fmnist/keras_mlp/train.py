"""Keras `fit` with a validation split, per-epoch history and a divergence guard."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from fmnist.config import VariantConfig
from fmnist.data.prepare import Prepared
from fmnist.keras_mlp.model import build, count_trainable
from fmnist.training import DivergenceError, TrainResult, make_optimizer

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
# Batches run per call into the compiled training step. Each batch is still one
# optimizer step, so the weights are those of one batch per call; the Python and
# callback work between calls is paid once per 32 batches instead of per batch.
STEPS_PER_EXECUTION = 32


class _Guard(keras.callbacks.Callback):
    """Stops with a `DivergenceError` naming the epoch when a loss goes NaN/inf,
    and advances one progress bar per epoch."""

    def __init__(self, name: str, epochs: int, progress: bool):
        super().__init__()
        self.variant = name
        self.bar = tqdm(total=epochs, desc=name, unit="epoch", disable=not progress)
        self.failure: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = f"loss became {float(loss)}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key in ("loss", "val_loss"):
            if key in logs and not math.isfinite(float(logs[key])):
                self.failure = self.failure or f"{key} became {float(logs[key])}"
        if self.failure:
            self.model.stop_training = True
            self.bar.close()
            raise DivergenceError(
                f"variant {self.variant}: {self.failure} at epoch {epoch + 1}; "
                "training diverged (try a lower learning_rate); no outputs were written"
            )
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{logs.get('loss', float('nan')):.4f}",
            val_acc=f"{logs.get('val_accuracy', float('nan')):.4f}",
        )

    def on_train_end(self, logs=None):
        self.bar.close()


def train(
    name: str,
    variant: VariantConfig,
    data: Prepared,
    seed: int,
    jit_compile: bool = True,
    progress: bool = True,
    steps_per_execution: int = STEPS_PER_EXECUTION,
) -> TrainResult:
    """Train a Part B network with `fit` on the training split, validating each epoch.

    `steps_per_execution` changes only the speed (see `STEPS_PER_EXECUTION`).

    Raises:
        DivergenceError: when a loss becomes NaN or infinite.
    """
    x_fit, y_fit, x_val, y_val = data.fit_split()
    model = build(variant, data.x_train.shape[1], data.n_classes)
    model.compile(
        optimizer=make_optimizer(variant),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    log.info(
        "%s: %d trainable parameters, %d training and %d validation images, "
        "%d epochs of batch %d",
        name,
        count_trainable(model),
        len(y_fit),
        len(y_val),
        variant.epochs,
        variant.batch_size,
    )

    guard = _Guard(name, variant.epochs, progress)
    start = time.perf_counter()
    fitted = model.fit(
        x_fit,
        y_fit,
        batch_size=variant.batch_size,
        epochs=variant.epochs,
        validation_data=(x_val, y_val),
        shuffle=True,
        verbose=0,
        callbacks=[guard],
    )
    seconds = time.perf_counter() - start
    if guard.failure:
        raise DivergenceError(f"variant {name}: {guard.failure}; training diverged")

    logs = fitted.history
    history = [
        {
            "epoch": epoch + 1,
            "train_loss": float(logs["loss"][epoch]),
            "train_accuracy": float(logs["accuracy"][epoch]),
            "val_loss": float(logs["val_loss"][epoch]),
            "val_accuracy": float(logs["val_accuracy"][epoch]),
        }
        for epoch in range(len(logs["loss"]))
    ]

    def save(directory: Path) -> None:
        model.save(directory / MODEL_FILE)

    return TrainResult(history, count_trainable(model), seconds, save)


def load_logits_fn(
    directory: Path, variant: VariantConfig, n_features: int, n_classes: int
):
    """Load a saved model and return `(logits_fn, trainable_params)`."""
    model = keras.models.load_model(Path(directory) / MODEL_FILE, compile=False)
    if model.input_shape[-1] != n_features or model.output_shape[-1] != n_classes:
        raise ValueError(
            f"{directory / MODEL_FILE}: expected {n_features} inputs and {n_classes} "
            f"outputs, got {model.input_shape[-1]} and {model.output_shape[-1]}"
        )

    def logits(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x, training=False))

    return logits, count_trainable(model)
