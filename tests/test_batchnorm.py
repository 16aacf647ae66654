"""The hand-written batch normalization against Keras's and against NumPy.

Keras 3 (`keras.layers.BatchNormalization`, TensorFlow backend) normalizes with
the biased batch variance and updates its averages as
`moving = moving * momentum + batch_statistic * (1 - momentum)`; the hand-written
layer must do the same, so both are driven with the same batches and compared.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY, compose_config

from fmnist.lowlevel import model as nn

log = logging.getLogger(__name__)

UNITS = 6
# float32 arithmetic on values of order 10 (the shifted batches below).
RTOL, ATOL = 1e-5, 1e-5


def batches(count: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Batches whose features have different means and spreads, batch to batch."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.normal(size=(size, UNITS)) * rng.uniform(0.5, 4.0, size=UNITS)
            + rng.uniform(-8.0, 8.0, size=UNITS)
        ).astype(np.float32)
        for _ in range(count)
    ]


def twin_layers(momentum: float, epsilon: float, seed: int = 1):
    """The hand-written layer and Keras's, with the same non-trivial gamma/beta."""
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 2.0, size=UNITS).astype(np.float32)
    beta = rng.normal(size=UNITS).astype(np.float32)

    hand = nn.BatchNorm(UNITS, momentum=momentum, epsilon=epsilon)
    hand.gamma.assign(gamma)
    hand.beta.assign(beta)

    reference = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
    reference.build((None, UNITS))
    reference.gamma.assign(gamma)
    reference.beta.assign(beta)
    return hand, reference


@pytest.mark.parametrize(
    ("momentum", "epsilon"), [(0.99, 1e-3), (0.9, 1e-3), (0.5, 0.1)]
)
def test_training_outputs_and_moving_averages_match_keras(momentum, epsilon):
    hand, reference = twin_layers(momentum, epsilon)

    for step, x in enumerate(batches(5), start=1):
        got = hand(tf.constant(x), training=True).numpy()
        want = reference(x, training=True).numpy()

        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{step}")
        np.testing.assert_allclose(
            hand.moving_mean.numpy(),
            reference.moving_mean.numpy(),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"moving_mean after update {step}",
        )
        np.testing.assert_allclose(
            hand.moving_variance.numpy(),
            reference.moving_variance.numpy(),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"moving_variance after update {step}",
        )

    # Five updates moved the averages well away from their starting 0 and 1.
    assert np.abs(hand.moving_mean.numpy()).max() > 0.01


@pytest.mark.parametrize(
    ("momentum", "epsilon"), [(0.99, 1e-3), (0.9, 1e-3), (0.5, 0.1)]
)
def test_inference_outputs_match_keras_after_training_updates(momentum, epsilon):
    hand, reference = twin_layers(momentum, epsilon)
    *train, test = batches(6, seed=2)
    for x in train:
        hand(tf.constant(x), training=True)
        reference(x, training=True)
    mean_before = hand.moving_mean.numpy().copy()

    got = hand(tf.constant(test), training=False).numpy()
    want = reference(test, training=False).numpy()

    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # Inference reads the averages and leaves them alone.
    np.testing.assert_array_equal(hand.moving_mean.numpy(), mean_before)
    # ... and does not normalize with the test batch's own statistics.
    batch_normalized = (
        hand.gamma.numpy() * (test - test.mean(0)) / np.sqrt(test.var(0) + epsilon)
        + hand.beta.numpy()
    )
    assert not np.allclose(got, batch_normalized, atol=1e-2)


def test_training_step_matches_the_numpy_formula():
    momentum, epsilon = 0.9, 1e-3
    hand, _ = twin_layers(momentum, epsilon)
    x = batches(1, seed=3)[0]
    data = x.astype(np.float64)
    mean, variance = data.mean(axis=0), data.var(axis=0)  # biased: divides by n

    got = hand(tf.constant(x), training=True).numpy()

    gamma, beta = hand.gamma.numpy(), hand.beta.numpy()
    expected = gamma * (data - mean) / np.sqrt(variance + epsilon) + beta
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        hand.moving_mean.numpy(), (1 - momentum) * mean, rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(
        hand.moving_variance.numpy(),
        momentum * 1.0 + (1 - momentum) * variance,
        rtol=RTOL,
        atol=ATOL,
    )


def test_gradients_through_training_mode_match_keras():
    hand, reference = twin_layers(0.9, 1e-3)
    x = tf.constant(batches(1, seed=4)[0])
    weights = tf.constant(np.random.default_rng(5).normal(size=(8, UNITS)), tf.float32)

    def objective(out):
        # A fixed weighting of the outputs, so every gradient component counts.
        return tf.reduce_sum(out[:8] * weights)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got_loss = objective(hand(x, training=True))
        want_loss = objective(reference(x, training=True))
    pairs = [
        (x, x),
        (hand.gamma, reference.gamma),
        (hand.beta, reference.beta),
    ]
    for mine, theirs in pairs:
        np.testing.assert_allclose(
            tape.gradient(got_loss, mine).numpy(),
            tape.gradient(want_loss, theirs).numpy(),
            rtol=1e-4,
            atol=1e-5,
        )


def test_network_with_batchnorm_matches_numpy_in_inference():
    network = nn.MLP(
        (5, 4, 3, 2), init_std=0.5, seed=6, batchnorm=True, bn_momentum=0.8
    )
    rng = np.random.default_rng(7)
    for _ in range(3):
        network(tf.constant(rng.normal(size=(16, 5)), tf.float32), training=True)
    network.biases[-1].assign(rng.normal(size=2).astype(np.float32))
    x = rng.normal(size=(10, 5)).astype(np.float32)

    got = network(tf.constant(x), training=False).numpy()

    # Affine step without bias, normalize with the moving averages, then ReLU.
    h = x.astype(np.float64)
    for kernel, norm in zip(network.kernels[:-1], network.norms[:-1], strict=True):
        z = h @ kernel.numpy()
        z = (z - norm.moving_mean.numpy()) / np.sqrt(
            norm.moving_variance.numpy() + norm.epsilon
        )
        h = np.maximum(norm.gamma.numpy() * z + norm.beta.numpy(), 0.0)
    expected = h @ network.kernels[-1].numpy() + network.biases[-1].numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_configured_variant_builds_hand_batchnorm_with_its_settings():
    config = compose_config(*TINY)
    variant = config.variants["a_arch_b_batchnorm"]
    network = nn.MLP(
        (784, *variant.hidden, 10),
        batchnorm=variant.batchnorm,
        bn_momentum=variant.bn_momentum,
        bn_epsilon=variant.bn_epsilon,
    )

    norms = [n for n in network.norms if n is not None]
    assert [int(n.gamma.shape[0]) for n in norms] == variant.hidden
    assert {(n.momentum, n.epsilon) for n in norms} == {
        (variant.bn_momentum, variant.bn_epsilon)
    }
    # gamma and beta train; the moving averages do not.
    trainable = {id(v) for v in network.trainable_variables}
    for norm in norms:
        assert id(norm.gamma) in trainable and id(norm.beta) in trainable
        assert id(norm.moving_mean) not in trainable
        assert id(norm.moving_variance) not in trainable
