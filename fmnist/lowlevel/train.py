"""The low-level training loop: `tf.GradientTape` steps inside `tf.function`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from fmnist.config import VariantConfig
from fmnist.data.prepare import Prepared
from fmnist.lowlevel import model as nn
from fmnist.training import TrainResult, check_finite, make_optimizer

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.npz"


def build(variant: VariantConfig, n_features: int, n_classes: int, seed: int) -> nn.MLP:
    """Build the network a variant describes."""
    return nn.MLP(
        sizes=(n_features, *variant.hidden, n_classes),
        activation=variant.activation,
        init_std=variant.init_std,
        seed=seed,
        batchnorm=variant.batchnorm,
        bn_momentum=variant.bn_momentum,
        bn_epsilon=variant.bn_epsilon,
    )


def train(
    name: str,
    variant: VariantConfig,
    data: Prepared,
    seed: int,
    jit_compile: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train a Part A network on the whole training set, scoring the test set.

    Each epoch records the training cross-entropy with and without the penalty,
    training accuracy, test loss and accuracy, and the absolute-weight statistics.
    With `batch_size` null an epoch is one full-batch step; otherwise it is one
    pass over shuffled mini-batches.

    Raises:
        DivergenceError: when a loss becomes NaN or infinite.
    """
    network = build(variant, data.x_train.shape[1], data.n_classes, seed)
    optimizer = make_optimizer(variant)
    log.info(
        "%s: %d trainable parameters, %d training and %d test images, %d epochs",
        name,
        network.count_trainable(),
        len(data.y_train),
        len(data.y_test),
        variant.epochs,
    )

    x_train = tf.constant(data.x_train)
    y_train = tf.constant(data.y_train.astype(np.int32))
    x_test = tf.constant(data.x_test)
    y_test = tf.constant(data.y_test.astype(np.int32))
    step = _make_step(network, optimizer, variant.l1, variant.l2, jit_compile)
    score = tf.function(
        lambda x, y: _score(network, x, y),
        jit_compile=jit_compile,
        reduce_retracing=True,
    )
    batches = _batches(len(data.y_train), variant.batch_size, seed)

    history = []
    start = time.perf_counter()
    epochs = tqdm(
        range(1, variant.epochs + 1), desc=name, unit="epoch", disable=not progress
    )
    for epoch in epochs:
        train_stats = _run_epoch(step, x_train, y_train, batches(epoch))
        test_loss, test_accuracy = (float(v) for v in score(x_test, y_test))
        stats = {k: float(v) for k, v in nn.weight_stats(network.kernels).items()}
        row = {
            "epoch": epoch,
            "train_loss": train_stats["ce"],
            "train_loss_penalized": train_stats["loss"],
            "train_accuracy": train_stats["accuracy"],
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            **stats,
        }
        check_finite(
            name, epoch, {k: row[k] for k in ("train_loss_penalized", "test_loss")}
        )
        history.append(row)
        epochs.set_postfix(
            loss=f"{row['train_loss']:.4f}", test_acc=f"{test_accuracy:.4f}"
        )
    seconds = time.perf_counter() - start

    def save(directory: Path) -> None:
        state = {key: v.numpy() for key, v in network.named_variables().items()}
        with open(directory / WEIGHTS_FILE, "wb") as handle:
            np.savez(handle, **state)

    return TrainResult(history, network.count_trainable(), seconds, save)


def load_logits_fn(
    directory: Path, variant: VariantConfig, n_features: int, n_classes: int
):
    """Rebuild a saved network and return `(logits_fn, trainable_params)`."""
    network = build(variant, n_features, n_classes, seed=0)
    with np.load(Path(directory) / WEIGHTS_FILE) as state:
        named = network.named_variables()
        missing = set(named) - set(state.files)
        if missing:
            raise ValueError(
                f"{directory / WEIGHTS_FILE}: expected weights {sorted(named)}, "
                f"missing {sorted(missing)}"
            )
        for key, variable in named.items():
            variable.assign(state[key])
    forward = tf.function(lambda x: network(x, training=False))
    return (lambda x: forward(tf.constant(x)).numpy()), network.count_trainable()


def _make_step(network: nn.MLP, optimizer, l1: float, l2: float, jit_compile: bool):
    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = network(x, training=True)
            ce = nn.cross_entropy(logits, y)
            loss = ce + nn.penalty(network.kernels, l1, l2)
        variables = network.trainable_variables
        optimizer.apply_gradients(
            zip(tape.gradient(loss, variables), variables, strict=True)
        )
        return ce, loss, nn.accuracy(logits, y)

    return step


def _score(network: nn.MLP, x, y):
    logits = network(x, training=False)
    return nn.cross_entropy(logits, y), nn.accuracy(logits, y)


def _batches(size: int, batch_size: int | None, seed: int):
    """Return `epoch -> list of index arrays` (None for the full batch)."""
    if batch_size is None or batch_size >= size:
        return lambda epoch: [None]

    def for_epoch(epoch: int):
        order = np.random.default_rng([seed, epoch]).permutation(size)
        return [order[i : i + batch_size] for i in range(0, size, batch_size)]

    return for_epoch


def _run_epoch(step, x, y, batches) -> dict[str, float]:
    totals = {"ce": 0.0, "loss": 0.0, "accuracy": 0.0}
    seen = 0
    for index in batches:
        if index is None:
            xb, yb, count = x, y, int(x.shape[0])
        else:
            xb, yb, count = tf.gather(x, index), tf.gather(y, index), len(index)
        values = step(xb, yb)
        for key, value in zip(totals, values, strict=True):
            totals[key] += float(value) * count
        seen += count
    return {key: value / seen for key, value in totals.items()}
