"""Part B: the Keras builder, configuration checks, a short fit and saving."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re

import keras
import numpy as np
import pytest
from conftest import TINY, compose_config, compose_raw

from fmnist import keras_mlp
from fmnist.config import ConfigError, load_config, validate_variant
from fmnist.data.prepare import Prepared
from fmnist.keras_mlp.model import count_trainable

log = logging.getLogger(__name__)

# `fmnist.keras_mlp.train` is shadowed by the function the package re-exports.
keras_train = importlib.import_module("fmnist.keras_mlp.train")


def dense(fan_in: int, fan_out: int, bias: bool = True) -> int:
    """Trainable scalars of one affine step."""
    return fan_in * fan_out + (fan_out if bias else 0)


# Trainable parameters by hand: in*out + out per Dense layer. Dropout adds none;
# batch normalization adds gamma and beta (2 * units) and removes the bias of the
# Dense layer before it (its moving averages are not trainable).
H4 = (
    dense(784, 800)
    + dense(800, 600)
    + dense(600, 400)
    + dense(400, 200)
    + dense(200, 10)
)
PART_B_PARAMS = {
    "b_softmax": 784 * 10 + 10,  # 7,850
    "b_h1": (784 * 200 + 200) + (200 * 10 + 10),  # 159,010
    "b_h2": (784 * 400 + 400) + (400 * 200 + 200) + (200 * 10 + 10),  # 396,210
    "b_h3": (784 * 600 + 600)
    + (600 * 400 + 400)
    + (400 * 200 + 200)
    + (200 * 10 + 10),  # 793,610
    "b_h4": (784 * 800 + 800)
    + (800 * 600 + 600)
    + (600 * 400 + 400)
    + (400 * 200 + 200)
    + (200 * 10 + 10),  # 1,431,210
    "b_h3_dropout10": 793_610,
    "b_h3_dropout25": 793_610,
    "b_h3_dropout50": 793_610,
    "b_h4_dropout10": 1_431_210,
    "b_h4_dropout25": 1_431_210,
    "b_h4_dropout50": 1_431_210,
    "b_h4_batchnorm": (784 * 800 + 2 * 800)
    + (800 * 600 + 2 * 600)
    + (600 * 400 + 2 * 400)
    + (400 * 200 + 2 * 200)
    + (200 * 10 + 10),  # 1,433,210
}


@pytest.fixture(scope="module")
def config():
    """The real configuration on the tiny profile, composed once for the module."""
    return compose_config(*TINY)


def test_hand_counts_agree_with_the_written_figures():
    assert PART_B_PARAMS["b_softmax"] == 7_850
    assert PART_B_PARAMS["b_h1"] == 159_010
    assert PART_B_PARAMS["b_h4"] == H4 == 1_431_210
    assert PART_B_PARAMS["b_h4_batchnorm"] == 1_433_210


def test_every_part_b_variant_has_a_hand_computed_parameter_count(config):
    part_b = sorted(k for k, v in config.variants.items() if v.family == "keras_mlp")
    assert part_b == sorted(PART_B_PARAMS)


def expected_layers(variant) -> list[tuple]:
    """The layer sequence a variant should build, as (kind, detail) pairs."""
    layers = []
    for units in variant.hidden:
        layers.append(("Dense", units, not variant.batchnorm))
        if variant.batchnorm:
            layers.append(("BatchNormalization", variant.bn_momentum))
        layers.append(("Activation", variant.activation))
        if variant.dropout > 0:
            layers.append(("Dropout", variant.dropout))
    layers.append(("Dense", 10, True))
    return layers


def describe(layer) -> tuple:
    """A layer as the same (kind, detail) pair as `expected_layers`."""
    if isinstance(layer, keras.layers.Dense):
        return ("Dense", layer.units, layer.use_bias)
    if isinstance(layer, keras.layers.BatchNormalization):
        return ("BatchNormalization", layer.momentum)
    if isinstance(layer, keras.layers.Activation):
        return ("Activation", layer.activation.__name__)
    if isinstance(layer, keras.layers.Dropout):
        return ("Dropout", layer.rate)
    return (type(layer).__name__,)


@pytest.mark.parametrize("name", sorted(PART_B_PARAMS))
def test_part_b_variant_builds_layers_and_parameters(config, name):
    variant = config.variants[name]

    model = keras_mlp.build(variant, 784, 10)

    assert [describe(layer) for layer in model.layers] == expected_layers(variant)
    assert model.input_shape == (None, 784)
    assert model.output_shape == (None, 10)
    assert count_trainable(model) == PART_B_PARAMS[name]
    assert (
        sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        == PART_B_PARAMS[name]
    )
    # The logits layer has no activation: the loss takes logits.
    assert model.layers[-1].activation.__name__ == "linear"


def test_batchnorm_sits_between_dense_and_activation(config):
    model = keras_mlp.build(config.variants["b_h4_batchnorm"], 784, 10)
    layers = model.layers

    norms = [
        i
        for i, layer in enumerate(layers)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(norms) == 4
    for i in norms:
        assert isinstance(layers[i - 1], keras.layers.Dense)
        assert not layers[i - 1].use_bias
        assert isinstance(layers[i + 1], keras.layers.Activation)
        assert layers[i].epsilon == config.variants["b_h4_batchnorm"].bn_epsilon
    # Moving averages exist but do not train.
    assert len(model.non_trainable_weights) == 2 * 4


@pytest.mark.parametrize(
    ("name", "rate"),
    [
        ("b_h3_dropout10", 0.1),
        ("b_h3_dropout25", 0.25),
        ("b_h3_dropout50", 0.5),
        ("b_h4_dropout10", 0.1),
        ("b_h4_dropout25", 0.25),
        ("b_h4_dropout50", 0.5),
    ],
)
def test_dropout_follows_every_hidden_activation(config, name, rate):
    variant = config.variants[name]
    model = keras_mlp.build(variant, 784, 10)

    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    assert [d.rate for d in drops] == [rate] * len(variant.hidden)
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Dropout):
            assert isinstance(model.layers[index - 1], keras.layers.Activation)


def test_dropout_acts_in_training_only(config):
    model = keras_mlp.build(config.variants["b_h3_dropout50"], 784, 10)
    x = np.random.default_rng(0).uniform(size=(8, 784)).astype(np.float32)

    inference = [np.asarray(model(x, training=False)) for _ in range(2)]
    training = np.asarray(model(x, training=True))

    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.allclose(training, inference[0], atol=1e-4)


# Bad values are rejected by validation, before any work starts.

BAD_VALUES = [
    ("b_h4_dropout50", "dropout", "1.0", "variants.b_h4_dropout50.dropout", "1.0"),
    ("b_h3_dropout10", "dropout", "-0.1", "variants.b_h3_dropout10.dropout", "-0.1"),
    ("b_h2", "hidden", "[400,0]", r"variants.b_h2.hidden\[1\]", "got 0"),
    ("b_h1", "batch_size", "0", "variants.b_h1.batch_size", "got 0"),
    ("b_h1", "activation", "swish", "variants.b_h1.activation", "'swish'"),
    ("b_h1", "optimizer", "adagrad", "variants.b_h1.optimizer", "'adagrad'"),
]


@pytest.mark.parametrize(
    ("name", "key", "value", "names_key", "names_value"),
    BAD_VALUES,
    ids=[f"{key}={value}" for _, key, value, _, _ in BAD_VALUES],
)
def test_bad_values_are_rejected_naming_key_and_value(
    name, key, value, names_key, names_value
):
    raw = compose_raw(*TINY, f"variants.{name}.{key}={value}")

    with pytest.raises(ConfigError) as caught:
        load_config(raw)

    message = str(caught.value)
    assert re.search(names_key, message), message
    assert names_value in message
    assert "expected" in message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"hidden": [200, 0]}, "hidden[1]"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": None}, "batch_size"),
        ({"activation": "swish"}, "activation"),
        ({"optimizer": "adagrad"}, "optimizer"),
    ],
)
def test_validate_variant_rejects_bad_values(config, change, key):
    variant = dataclasses.replace(config.variants["b_h1"], **change)

    with pytest.raises(
        ConfigError, match=rf"variants\.b_h1\.{key}".replace("[", r"\[")
    ):
        validate_variant("b_h1", variant)


def test_validate_variant_accepts_the_configured_variants(config):
    for name, variant in config.variants.items():
        validate_variant(name, variant)
    # Dropout just below 1 is still a valid rate.
    validate_variant("b_h1", dataclasses.replace(config.variants["b_h1"], dropout=0.99))


# A short fit, its history, and the saved model.


def synthetic_data(n_train: int = 500, n_test: int = 100, seed: int = 0) -> Prepared:
    """Learnable images in [0, 1]: one noisy prototype per class, 10 classes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0.0, 1.0, size=(10, 784))

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % 10
        noise = rng.normal(0.0, 0.35, size=(count, 784))
        images = np.clip(prototypes[labels] + noise, 0.0, 1.0).astype(np.float32)
        return images, labels.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    val_index = np.sort(rng.permutation(n_train)[:100]).astype(np.int64)
    return Prepared(x_train, y_train, x_test, y_test, val_index)


