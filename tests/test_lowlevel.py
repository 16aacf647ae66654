"""Part A: the low-level network's numerics, gradients, training loop and saving.

Every figure is checked against a plain NumPy computation (float64 where the code
allows it) on fixed seeds; training runs use a few hundred synthetic images.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY, compose_config

from fmnist.data.prepare import Prepared
from fmnist.lowlevel import load_logits_fn
from fmnist.lowlevel import model as nn

log = logging.getLogger(__name__)

# `fmnist.lowlevel.train` is shadowed by the function of the same name that the
# package re-exports, so the module is fetched by its full name.
lowlevel_train = importlib.import_module("fmnist.lowlevel.train")

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "train_loss_penalized",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "weight_abs_sum",
    "weight_abs_max",
    "weight_abs_mean",
]

# Trainable parameters, written out layer by layer as in*out + out.
PART_A_PARAMS = {
    "a_softmax": 784 * 10 + 10,  # 7,850
    "a_arch_a": (784 * 300 + 300) + (300 * 10 + 10),  # 238,510
    "a_arch_b": (784 * 300 + 300) + (300 * 100 + 100) + (100 * 10 + 10),  # 266,610
    "a_arch_b_l1": 266_610,
    "a_arch_b_l2": 266_610,
    # Batch normalization drops each hidden bias and adds gamma and beta.
    "a_arch_b_batchnorm": (784 * 300 + 2 * 300)
    + (300 * 100 + 2 * 100)
    + (100 * 10 + 10),  # 267,010
}


@pytest.fixture(scope="module")
def config():
    """The real configuration on the tiny profile, composed once for the module."""
    return compose_config(*TINY)


def synthetic_data(
    n_train: int = 300, n_test: int = 100, n_features: int = 784, seed: int = 0
) -> Prepared:
    """Learnable images in [0, 1]: one noisy prototype per class, 10 classes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0.0, 1.0, size=(10, n_features))

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % 10
        noise = rng.normal(0.0, 0.35, size=(count, n_features))
        images = np.clip(prototypes[labels] + noise, 0.0, 1.0).astype(np.float32)
        return images, labels.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    val_index = np.arange(0, n_train, 5, dtype=np.int64)
    return Prepared(x_train, y_train, x_test, y_test, val_index)


def numpy_forward(network: nn.MLP, x: np.ndarray) -> np.ndarray:
    """The MLP's logits in float64 NumPy from its own variables (no batch norm)."""
    h = x.astype(np.float64)
    last = len(network.kernels) - 1
    for index, (kernel, bias) in enumerate(
        zip(network.kernels, network.biases, strict=True)
    ):
        h = h @ kernel.numpy().astype(np.float64) + bias.numpy().astype(np.float64)
        if index < last:
            h = np.maximum(h, 0.0)
    return h


