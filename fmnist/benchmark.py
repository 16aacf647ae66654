"""Speed of this machine and of the pipeline's training, as ratios, in one run.

Every rate is set against the float32 matrix-product rate NumPy reaches here, so
numbers from different machines (or from a busy and an idle one) compare as
ratios. Sections:

1. Matrix products: NumPy's BLAS, then TensorFlow eager, in `tf.function` and
   with XLA (`jit_compile=True`).
2. Training throughput of the real training functions on synthetic arrays of
   the real size, the warm-up epoch excluded, with XLA off and on.
3. Where one epoch's time goes: matrix products, element-wise work and the
   loss, the optimizer, scoring, and the rest (framework, data, Python).
4. Pipeline overhead: Python, TensorFlow and Hydra start-up, a no-op
   `dvc repro`, and start-up set against each variant's recorded training time.

Usage:
    python -m fmnist.benchmark [--quick] [--skip-dvc] [--json PATH] [--root DIR]

Timings on a machine shared with other work are noisy; the load average at the
start and end of the run is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from fmnist.config import Config, VariantConfig, load_config
from fmnist.data.prepare import Prepared
from fmnist.io import atomic_path
from fmnist.training import make_optimizer

log = logging.getLogger(__name__)

N_FEATURES = 784
N_CLASSES = 10


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is and how often it is repeated (best of).

    `FULL` matches the pipeline's data; `QUICK` only checks that everything runs.
    """

    matmul: int
    matmul_repeats: int
    n_train: int
    n_test: int
    n_val: int
    steady_epochs: int
    batch_sizes: tuple[int, ...]
    # A full-batch step takes about a second, a mini-batch step milliseconds.
    full_batch_repeats: int
    mini_batch_repeats: int
    startup_repeats: int


FULL = Sizes(
    matmul=2048,
    matmul_repeats=5,
    n_train=60_000,
    n_test=10_000,
    n_val=6_000,
    steady_epochs=3,
    batch_sizes=(256, 128, 32),
    full_batch_repeats=3,
    mini_batch_repeats=20,
    startup_repeats=3,
)
QUICK = Sizes(
    matmul=512,
    matmul_repeats=2,
    n_train=1_200,
    n_test=300,
    n_val=200,
    steady_epochs=2,
    batch_sizes=(256, 32),
    full_batch_repeats=1,
    mini_batch_repeats=2,
    startup_repeats=1,
)


# --- FLOP counting -------------------------------------------------------------


def matmul_flops(m: int, k: int, n: int) -> int:
    """Floating-point operations of an (m, k) @ (k, n) product: `2*m*k*n`."""
    return 2 * m * k * n


