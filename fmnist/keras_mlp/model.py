"""One Keras builder for every Part B network."""

from __future__ import annotations

import keras

from fmnist.config import VariantConfig


def build(
    variant: VariantConfig, n_features: int = 784, n_classes: int = 10
) -> keras.Model:
    """Build the MLP a variant describes; it outputs logits.

    Each hidden layer is an affine step, then batch normalization (when asked),
    the activation, and dropout (when its rate is above zero). With batch
    normalization the affine step has no bias: the normalization's shift replaces
    it. Weights are regularized with `l1`/`l2` when those are non-zero.
    """
    regularizer = None
    if variant.l1 or variant.l2:
        regularizer = keras.regularizers.L1L2(l1=variant.l1, l2=variant.l2)

    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_features,), name="pixels")]
    for index, units in enumerate(variant.hidden, start=1):
        layers.append(
            keras.layers.Dense(
                units,
                use_bias=not variant.batchnorm,
                kernel_regularizer=regularizer,
                name=f"dense{index}",
            )
        )
        if variant.batchnorm:
            layers.append(
                keras.layers.BatchNormalization(
                    momentum=variant.bn_momentum,
                    epsilon=variant.bn_epsilon,
                    name=f"batchnorm{index}",
                )
            )
        layers.append(
            keras.layers.Activation(
                variant.activation, name=f"{variant.activation}{index}"
            )
        )
        if variant.dropout > 0:
            layers.append(keras.layers.Dropout(variant.dropout, name=f"dropout{index}"))
    layers.append(
        # Logits stay float32 under mixed precision, so the loss stays stable.
        keras.layers.Dense(
            n_classes, kernel_regularizer=regularizer, dtype="float32", name="logits"
        )
    )
    return keras.Sequential(layers, name="mlp")


def count_trainable(model: keras.Model) -> int:
    """Number of trainable scalars."""
    return int(sum(keras.ops.size(w) for w in model.trainable_weights))