def capture_built_model(monkeypatch) -> list[keras.Model]:
    """Record the model that `train` builds, so a test can look at it after."""
    built: list[keras.Model] = []
    original = keras_train.build

    def recording_build(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(keras_train, "build", recording_build)
    return built


@pytest.mark.parametrize("name", ["b_h1", "b_h3_dropout25", "b_h4_batchnorm"])
def test_fit_lowers_the_loss_and_the_saved_model_gives_the_same_logits(
    config, name, monkeypatch, tmp_path
):
    keras.utils.set_random_seed(0)
    built = capture_built_model(monkeypatch)
    data = synthetic_data()
    variant = dataclasses.replace(config.variants[name], epochs=3, batch_size=50)

    result = keras_train.train(
        name, variant, data, seed=config.seed, jit_compile=False, progress=False
    )
    history = result.history
    log.info("%s: %s", name, history)

    assert [list(row) for row in history] == [
        ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    ] * 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert result.trainable_params == PART_B_PARAMS[name]

    trained = np.asarray(built[0](data.x_test, training=False))
    result.save(tmp_path)
    logits_fn, params = keras_mlp.load_logits_fn(tmp_path, variant, 784, 10)
    loaded = logits_fn(data.x_test)

    np.testing.assert_allclose(loaded, trained, rtol=1e-6, atol=1e-6)
    assert params == PART_B_PARAMS[name]
    # The last validation loss was computed with these weights.
    _, _, x_val, y_val = data.fit_split()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y_val, logits_fn(x_val)
    )
    assert float(loss) == pytest.approx(history[-1]["val_loss"], rel=1e-4)


