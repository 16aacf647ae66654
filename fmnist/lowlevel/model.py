"""The low-level network: variables, forward pass, numerics.

Softmax and cross-entropy are computed from logits in log-sum-exp form, so large
logits neither overflow nor give `log(0)`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

ACTIVATIONS = {
    "relu": tf.nn.relu,
    "tanh": tf.math.tanh,
    "sigmoid": tf.math.sigmoid,
    "elu": tf.nn.elu,
    "gelu": tf.nn.gelu,
}


class BatchNorm(tf.Module):
    """Batch normalization written out: batch statistics in training, moving
    averages in inference, then a learned scale (`gamma`) and shift (`beta`).

    Args:
        units: features normalized.
        momentum: weight of the old value in each moving-average update.
        epsilon: added to the variance before the square root.
    """

    def __init__(self, units: int, momentum: float, epsilon: float, name=None):
        super().__init__(name=name)
        self.momentum = momentum
        self.epsilon = epsilon
        self.gamma = tf.Variable(tf.ones([units]), name="gamma")
        self.beta = tf.Variable(tf.zeros([units]), name="beta")
        self.moving_mean = tf.Variable(
            tf.zeros([units]), trainable=False, name="moving_mean"
        )
        self.moving_variance = tf.Variable(
            tf.ones([units]), trainable=False, name="moving_variance"
        )

    def __call__(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        if training:
            mean = tf.reduce_mean(x, axis=0)
            variance = tf.reduce_mean(tf.square(x - mean), axis=0)
            keep = self.momentum
            self.moving_mean.assign(keep * self.moving_mean + (1.0 - keep) * mean)
            self.moving_variance.assign(
                keep * self.moving_variance + (1.0 - keep) * variance
            )
        else:
            mean, variance = self.moving_mean, self.moving_variance
        normalized = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
        return self.gamma * normalized + self.beta


class MLP(tf.Module):
    """A multi-layer perceptron: affine steps, optional batch norm, activations.

    With no hidden layers it is softmax regression. Weights are drawn from
    N(0, init_std^2) with a seeded NumPy generator; biases start at zero. A
    hidden layer followed by batch normalization has no bias (`beta` shifts).

    Args:
        sizes: layer widths, input first and classes last, e.g. (784, 300, 10).
        activation: name of the hidden activation.
        init_std: standard deviation of the initial weights.
        seed: seeds the initial weights.
        batchnorm: normalize between each hidden affine step and its activation.
        bn_momentum, bn_epsilon: the batch normalization's settings.
    """

    def __init__(
        self,
        sizes: tuple[int, ...],
        activation: str = "relu",
        init_std: float = 0.01,
        seed: int = 0,
        batchnorm: bool = False,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 0.001,
        name=None,
    ):
        super().__init__(name=name)
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected input and output widths, got {sizes}")
        rng = np.random.default_rng(seed)
        self.activation = ACTIVATIONS[activation]
        self.kernels, self.biases, self.norms = [], [], []
        last = len(sizes) - 2
        for index, (fan_in, fan_out) in enumerate(
            zip(sizes[:-1], sizes[1:], strict=True)
        ):
            weights = rng.normal(0.0, init_std, size=(fan_in, fan_out))
            self.kernels.append(
                tf.Variable(weights.astype(np.float32), name=f"dense{index}_kernel")
            )
            normalize = batchnorm and index < last
            self.biases.append(
                None
                if normalize
                else tf.Variable(tf.zeros([fan_out]), name=f"dense{index}_bias")
            )
            self.norms.append(
                BatchNorm(fan_out, bn_momentum, bn_epsilon, name=f"bn{index}")
                if normalize
                else None
            )

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Return the logits for a batch `x` of shape (batch, features)."""
        last = len(self.kernels) - 1
        for index, (kernel, bias, norm) in enumerate(
            zip(self.kernels, self.biases, self.norms, strict=True)
        ):
            x = tf.matmul(x, kernel)
            if bias is not None:
                x = x + bias
            if norm is not None:
                x = norm(x, training=training)
            if index < last:
                x = self.activation(x)
        return x

    def named_variables(self) -> dict[str, tf.Variable]:
        """All variables, trainable or not, under stable unique names."""
        named = {}
        for index, (kernel, bias, norm) in enumerate(
            zip(self.kernels, self.biases, self.norms, strict=True)
        ):
            named[f"dense{index}/kernel"] = kernel
            if bias is not None:
                named[f"dense{index}/bias"] = bias
            if norm is not None:
                for part in ("gamma", "beta", "moving_mean", "moving_variance"):
                    named[f"bn{index}/{part}"] = getattr(norm, part)
        return named

    def count_trainable(self) -> int:
        """Number of trainable scalars."""
        return int(sum(np.prod(v.shape) for v in self.trainable_variables))


def log_softmax(logits: tf.Tensor) -> tf.Tensor:
    """Log-probabilities from logits, stable for any logit size."""
    return logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)


def softmax(logits: tf.Tensor) -> tf.Tensor:
    """Class probabilities from logits, stable for any logit size."""
    return tf.exp(log_softmax(logits))


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy between one-hot `labels` (as integers) and `logits`."""
    one_hot = tf.one_hot(labels, depth=tf.shape(logits)[-1], dtype=logits.dtype)
    return -tf.reduce_mean(tf.reduce_sum(one_hot * log_softmax(logits), axis=-1))


def accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Fraction of rows whose largest logit is the true class."""
    predicted = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    return tf.reduce_mean(tf.cast(tf.equal(predicted, labels), tf.float32))


def penalty(kernels: list[tf.Variable], l1: float, l2: float) -> tf.Tensor:
    """`l1 * sum|w| + l2 * sum w^2` over weight matrices (biases are not passed)."""
    total = tf.zeros([], dtype=kernels[0].dtype)
    if l1:
        total += l1 * tf.add_n([tf.reduce_sum(tf.abs(w)) for w in kernels])
    if l2:
        total += l2 * tf.add_n([tf.reduce_sum(tf.square(w)) for w in kernels])
    return total


def weight_stats(kernels: list[tf.Variable]) -> dict[str, tf.Tensor]:
    """Sum, maximum and mean of the absolute weights over all weight matrices."""
    flat = tf.concat([tf.reshape(tf.abs(w), [-1]) for w in kernels], axis=0)
    return {
        "weight_abs_sum": tf.reduce_sum(flat),
        "weight_abs_max": tf.reduce_max(flat),
        "weight_abs_mean": tf.reduce_mean(flat),
    }