def numpy_log_softmax(logits: np.ndarray) -> np.ndarray:
    """Float64 log-softmax, shifted by the row maximum so it cannot overflow."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def randomize_biases(network: nn.MLP, seed: int) -> None:
    """Give every bias a non-zero value so that the forward pass uses them."""
    rng = np.random.default_rng(seed)
    for bias in network.biases:
        if bias is not None:
            bias.assign(rng.normal(0.0, 0.5, size=bias.shape).astype(np.float32))


# Forward pass and numerics.


@pytest.mark.parametrize(
    "sizes", [(6, 4), (6, 5, 4), (6, 5, 3, 4)], ids=["0hidden", "1hidden", "2hidden"]
)
def test_forward_matches_numpy(sizes):
    network = nn.MLP(sizes, activation="relu", init_std=0.5, seed=3)
    randomize_biases(network, seed=4)
    x = np.random.default_rng(5).normal(size=(16, sizes[0])).astype(np.float32)

    logits = network(tf.constant(x)).numpy()

    assert logits.shape == (16, sizes[-1])
    np.testing.assert_allclose(logits, numpy_forward(network, x), rtol=1e-5, atol=1e-5)
    if len(sizes) > 2:
        # The ReLU must cut something here, or the check says nothing about it.
        pre = x @ network.kernels[0].numpy() + network.biases[0].numpy()
        assert (pre < 0).any() and (pre > 0).any()


def test_initial_weights_follow_the_seed_and_std():
    network = nn.MLP((784, 300, 10), init_std=0.01, seed=7)
    again = nn.MLP((784, 300, 10), init_std=0.01, seed=7)
    other = nn.MLP((784, 300, 10), init_std=0.01, seed=8)
    kernel = network.kernels[0].numpy()

    np.testing.assert_array_equal(kernel, again.kernels[0].numpy())
    assert not np.array_equal(kernel, other.kernels[0].numpy())
    assert abs(kernel.std() - 0.01) < 0.0005
    assert abs(kernel.mean()) < 0.0005
    assert all(not b.numpy().any() for b in network.biases)


LOGIT_CASES = {
    "ordinary": [[0.5, -1.25, 2.0, 0.0], [3.0, 3.0, -2.0, 1.0]],
    "saturated_1000": [[1000.0, 0.0, -1000.0, 5.0], [-1000.0, -1000.0, -999.0, 0.0]],
    "saturated_1e4": [[1e4, 1e4, -1e4, 0.0], [1e4, 0.0, 0.0, -1e4]],
}


@pytest.mark.parametrize("case", sorted(LOGIT_CASES))
def test_softmax_and_log_softmax_match_numpy_float64(case):
    logits = np.array(LOGIT_CASES[case], dtype=np.float64)
    expected_log = numpy_log_softmax(logits)

    log_probs = nn.log_softmax(tf.constant(logits)).numpy()
    probs = nn.softmax(tf.constant(logits)).numpy()

    assert np.isfinite(log_probs).all() and np.isfinite(probs).all()
    np.testing.assert_allclose(log_probs, expected_log, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(probs, np.exp(expected_log), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)


def test_saturated_logits_stay_finite_where_the_naive_form_overflows():
    logits = np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 0.0]], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    # The case is a real one: the textbook form gives NaN here.
    assert np.isnan(naive).any()

    for dtype in (tf.float32, tf.float64):
        log_probs = nn.log_softmax(tf.constant(logits, dtype=dtype)).numpy()
        probs = nn.softmax(tf.constant(logits, dtype=dtype)).numpy()
        # Near 1e4 a float32 step is ~1e-3, so the log-sum-exp can be no closer.
        atol = 2 * float(np.spacing(dtype.as_numpy_dtype(1e4)))
        assert np.isfinite(log_probs).all() and np.isfinite(probs).all()
        # Exact values: the first row is [0, -1000, -2000] in log space; the
        # second splits evenly between two classes and leaves e^-1e4 for the third.
        np.testing.assert_allclose(log_probs[0], [0.0, -1000.0, -2000.0], atol=atol)
        np.testing.assert_allclose(log_probs[1, :2], -np.log(2.0), atol=atol)
        np.testing.assert_allclose(probs, [[1, 0, 0], [0.5, 0.5, 0]], atol=atol)


def test_cross_entropy_matches_numpy_including_saturated_logits():
    rng = np.random.default_rng(11)
    ordinary = rng.normal(0.0, 3.0, size=(32, 10))
    labels = rng.integers(0, 10, size=32)
    # Confidently wrong: the true class sits 2,000 below the predicted one.
    saturated = np.array([[1000.0, -1000.0, 0.0], [-5.0, 1e4, -1e4]])
    saturated_labels = np.array([1, 1])

    for logits, y in ((ordinary, labels), (saturated, saturated_labels)):
        expected = -numpy_log_softmax(logits)[np.arange(len(y)), y].mean()
        got64 = float(nn.cross_entropy(tf.constant(logits), tf.constant(y)))
        got32 = float(nn.cross_entropy(tf.constant(logits, tf.float32), tf.constant(y)))
        assert np.isfinite(got64) and np.isfinite(got32)
        assert got64 == pytest.approx(expected, rel=1e-12)
        assert got32 == pytest.approx(expected, rel=1e-5)

    # Row one costs 2000, row two (right and sure) costs 0: the mean is 1000.
    assert float(
        nn.cross_entropy(tf.constant(saturated), tf.constant(saturated_labels))
    ) == pytest.approx(1000.0, rel=1e-12)


def test_accuracy_matches_numpy():
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(257, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=257).astype(np.int32)
    # Make some rows right so the figure is neither 0 nor chance by construction.
    labels[:100] = logits[:100].argmax(axis=1)

    got = float(nn.accuracy(tf.constant(logits), tf.constant(labels)))

    assert got == pytest.approx((logits.argmax(axis=1) == labels).mean(), abs=1e-7)
    assert 0.39 < got < 0.5


@pytest.mark.parametrize(
    ("l1", "l2"), [(0.01, 0.0), (0.0, 0.02), (0.01, 0.02)], ids=["l1", "l2", "both"]
)
def test_penalty_matches_numpy_over_kernels_only(l1, l2):
    network = nn.MLP((5, 4, 3, 2), init_std=0.5, seed=13)
    randomize_biases(network, seed=14)
    kernels = [k.numpy().astype(np.float64) for k in network.kernels]
    biases = [b.numpy().astype(np.float64) for b in network.biases]
    expected = sum(l1 * np.abs(w).sum() + l2 * np.square(w).sum() for w in kernels)
    with_biases = expected + sum(
        l1 * np.abs(b).sum() + l2 * np.square(b).sum() for b in biases
    )

    got = float(nn.penalty(network.kernels, l1, l2))

    # The network hands over its weight matrices only, never the biases.
    assert [k.shape.rank for k in network.kernels] == [2, 2, 2]
    assert got == pytest.approx(expected, rel=1e-6)
    assert got != pytest.approx(with_biases, rel=1e-3)


def test_penalty_is_zero_without_l1_and_l2():
    network = nn.MLP((5, 4, 2), init_std=0.5, seed=13)
    assert float(nn.penalty(network.kernels, 0.0, 0.0)) == 0.0


def test_weight_stats_match_numpy():
    network = nn.MLP((7, 6, 5, 3), init_std=0.3, seed=15)
    randomize_biases(network, seed=16)
    flat = np.concatenate([np.abs(k.numpy()).ravel() for k in network.kernels])

    stats = {k: float(v) for k, v in nn.weight_stats(network.kernels).items()}

    assert stats["weight_abs_sum"] == pytest.approx(flat.sum(dtype=np.float64), 1e-6)
    assert stats["weight_abs_max"] == pytest.approx(flat.max(), rel=1e-7)
    assert stats["weight_abs_mean"] == pytest.approx(flat.mean(dtype=np.float64), 1e-6)


# Gradients against central finite differences.


def tiny_network(
    dtype: tf.DType, seed: int = 82
) -> tuple[nn.MLP, tf.Tensor, tf.Tensor]:
    """A 4-3-3 network with non-zero biases in `dtype`, and a batch of 8."""
    network = nn.MLP((4, 3, 3), init_std=0.6, seed=seed)
    randomize_biases(network, seed=seed + 1)
    if dtype != tf.float32:
        network.kernels = [tf.Variable(tf.cast(k, dtype)) for k in network.kernels]
        network.biases = [tf.Variable(tf.cast(b, dtype)) for b in network.biases]
    rng = np.random.default_rng(seed + 2)
    x = tf.constant(rng.normal(size=(8, 4)), dtype=dtype)
    y = tf.constant(rng.integers(0, 3, size=8), dtype=tf.int32)
    return network, x, y


def tape_and_numeric_gradients(network, loss_fn, epsilon: float):
    """Gradients from `tf.GradientTape` and from central differences of `loss_fn`."""
    variables = list(network.kernels) + list(network.biases)
    with tf.GradientTape() as tape:
        loss = loss_fn()
    analytic = [g.numpy().astype(np.float64) for g in tape.gradient(loss, variables)]

    numeric = []
    for variable in variables:
        base = variable.numpy()
        grad = np.zeros(base.shape, dtype=np.float64)
        for index in np.ndindex(base.shape):
            values = []
            for sign in (1.0, -1.0):
                moved = base.copy()
                moved[index] += sign * epsilon
                variable.assign(moved)
                values.append(float(loss_fn()))
            variable.assign(base)
            grad[index] = (values[0] - values[1]) / (2.0 * epsilon)
        numeric.append(grad)
    return analytic, numeric


def assert_away_from_kinks(network, x, margin: float, l1: bool) -> None:
    """The finite differences must not cross a ReLU or |w| kink, or they are wrong."""
    pre = (tf.matmul(x, network.kernels[0]) + network.biases[0]).numpy()
    assert np.abs(pre).min() > margin, "a ReLU input sits too close to 0"
    if l1:
        smallest = min(np.abs(k.numpy()).min() for k in network.kernels)
        assert smallest > margin, "a weight sits too close to 0 for the L1 kink"


def test_cross_entropy_gradient_float64_matches_finite_differences():
    network, x, y = tiny_network(tf.float64)
    epsilon = 1e-6
    assert_away_from_kinks(network, x, margin=100 * epsilon, l1=False)

    analytic, numeric = tape_and_numeric_gradients(
        network, lambda: nn.cross_entropy(network(x, training=True), y), epsilon
    )

    # Central differences in float64 at 1e-6: truncation ~1e-12, rounding ~1e-10.
    for got, want in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    assert max(np.abs(g).max() for g in analytic) > 1e-2


def test_penalized_loss_gradient_matches_finite_differences():
    # `penalty` accumulates in float32, so the check of the penalized loss runs in
    # the float32 that training uses, with a step large enough to rise above
    # float32 rounding of the loss (~1e-7 / 1e-2) and small enough that the
    # truncation error (~epsilon^2) stays below the tolerance.
    network, x, y = tiny_network(tf.float32)
    l1, l2 = 0.05, 0.1
    epsilon = 1e-2
    assert_away_from_kinks(network, x, margin=4 * epsilon, l1=True)

    def loss():
        logits = network(x, training=True)
        return nn.cross_entropy(logits, y) + nn.penalty(network.kernels, l1, l2)

    analytic, numeric = tape_and_numeric_gradients(network, loss, epsilon)

    # The penalty's own slope is l1 * sign(w) + 2 * l2 * w, several hundredths
    # per weight: a tolerance of 2e-4 catches a missing or doubled term.
    for got, want in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-4)
    kernel = network.kernels[0].numpy()
    plain, _ = tape_and_numeric_gradients(
        network, lambda: nn.cross_entropy(network(x, training=True), y), epsilon
    )
    np.testing.assert_allclose(
        analytic[0] - plain[0], l1 * np.sign(kernel) + 2 * l2 * kernel, atol=1e-6
    )
    # Biases carry no penalty.
    np.testing.assert_allclose(analytic[2], plain[2], atol=1e-7)


# Building and training the configured variants.


def part_a_variants(config) -> dict:
    """The configured variants of the low-level family, by name."""
    return {k: v for k, v in config.variants.items() if v.family == "lowlevel"}


def test_every_part_a_variant_has_a_hand_computed_parameter_count(config):
    assert sorted(part_a_variants(config)) == sorted(PART_A_PARAMS)


@pytest.mark.parametrize("name", sorted(PART_A_PARAMS))
def test_part_a_variant_builds_with_expected_parameters(config, name):
    variant = config.variants[name]

    network = lowlevel_train.build(variant, 784, 10, seed=0)

    assert network.count_trainable() == PART_A_PARAMS[name]
    assert (
        sum(int(np.prod(v.shape)) for v in network.trainable_variables)
        == PART_A_PARAMS[name]
    )
    assert [k.shape[1] for k in network.kernels] == [*variant.hidden, 10]
    if variant.batchnorm:
        hidden_norms = network.norms[:-1]
        assert all(n is not None for n in hidden_norms)
        assert all(n.momentum == variant.bn_momentum for n in hidden_norms)
        assert all(b is None for b in network.biases[:-1])
        assert network.norms[-1] is None and network.biases[-1] is not None
    else:
        assert all(n is None for n in network.norms)


def train_variant(config, name: str, data: Prepared, **changes):
    """Train one configured Part A variant on `data`, with `changes` applied."""
    variant = dataclasses.replace(config.variants[name], **changes)
    result = lowlevel_train.train(
        name, variant, data, seed=config.seed, jit_compile=False, progress=False
    )
    return variant, result


@pytest.mark.parametrize(
    "name", ["a_softmax", "a_arch_b", "a_arch_b_l1", "a_arch_b_l2"]
)
def test_training_lowers_the_loss_and_records_every_column(config, name):
    data = synthetic_data()
    variant, result = train_variant(config, name, data, epochs=4)
    history = result.history
    log.info("%s: train loss %s", name, [row["train_loss"] for row in history])

    assert [list(row) for row in history] == [HISTORY_COLUMNS] * 4
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert all(np.isfinite(list(row.values())).all() for row in history)
    losses = [row["train_loss"] for row in history]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert history[-1]["test_loss"] < history[0]["test_loss"]
    assert result.trainable_params == PART_A_PARAMS[name]

    penalized = [row["train_loss_penalized"] for row in history]
    if variant.l1 or variant.l2:
        assert all(p > c for p, c in zip(penalized, losses, strict=True))
        # Epoch 1 is scored on the initial weights, which the seed rebuilds.
        start = lowlevel_train.build(variant, 784, 10, config.seed)
        expected = float(nn.penalty(start.kernels, variant.l1, variant.l2))
        assert penalized[0] - losses[0] == pytest.approx(expected, rel=1e-3)
    else:
        assert penalized == losses


def test_weight_columns_describe_the_trained_kernels(config, monkeypatch):
    built = capture_built_network(monkeypatch)
    data = synthetic_data()

    _, result = train_variant(config, "a_arch_a", data, epochs=2)

    # The last row's weight figures are taken after the last step.
    flat = np.concatenate([np.abs(k.numpy()).ravel() for k in built[0].kernels])
    last = result.history[-1]
    assert last["weight_abs_sum"] == pytest.approx(flat.sum(dtype=np.float64), 1e-5)
    assert last["weight_abs_max"] == pytest.approx(flat.max(), rel=1e-6)
    assert last["weight_abs_mean"] == pytest.approx(flat.mean(dtype=np.float64), 1e-5)


def test_mini_batch_training_lowers_the_loss(config):
    data = synthetic_data(n_train=320)

    _, full = train_variant(config, "a_arch_a", data, epochs=2)
    _, mini = train_variant(config, "a_arch_a", data, epochs=2, batch_size=64)

    losses = [row["train_loss"] for row in mini.history]
    assert losses[1] < losses[0]
    # Five Adam steps per epoch instead of one: the loss falls much further.
    assert mini.history[-1]["train_loss"] < full.history[-1]["train_loss"] - 0.1
    assert mini.history[-1]["test_loss"] < full.history[-1]["test_loss"]


def test_batchnorm_variant_trains(config):
    data = synthetic_data()

    _, result = train_variant(config, "a_arch_b_batchnorm", data, epochs=3)

    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert result.trainable_params == PART_A_PARAMS["a_arch_b_batchnorm"]


def capture_built_network(monkeypatch) -> list[nn.MLP]:
    """Record the network that `train` builds, so a test can look at it after."""
    built: list[nn.MLP] = []
    original = lowlevel_train.build

    def recording_build(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(lowlevel_train, "build", recording_build)
    return built


@pytest.mark.parametrize("name", ["a_arch_b", "a_arch_b_batchnorm"])
def test_saved_network_gives_the_trained_logits(config, name, monkeypatch, tmp_path):
    built = capture_built_network(monkeypatch)
    data = synthetic_data()
    variant, result = train_variant(config, name, data, epochs=2)
    trained = built[0](tf.constant(data.x_test), training=False).numpy()

    result.save(tmp_path)
    logits_fn, params = load_logits_fn(tmp_path, variant, 784, 10)
    loaded = logits_fn(data.x_test)

    np.testing.assert_allclose(loaded, trained, rtol=1e-6, atol=1e-6)
    assert params == PART_A_PARAMS[name]
    # The last history row scores the test set with the same weights.
    loss = float(nn.cross_entropy(tf.constant(loaded), tf.constant(data.y_test)))
    assert loss == pytest.approx(result.history[-1]["test_loss"], rel=1e-5)
    # A fresh network differs: the weights really came from the file.
    fresh = lowlevel_train.build(variant, 784, 10, seed=0)
    assert not np.allclose(fresh(tf.constant(data.x_test)).numpy(), loaded, atol=1e-3)
    if variant.batchnorm:
        # The moving averages moved during training and were saved.
        assert not np.allclose(built[0].norms[0].moving_mean.numpy(), 0.0)


def test_loading_reports_missing_weights(config, tmp_path):
    variant = config.variants["a_arch_b_batchnorm"]
    plain = lowlevel_train.build(config.variants["a_arch_b"], 784, 10, seed=0)
    state = {key: v.numpy() for key, v in plain.named_variables().items()}
    np.savez(tmp_path / lowlevel_train.WEIGHTS_FILE, **state)

    with pytest.raises(ValueError, match=r"weights\.npz.*missing.*bn0/gamma"):
        load_logits_fn(tmp_path, variant, 784, 10)