@pytest.mark.parametrize("name", ["b_h1", "b_h3_dropout25", "b_h4_batchnorm"])
def test_many_batches_per_call_learn_what_one_per_call_learns(
    config, name, monkeypatch
):
    """`steps_per_execution` is a speed setting: same history, same weights."""
    assert keras_train.STEPS_PER_EXECUTION > 1
    built = capture_built_model(monkeypatch)
    data = synthetic_data()
    variant = dataclasses.replace(config.variants[name], epochs=2, batch_size=10)
    histories = []
    for steps in (1, keras_train.STEPS_PER_EXECUTION):
        keras.utils.set_random_seed(0)
        result = keras_train.train(
            name,
            variant,
            data,
            seed=config.seed,
            jit_compile=False,
            progress=False,
            steps_per_execution=steps,
        )
        histories.append(result.history)

    _, y_fit, _, _ = data.fit_split()
    # More batches in an epoch than in one call, and a remainder: both paths run.
    assert len(y_fit) // 10 > keras_train.STEPS_PER_EXECUTION
    assert (len(y_fit) // 10) % keras_train.STEPS_PER_EXECUTION != 0
    assert histories[0] == histories[1]
    for one, many in zip(built[0].get_weights(), built[1].get_weights(), strict=True):
        np.testing.assert_array_equal(one, many)


def test_loading_rejects_a_model_of_another_shape(config, tmp_path):
    model = keras_mlp.build(config.variants["b_softmax"], 784, 10)
    model.save(tmp_path / keras_train.MODEL_FILE)

    with pytest.raises(ValueError, match=r"model\.keras: expected 784 inputs and 5"):
        keras_mlp.load_logits_fn(tmp_path, config.variants["b_softmax"], 784, 5)