def forward_flops(sizes: Sequence[int], batch: int) -> int:
    """Matrix-product FLOPs of one forward pass of a dense network.

    With layer widths `sizes = (s0, s1, ..., sL)` and `batch` rows, layer `l`
    multiplies (batch, s[l-1]) by (s[l-1], s[l]):

        forward = sum over l of 2 * batch * s[l-1] * s[l]

    Biases, activations and the softmax are element-wise and not counted.
    """
    _check_sizes(sizes)
    return sum(
        matmul_flops(batch, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    )


def train_step_flops(sizes: Sequence[int], batch: int) -> int:
    """Matrix-product FLOPs of one training step (forward and backward) of a batch.

    Backward needs, per layer, the weight gradient `x.T @ g` and the input
    gradient `g @ W.T`, each as costly as the forward product; the first layer's
    input gradient (with respect to the pixels) is never computed:

        step = 3 * forward - 2 * batch * s0 * s1
    """
    return 3 * forward_flops(sizes, batch) - matmul_flops(batch, sizes[0], sizes[1])


def epoch_flops(sizes: Sequence[int], n_train: int, n_eval: int) -> int:
    """FLOPs of one epoch: a training step over `n_train` images (in any number
    of batches: the count is linear in the batch) plus a forward pass over the
    `n_eval` images scored every epoch (test set in Part A, validation in B)."""
    return train_step_flops(sizes, n_train) + forward_flops(sizes, n_eval)


def gflops_rate(flops: float, seconds: float) -> float:
    """GFLOP/s of `flops` done in `seconds`."""
    if not seconds > 0:
        raise ValueError(f"seconds: expected a positive duration, got {seconds}")
    return flops / seconds / 1e9


def layer_sizes(variant: VariantConfig) -> tuple[int, ...]:
    """Layer widths of a variant's network: pixels, hidden layers, classes."""
    return (N_FEATURES, *variant.hidden, N_CLASSES)


def _check_sizes(sizes: Sequence[int]) -> None:
    if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
        raise ValueError(
            f"sizes: expected at least two positive layer widths, got {list(sizes)}"
        )


# --- timing helpers ------------------------------------------------------------


def best_of_each(
    calls: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Fastest wall time of each call over `repeats` rounds, after `warmup`
    untimed rounds.

    The calls take turns within each round, so on a machine whose load comes and
    goes every one of them meets the same quiet spells, and their ratios hold.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    best = dict.fromkeys(calls, math.inf)
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


# --- 1. matrix products --------------------------------------------------------


def blas_info() -> dict[str, Any]:
    """Which BLAS NumPy calls and which kernel it runs, as far as can be told.

    threadpoolctl reads the kernel OpenBLAS chose at run time; without it, only
    NumPy's build configuration is known. `OPENBLAS_CORETYPE` (which forces a
    kernel) is reported as found, never changed.
    """
    info: dict[str, Any] = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(
            source="numpy.show_config; install threadpoolctl for the run-time kernel",
            library=blas.get("name"),
            version=blas.get("version"),
            kernel="unknown",
            build=blas.get("openblas configuration"),
            threads=None,
        )
        return info
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        info.update(source="threadpoolctl", library="none found", kernel="unknown")
        return info
    pool = pools[0]
    info.update(
        source="threadpoolctl",
        library=pool.get("internal_api"),
        version=pool.get("version"),
        kernel=pool.get("architecture", "unknown"),
        threads=pool.get("num_threads"),
    )
    return info


def bench_matmul(n: int, repeats: int) -> list[dict[str, Any]]:
    """Best-of-`repeats` float32 (n, n) @ (n, n) with NumPy and TensorFlow.

    Every row carries its GFLOP/s and its ratio to NumPy's rate. TensorFlow's
    results are copied back to NumPy, as a caller would, to be sure they are done.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    graph = tf.function(tf.matmul)
    xla = tf.function(tf.matmul, jit_compile=True)
    candidates = {
        "numpy a @ b": lambda: a @ b,
        "tf.matmul eager": lambda: tf.matmul(ta, tb).numpy(),
        "tf.function": lambda: graph(ta, tb).numpy(),
        "tf.function jit_compile": lambda: xla(ta, tb).numpy(),
    }
    flops = matmul_flops(n, n, n)
    rows = [
        {"what": what, "seconds": seconds, "gflops": gflops_rate(flops, seconds)}
        for what, seconds in best_of_each(candidates, repeats).items()
    ]
    return with_ratios(rows, rows[0]["gflops"])


def with_ratios(rows: list[dict[str, Any]], reference: float) -> list[dict[str, Any]]:
    """Add `ratio` (the row's GFLOP/s over `reference`) to every row with a rate."""
    for row in rows:
        rate = row.get("gflops")
        row["ratio"] = None if rate is None else rate / reference
    return rows


# --- 2. training throughput ----------------------------------------------------


def synthetic_data(n_train: int, n_test: int, n_val: int, seed: int = 0) -> Prepared:
    """Random images and labels shaped as the prepared data set.

    Speed does not depend on the pixel values, so uniform noise in [0, 1) serves;
    `n_val` of the training images are held out as Part B's validation set.
    """
    if not 0 < n_val < n_train:
        raise ValueError(
            f"n_val: expected between 1 and n_train - 1 ({n_train - 1}), got {n_val}"
        )
    rng = np.random.default_rng(seed)
    return Prepared(
        x_train=rng.random((n_train, N_FEATURES), dtype=np.float32),
        y_train=rng.integers(0, N_CLASSES, n_train).astype(np.int64),
        x_test=rng.random((n_test, N_FEATURES), dtype=np.float32),
        y_test=rng.integers(0, N_CLASSES, n_test).astype(np.int64),
        val_index=np.sort(rng.permutation(n_train)[:n_val]).astype(np.int64),
    )


def epoch_images(variant: VariantConfig, data: Prepared) -> tuple[int, int]:
    """(images trained on, images scored) in one epoch of a variant's family.

    Part A trains on the whole training set and scores the test set each epoch;
    Part B trains on the training set minus validation and scores validation.
    """
    if variant.family == "lowlevel":
        return len(data.y_train), len(data.y_test)
    n_val = len(data.val_index)
    return len(data.y_train) - n_val, n_val


class EpochClock:
    """Stands in for a training loop's progress bar: draws nothing, and notes
    the wall and CPU time when it is made and at the end of every epoch.

    Both training loops report each finished epoch to their bar (the low-level
    loop by iterating over it, the Keras guard by `update`), so the real
    functions can be timed epoch by epoch without changing them.
    """

    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable
        self.stamps = [(time.perf_counter(), time.process_time())]

    def __iter__(self):
        for item in self.iterable:
            yield item
            self._stamp()

    def update(self, n: int = 1) -> None:
        """Note the end of an epoch (the Keras guard's call)."""
        self._stamp()

    def set_postfix(self, *args, **kwargs) -> None:
        """Accept the loop's figures and show nothing."""

    def close(self) -> None:
        """Nothing to close."""

    def _stamp(self) -> None:
        self.stamps.append((time.perf_counter(), time.process_time()))


@dataclass(frozen=True)
class Run:
    """One call of a training function: wall and CPU seconds of each epoch, and
    whether Keras refused XLA."""

    epoch_seconds: list[float]
    epoch_cpu_seconds: list[float]
    jit_fell_back: bool
    # Batches per call into Keras' compiled step; None for the low-level loop.
    steps_per_call: int | None


def time_training(
    name: str,
    variant: VariantConfig,
    data: Prepared,
    seed: int,
    jit_compile: bool,
    steady_epochs: int,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time a variant's real training function; one row of the throughput table.

    `options` go to the training function as keyword arguments (Keras'
    `steps_per_execution`, to time it against its default).

    Trains for `1 + steady_epochs` epochs, seeded as the train stage does, and
    times each epoch. The first (tracing, compilation) is reported apart; the
    others give the median epoch (`epoch_seconds`, which the rates use) and the
    fastest one. CPU seconds (all threads) are reported beside wall seconds: on
    a shared machine they vary less, and their ratio shows how many cores worked.
    """
    if steady_epochs < 1:
        raise ValueError(
            f"steady_epochs: expected a positive integer, got {steady_epochs}"
        )
    options = dict(options or {})
    run = _train_once(
        name, variant, data, seed, jit_compile, 1 + steady_epochs, options
    )
    steady = run.epoch_seconds[1:]
    per_epoch = statistics.median(steady)

    n_train, n_eval = epoch_images(variant, data)
    flops = epoch_flops(layer_sizes(variant), n_train, n_eval)
    return {
        "variant": name,
        "batch": variant.batch_size or "full",
        "jit": jit_compile,
        "jit_fell_back": run.jit_fell_back,
        "steps_per_call": run.steps_per_call,
        "images": n_train,
        "eval_images": n_eval,
        "first_epoch_seconds": run.epoch_seconds[0],
        "steady_epochs": steady_epochs,
        "epoch_seconds": per_epoch,
        "best_epoch_seconds": min(steady),
        "epoch_cpu_seconds": statistics.median(run.epoch_cpu_seconds[1:]),
        "all_epoch_seconds": run.epoch_seconds,
        "images_per_second": n_train / per_epoch,
        "gflops": gflops_rate(flops, per_epoch),
    }


def _train_once(
    name: str,
    variant: VariantConfig,
    data: Prepared,
    seed: int,
    jit_compile: bool,
    epochs: int,
    options: dict[str, Any],
) -> Run:
    """Train for `epochs` epochs as the train stage does, timing every epoch.

    Keras turns `jit_compile` off, with a warning, when op determinism is on (as
    the train stage sets it); the warning is caught so the table can say so.

    Raises:
        RuntimeError: when the training module no longer reports its epochs
            through a progress bar named `tqdm`, so epochs cannot be timed.
    """
    from fmnist.seeding import seed_everything
    from fmnist.training import family

    train = family(variant.family).train
    module = sys.modules[train.__module__]
    if not hasattr(module, "tqdm"):
        raise RuntimeError(
            f"{module.__name__}: expected a progress bar named 'tqdm' to time "
            "epochs by, found none"
        )
    clocks: list[EpochClock] = []

    def make_clock(*args, **kwargs) -> EpochClock:
        clocks.append(EpochClock(*args, **kwargs))
        return clocks[-1]

    _clear_session()
    seed_everything(seed)
    # The training function is timed as it is: only its progress bar is swapped
    # for a clock, and put back whatever happens.
    bar = module.tqdm
    module.tqdm = make_clock
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(
                name,
                replace(variant, epochs=epochs),
                data,
                seed,
                jit_compile=jit_compile,
                progress=True,
                **options,
            )
    finally:
        module.tqdm = bar
    stamps = clocks[0].stamps if len(clocks) == 1 else []
    if len(stamps) != epochs + 1:
        raise RuntimeError(
            f"{module.__name__}: expected one progress bar reporting {epochs} "
            f"epochs, got {len(clocks)} bars and {max(len(stamps) - 1, 0)} epochs"
        )
    pairs = list(zip(stamps[:-1], stamps[1:], strict=True))
    return Run(
        epoch_seconds=[end[0] - start[0] for start, end in pairs],
        epoch_cpu_seconds=[end[1] - start[1] for start, end in pairs],
        jit_fell_back=any("jit_compile" in str(w.message) for w in caught),
        steps_per_call=options.get(
            "steps_per_execution", getattr(module, "STEPS_PER_EXECUTION", None)
        ),
    )


def bench_training(
    config: Config, data: Prepared, sizes: Sizes, reference: float
) -> list[dict[str, Any]]:
    """Throughput rows for Part A (a_arch_b, a_softmax) and Part B (b_h4).

    a_arch_b and b_h4 at their configured batch run with XLA off and on; b_h4
    also runs one batch per call into Keras' step (against the pipeline's
    several) and at the other batch sizes in `sizes`. The rows matching what the
    pipeline runs (configured batch and `train.jit_compile`) are marked.
    """
    pipeline_jit = config.train.jit_compile
    plan: list[tuple[str, VariantConfig, bool, dict[str, Any]]] = []
    for name in ("a_arch_b", "a_softmax"):
        variant = _variant(config, name)
        jits = (False, True) if name == "a_arch_b" else (pipeline_jit,)
        plan += [(name, variant, jit, {}) for jit in jits]
    b_h4 = _variant(config, "b_h4")
    plan += [("b_h4", b_h4, jit, {}) for jit in (False, True)]
    plan.append(("b_h4", b_h4, pipeline_jit, {"steps_per_execution": 1}))
    for batch in sizes.batch_sizes:
        if batch != b_h4.batch_size:
            plan.append(("b_h4", replace(b_h4, batch_size=batch), pipeline_jit, {}))

    rows = []
    for name, variant, jit, options in plan:
        log.info(
            "timing %s, batch %s, jit_compile %s %s",
            name,
            variant.batch_size or "full",
            jit,
            options or "",
        )
        row = time_training(
            name, variant, data, config.seed, jit, sizes.steady_epochs, options
        )
        configured = config.variants[name].batch_size
        row["pipeline"] = (
            jit == pipeline_jit and variant.batch_size == configured and not options
        )
        rows.append(row)
    return with_ratios(rows, reference)


def _variant(config: Config, name: str) -> VariantConfig:
    if name not in config.variants:
        raise KeyError(
            f"variants.{name}: the benchmark times this variant; expected it in "
            f"params.yaml, found only {sorted(config.variants)}"
        )
    return config.variants[name]


def _clear_session() -> None:
    """Drop Keras' global state between runs, so one run does not slow the next."""
    import keras

    keras.utils.clear_session()


# --- 3. where an epoch's time goes ---------------------------------------------


def step_breakdown(
    name: str,
    variant: VariantConfig,
    data: Prepared,
    seed: int,
    epoch_seconds: float,
    repeats: int,
) -> list[dict[str, Any]]:
    """Split one epoch's time into matrix products, element-wise work and loss,
    optimizer, scoring, and the rest (framework, data pipeline, Python).

    One training step of the variant's real network and optimizer is timed in
    `tf.function` three ways: the forward and backward matrix products alone
    (same shapes), the whole gradient, and the optimizer update alone; then a
    forward pass over the images scored each epoch. Each is the best of `repeats`
    calls (taking turns), scaled to one epoch; "rest" is `epoch_seconds` minus
    all of them.
    """
    import tensorflow as tf

    batch = variant.batch_size or len(data.y_train)
    n_train, n_eval = epoch_images(variant, data)
    batch = min(batch, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    model, loss_fn, optimizer = _network(variant, seed)
    weights = model.trainable_variables
    kernels = [w for w in weights if len(w.shape) == 2]

    x = tf.constant(data.x_train[:batch])
    y = tf.constant(data.y_train[:batch].astype(np.int32))
    # Scoring runs in batches of the training batch size, as Keras validates.
    lowlevel = variant.family == "lowlevel"
    scored = data.x_test if lowlevel else data.x_train[data.val_index]
    eval_chunks = [
        tf.constant(scored[i : i + batch]) for i in range(0, len(scored), batch)
    ]

    @tf.function
    def gradient(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(model(x, training=True), y)
        return tape.gradient(loss, weights)

    grads = gradient(x, y)
    optimizer.build(weights)
    apply = tf.function(
        lambda g: optimizer.apply_gradients(zip(g, weights, strict=True))
    )
    forward = tf.function(lambda x: model(x, training=False))
    matmuls = _matmul_replay(batch, kernels)

    per_step = best_of_each(
        {
            "matrix products (forward and backward)": matmuls,
            "gradient": lambda: _done(gradient(x, y)),
            "optimizer update": lambda: _done(apply(grads)),
            "scoring": lambda: _done([forward(chunk) for chunk in eval_chunks]),
        },
        repeats,
    )
    scoring = per_step.pop("scoring")
    rows = _breakdown_rows(name, per_step, steps_per_epoch, scoring, epoch_seconds)
    return [row | {"repeats": repeats} for row in rows]


def _network(variant: VariantConfig, seed: int):
    """The variant's real network, its loss from logits and its optimizer."""
    if variant.family == "lowlevel":
        from fmnist.lowlevel import model as nn
        from fmnist.lowlevel.train import build

        network = build(variant, N_FEATURES, N_CLASSES, seed)

        def loss(logits, labels):
            return nn.cross_entropy(logits, labels) + nn.penalty(
                network.kernels, variant.l1, variant.l2
            )

        return network, loss, make_optimizer(variant)

    import keras

    from fmnist.keras_mlp.model import build

    network = build(variant, N_FEATURES, N_CLASSES)
    entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss(logits, labels):
        return entropy(labels, logits) + sum(network.losses)

    return network, loss, make_optimizer(variant)


def _matmul_replay(batch: int, kernels: list) -> Callable[[], Any]:
    """A call that runs only the matrix products of one training step.

    For each layer: the forward product, the weight gradient and (except for
    the first layer) the input gradient, on random tensors of the real shapes.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    inputs = [
        tf.constant(rng.random((batch, int(k.shape[0])), dtype=np.float32))
        for k in kernels
    ]
    upstream = [
        tf.constant(rng.random((batch, int(k.shape[1])), dtype=np.float32))
        for k in kernels
    ]

    products = []
    for index, (x, g, w) in enumerate(zip(inputs, upstream, kernels, strict=True)):
        products.append((x, w, {}))
        products.append((x, g, {"transpose_a": True}))
        if index:
            products.append((g, w, {"transpose_b": True}))

    @tf.function
    def replay():
        # One after another, as in a real step: run side by side, independent
        # products would compete for the same two cores and look slower.
        out = []
        for a, b, flags in products:
            with tf.control_dependencies(out[-1:]):
                out.append(tf.matmul(a, b, **flags))
        return out

    return lambda: _done(replay())


def _done(tensors) -> None:
    """Wait for results by reading one element of each back to NumPy."""
    import tensorflow as tf

    for tensor in tf.nest.flatten(tensors):
        if tensor is not None:
            np.asarray(tf.reshape(tensor, [-1])[:1])


def _breakdown_rows(
    name: str,
    per_step: dict[str, float],
    steps_per_epoch: int,
    scoring: float,
    epoch_seconds: float,
) -> list[dict[str, Any]]:
    matmul = per_step["matrix products (forward and backward)"]
    parts = {
        "matrix products (forward and backward)": matmul,
        # Negative only when noise made the gradient look cheaper than its parts.
        "element-wise work and loss": per_step["gradient"] - matmul,
        "optimizer update": per_step["optimizer update"],
    }
    epoch_parts = {key: value * steps_per_epoch for key, value in parts.items()}
    epoch_parts["scoring forward pass"] = scoring
    # Whatever the parts do not explain: Keras' or the loop's own work per step,
    # the data pipeline, metrics, Python, and (on a busy machine) waiting.
    epoch_parts["rest: framework, data, metrics, Python"] = epoch_seconds - sum(
        epoch_parts.values()
    )
    return [
        {
            "variant": name,
            "part": part,
            "steps": steps_per_epoch,
            "epoch_seconds": seconds,
            "share": seconds / epoch_seconds,
        }
        for part, seconds in epoch_parts.items()
    ]


# --- 4. pipeline overhead ------------------------------------------------------


STARTUP_COMMANDS = {
    "python": ["-c", "pass"],
    "import tensorflow": ["-c", "import tensorflow"],
    "import training code (TF, Keras)": [
        "-c",
        "import fmnist.lowlevel, fmnist.keras_mlp",
    ],
    "stages.train --help (Hydra, config)": ["-m", "stages.train", "--help"],
}


def time_command(args: list[str], cwd: Path, repeats: int) -> float:
    """Best wall time of a command, run `repeats` times in `cwd`.

    Raises:
        RuntimeError: naming the command, its exit code and its error output.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} in {cwd}: expected exit code 0, got "
                f"{done.returncode}: {done.stderr.strip()[-2000:]}"
            )
    return min(times)


def bench_startup(root: Path, repeats: int) -> dict[str, float]:
    """Start-up costs of a stage's process, and their sum as one stage pays it.

    A stage process pays the interpreter, the training code's imports (with
    TensorFlow and Keras) and Hydra's composition of the config; the estimate is
    `imports + help - python`, as both commands include the interpreter.
    """
    seconds = {
        what: time_command([sys.executable, *args], root, repeats)
        for what, args in STARTUP_COMMANDS.items()
    }
    seconds["stage start-up estimate"] = (
        seconds["import training code (TF, Keras)"]
        + seconds["stages.train --help (Hydra, config)"]
        - seconds["python"]
    )
    return seconds


def bench_dvc_noop(root: Path) -> dict[str, Any]:
    """Wall time of a no-op `dvc repro`, run only when it really is a no-op.

    Without a `dvc.lock`, or when `dvc status` reports changed stages, nothing
    is reproduced (a real run could take hours) and the reason is returned.
    """
    lock = root / "dvc.lock"
    if not lock.exists():
        return {"ran": False, "reason": f"{lock} not found: the pipeline never ran"}
    dvc = [sys.executable, "-m", "dvc"]

    status, status_seconds = _timed_run([*dvc, "status", "--json"], root)
    if status.returncode != 0:
        return {
            "ran": False,
            "reason": f"dvc status exited {status.returncode}: "
            f"{_first_line(status.stderr)}",
        }
    try:
        changed = json.loads(status.stdout or "{}")
    except json.JSONDecodeError:
        return {
            "ran": False,
            "reason": "dvc status --json: expected JSON on stdout, got "
            f"{_first_line(status.stdout)!r}",
        }
    if changed:
        return {
            "ran": False,
            "reason": f"dvc.lock is not up to date ({len(changed)} stages changed, "
            f"e.g. {sorted(changed)[0]}); a no-op repro cannot be timed",
            "status_seconds": status_seconds,
        }

    repro, repro_seconds = _timed_run([*dvc, "repro"], root)
    if repro.returncode != 0:
        return {
            "ran": False,
            "reason": f"dvc repro exited {repro.returncode}: "
            f"{_first_line(repro.stderr)}",
        }
    return {
        "ran": True,
        "status_seconds": status_seconds,
        "repro_seconds": repro_seconds,
    }


def _timed_run(args: list[str], cwd) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command quietly in `cwd`; return it and its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return result, time.perf_counter() - start


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def stage_breakdown(root: Path, config: Config, startup: float) -> list[dict[str, Any]]:
    """Each variant's recorded training time against a stage's start-up cost.

    Reads `train_seconds` from `<metrics>/<variant>/eval.json`; a variant whose
    file is missing gets a row saying so. A variant costs two stage processes
    (train and evaluate), so its start-up overhead is twice `startup`.
    """
    rows = []
    for name in config.variants:
        path = root / config.paths.metrics / name / "eval.json"
        row = {"variant": name, "train_seconds": None, "startup_seconds": 2 * startup}
        if path.exists():
            with open(path, encoding="utf-8") as handle:
                recorded = json.load(handle)
            if "train_seconds" not in recorded:
                raise KeyError(
                    f"{path}: expected a 'train_seconds' key, found {sorted(recorded)}"
                )
            row["train_seconds"] = float(recorded["train_seconds"])
            row["epochs"] = recorded.get("epochs")
        rows.append(row)
    return rows


# --- the table -----------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Align rows under headers: text left, numbers right, None as '-'."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max([len(header), *(len(row[i]) for row in cells)])
        for i, header in enumerate(headers)
    ]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]

    def line(values):
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join(
        [line(headers), line(["-" * w for w in widths])] + [line(row) for row in cells]
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


Column = tuple[str, Callable[[dict[str, Any]], Any]]

MATMUL_COLUMNS: list[Column] = [
    ("what", lambda r: r["what"]),
    ("seconds", lambda r: r["seconds"]),
    ("GFLOP/s", lambda r: r["gflops"]),
    ("x NumPy", lambda r: r["ratio"]),
]
TRAINING_COLUMNS: list[Column] = [
    ("variant", lambda r: r["variant"]),
    ("batch", lambda r: str(r["batch"])),
    (
        "jit",
        lambda r: "on->off" if r["jit_fell_back"] else ("on" if r["jit"] else "off"),
    ),
    ("steps/call", lambda r: r["steps_per_call"] or "-"),
    ("images", lambda r: r["images"]),
    ("1st epoch s", lambda r: r["first_epoch_seconds"]),
    ("timed", lambda r: r["steady_epochs"]),
    ("epoch s", lambda r: r["epoch_seconds"]),
    ("best s", lambda r: r["best_epoch_seconds"]),
    ("CPU s", lambda r: r["epoch_cpu_seconds"]),
    ("images/s", lambda r: r["images_per_second"]),
    ("GFLOP/s", lambda r: r["gflops"]),
    ("x NumPy", lambda r: r["ratio"]),
    ("", lambda r: "*" if r["pipeline"] else ""),
]
BREAKDOWN_COLUMNS: list[Column] = [
    ("variant", lambda r: r["variant"]),
    ("part", lambda r: r["part"]),
    ("steps", lambda r: r["steps"]),
    ("best of", lambda r: r["repeats"]),
    ("epoch s", lambda r: r["epoch_seconds"]),
    ("share %", lambda r: 100 * r["share"]),
]


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Format result rows as a table with the given (header, getter) columns."""
    return format_table(
        [header for header, _ in columns],
        [[get(row) for _, get in columns] for row in rows],
    )


def render(results: dict[str, Any]) -> str:
    """The whole benchmark as plain text: a header, then one table per section."""
    machine, sizes = results["machine"], results["sizes"]
    blas = machine["blas"]
    header = [
        "Benchmark of the Fashion-MNIST pipeline"
        + (" (--quick sizes)" if results["quick"] else ""),
        f"machine: {machine['cpus']} CPUs, Python {machine['python']}, NumPy "
        f"{machine['numpy']}, TensorFlow {machine['tensorflow']}",
        f"BLAS: {blas['library']} {blas['version']}, kernel {blas['kernel']}, "
        f"{blas['threads'] or '?'} threads ({blas['source']}); OPENBLAS_CORETYPE="
        f"{blas['OPENBLAS_CORETYPE'] or 'unset'}",
    ]
    if blas.get("build"):
        header.append(f"BLAS build: {blas['build']}")
    header.append(
        f"load average: {machine['load_start']:.2f} at start, "
        f"{machine['load_end']:.2f} at end (near 0 on an idle machine; higher "
        "means other work shared the CPUs and timings are noisy)"
    )
    n = sizes["matmul"]
    sections = [
        "\n".join(header),
        f"1. Matrix product, float32 ({n}, {n}) @ ({n}, {n}), best of "
        f"{sizes['matmul_repeats']}\n" + table(results["matmul"], MATMUL_COLUMNS),
        "2. Training throughput: the real training functions on synthetic data of "
        "the real shape. Of the 'timed' epochs after\n"
        "   the first: the median (epoch s, used for the rates) and the fastest "
        "(best s). CPU s = the median epoch's CPU time\n"
        "   in this process, all threads (well below 2x epoch s: waiting for a "
        "core). GFLOP/s counts matrix products;\n"
        "   x NumPy is against section 1; * = what the pipeline runs; on->off = "
        "Keras refused XLA (op determinism is on);\n"
        "   steps/call = batches per call into Keras' compiled training step\n"
        + table(results["training"], TRAINING_COLUMNS),
        "3. Where one epoch's time goes (jit off): each part timed alone (best of "
        "several calls) times steps per epoch;\n"
        "   rest = the measured epoch of section 2 minus the parts\n"
        + table(results["breakdown"], BREAKDOWN_COLUMNS),
        "4. Pipeline overhead\n" + _render_overhead(results),
    ]
    return "\n\n".join(sections) + "\n"


def _render_overhead(results: dict[str, Any]) -> str:
    lines = [
        format_table(
            ["start-up (best of runs)", "seconds"],
            [[what, seconds] for what, seconds in results["startup"].items()],
        ),
        "",
    ]
    dvc = results["dvc"]
    if dvc.get("ran"):
        lines.append(
            f"no-op dvc repro: {dvc['repro_seconds']:.2f} s "
            f"(dvc status: {dvc['status_seconds']:.2f} s)"
        )
    else:
        lines.append(f"no-op dvc repro: not run: {dvc['reason']}")
    lines.append("")

    rows = [
        [
            r["variant"],
            r["train_seconds"],
            r["startup_seconds"],
            r["startup_seconds"] / r["train_seconds"] if r["train_seconds"] else None,
        ]
        for r in results["stages"]
    ]
    known = [r for r in results["stages"] if r["train_seconds"] is not None]
    if known:
        trained = sum(r["train_seconds"] for r in known)
        overhead = sum(r["startup_seconds"] for r in known)
        ratio = overhead / trained if trained else None
        rows.append([f"total ({len(known)} recorded)", trained, overhead, ratio])
    lines.append(
        "by variant: train_seconds recorded in metrics/<variant>/eval.json against "
        "the start-up of its train and evaluate processes"
    )
    lines.append(
        format_table(["variant", "train s", "start-up s", "start-up / train"], rows)
    )
    return "\n".join(lines)


def read_config(root: Path) -> Config:
    """The pipeline's configuration as `dvc repro` sees it: `root/params.yaml`."""
    path = root / "params.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: expected the composed configuration (run `python -m "
            "fmnist.params` in the repository), found no file"
        )
    return load_config(OmegaConf.load(path))


def run(root: Path, quick: bool = False, skip_dvc: bool = False) -> dict[str, Any]:
    """Measure everything and return the results (what `--json` writes)."""
    import tensorflow as tf

    from fmnist.seeding import one_op_at_a_time

    # As in the train stage; it can only be set before TensorFlow's first op.
    one_op_at_a_time()
    sizes = QUICK if quick else FULL
    config = read_config(root)
    load_start = os.getloadavg()[0]

    log.info("matrix products, %dx%d", sizes.matmul, sizes.matmul)
    matmul = bench_matmul(sizes.matmul, sizes.matmul_repeats)
    reference = matmul[0]["gflops"]

    data = synthetic_data(sizes.n_train, sizes.n_test, sizes.n_val, config.seed)
    training = bench_training(config, data, sizes, reference)

    breakdown = []
    for name in ("a_arch_b", "b_h4"):
        variant = _variant(config, name)
        measured = next(
            r
            for r in training
            if r["variant"] == name
            and not r["jit"]
            and r["batch"] == (variant.batch_size or "full")
        )
        log.info("breaking down one epoch of %s", name)
        repeats = (
            sizes.mini_batch_repeats if variant.batch_size else sizes.full_batch_repeats
        )
        breakdown += step_breakdown(
            name, variant, data, config.seed, measured["epoch_seconds"], repeats
        )

    log.info("start-up costs")
    startup = bench_startup(root, sizes.startup_repeats)
    if skip_dvc:
        dvc = {"ran": False, "reason": "--skip-dvc"}
    else:
        dvc = bench_dvc_noop(root)
    stages = stage_breakdown(root, config, startup["stage start-up estimate"])

    return {
        "quick": quick,
        "sizes": asdict(sizes),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "tensorflow": tf.__version__,
            "blas": blas_info(),
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
        },
        "matmul": matmul,
        "training": training,
        "breakdown": breakdown,
        "startup": startup,
        "dvc": dvc,
        "stages": stages,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: about a minute instead of ten; for tests",
    )
    parser.add_argument(
        "--skip-dvc", action="store_true", help="do not time a no-op dvc repro"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="the repository: params.yaml, metrics/, dvc.lock (default: .)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # Each timed run builds fresh tf.functions on purpose; TensorFlow's retracing
    # warnings about that would bury the progress lines.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # TensorFlow's C++ start-up lines would bury the progress lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    results = run(args.root.resolve(), quick=args.quick, skip_dvc=args.skip_dvc)
    sys.stdout.write(render(results))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
