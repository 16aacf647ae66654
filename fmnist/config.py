"""Typed schema of the pipeline's configuration, and its validation.

Every stage turns the raw Hydra/OmegaConf tree into a `Config` through
`load_config`, which rejects unknown keys, wrong types and out-of-range values
before any work starts. Errors name the key, what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

FAMILIES = ("lowlevel", "keras_mlp")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SOURCES = ("mirror", "tfds")
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclass
class ProfileConfig:
    name: str = "full"
    epochs_a: int = 100
    epochs_b: int = 20
    val_size: int = 6000
    train_limit: int | None = None
    test_limit: int | None = None


@dataclass
class PathsConfig:
    raw: str = "data/raw/fashion_mnist.npz"
    prepared: str = "data/prepared/dataset.npz"
    models: str = "models"
    metrics: str = "metrics"
    plots: str = "plots"
    reports: str = "reports"


@dataclass
class FetchConfig:
    prefer: str = "mirror"
    mirror_dir: str | None = None
    mirror_dirs: list[str] = field(default_factory=list)
    allow_download: bool = True
    tfds_data_dir: str | None = None


@dataclass
class PrepareConfig:
    val_size: int = 6000
    train_limit: int | None = None
    test_limit: int | None = None


@dataclass
class VariantConfig:
    family: str = "keras_mlp"
    hidden: list[int] = field(default_factory=list)
    activation: str = "relu"
    dropout: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    batchnorm: bool = False
    bn_momentum: float = 0.99
    bn_epsilon: float = 0.001
    epochs: int = 20
    batch_size: int | None = None
    learning_rate: float = 0.001
    optimizer: str = "adam"
    init_std: float = 0.01


@dataclass
class TrainConfig:
    jit_compile: bool = False
    mixed_precision: bool = False


@dataclass
class EvaluateConfig:
    batch_size: int = 10000


@dataclass
class PlotsConfig:
    dpi: int = 110


@dataclass
class ReportConfig:
    reference_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass
class Config:
    seed: int = 42
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    variants: dict[str, VariantConfig] = field(default_factory=dict)
    # The variant a train or evaluate stage works on; set on the command line.
    variant: str | None = None

    def selected(self) -> tuple[str, VariantConfig]:
        """Return the name and config of the variant chosen with `variant=`."""
        if self.variant is None:
            raise ConfigError(
                "no variant selected: pass variant=<name>, one of "
                f"{sorted(self.variants)}"
            )
        check_variant_name(self.variant)
        if self.variant not in self.variants:
            raise ConfigError(
                f"variant: unknown variant {self.variant!r}; expected one of "
                f"{sorted(self.variants)}"
            )
        return self.variant, self.variants[self.variant]


def load_config(raw: DictConfig | dict[str, Any]) -> Config:
    """Check a raw config tree against the schema and return it typed.

    Args:
        raw: the composed tree (params.yaml or a Hydra config); a `hydra` node,
            if present, is ignored.

    Returns:
        The validated `Config`.

    Raises:
        ConfigError: on an unknown key, a wrong type or an out-of-range value.
    """
    try:
        if isinstance(raw, DictConfig):
            tree = OmegaConf.to_container(raw, resolve=True)
        else:
            tree = raw
        # OmegaConf's own message for a list where a section belongs names no key.
        _check_sections(tree, Config, "")
        tree = {key: value for key, value in tree.items() if key != "hydra"}
        merged = OmegaConf.merge(OmegaConf.structured(Config), tree)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error)) from None

    validate(config)
    return config


def _check_sections(tree: Any, schema: type, key: str) -> None:
    """Reject a value that is not a mapping where the schema has a section."""
    if not isinstance(tree, Mapping):
        raise ConfigError(
            f"{key or 'the configuration'}: expected a mapping of keys to values, "
            f"got {tree!r}"
        )
    hints = typing.get_type_hints(schema)
    for item in dataclasses.fields(schema):
        if item.name not in tree:
            continue
        child, kind = _join(key, item.name), hints[item.name]
        value = tree[item.name]
        if dataclasses.is_dataclass(kind):
            _check_sections(value, kind, child)
        elif typing.get_origin(kind) is dict:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{child}: expected a mapping of names to values, got {value!r}"
                )
            entry = typing.get_args(kind)[1]
            if dataclasses.is_dataclass(entry):
                for name, node in value.items():
                    _check_sections(node, entry, _join(child, str(name)))


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _describe(error: OmegaConfBaseException) -> str:
    key = getattr(error, "full_key", None)
    message = str(error).splitlines()[0]
    if key:
        return f"invalid configuration at {key!r}: {message}"
    return f"invalid configuration: {message}"


def check_variant_name(name: str) -> None:
    """Reject variant names that could escape the output directories."""
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        raise ConfigError(
            f"variant name {name!r} is not allowed: expected letters, digits, '_' "
            "or '-', starting with a letter or digit (no path separators or '..')"
        )


def check_relative_path(key: str, value: str) -> None:
    """Reject output paths that are absolute or climb out of the repository."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ConfigError(
            f"{key}: expected a relative path inside the repository, got {value!r}"
        )


def validate(config: Config) -> None:
    """Check value ranges that the type system cannot express.

    Raises:
        ConfigError: naming the first offending key, the expectation and the value.
    """
    # SeedSequence, which derives every sub-seed, refuses negative seeds.
    _check_positive("seed", config.seed, allow_zero=True)

    profile = config.profile
    if not profile.name:
        raise ConfigError("profile.name: expected a non-empty name, got ''")
    _check_positive("profile.epochs_a", profile.epochs_a)
    _check_positive("profile.epochs_b", profile.epochs_b)
    _check_positive("profile.val_size", profile.val_size, allow_zero=True)
    for key in ("train_limit", "test_limit"):
        if getattr(profile, key) is not None:
            _check_positive(f"profile.{key}", getattr(profile, key))

    for key, value in vars(config.paths).items():
        check_relative_path(f"paths.{key}", value)

    fetch = config.fetch
    _check_choice("fetch.prefer", fetch.prefer, SOURCES)
    # OmegaConf lets a list or mapping through as an item of a list of strings.
    for index, directory in enumerate(fetch.mirror_dirs):
        if not isinstance(directory, str) or not directory:
            raise ConfigError(
                f"fetch.mirror_dirs[{index}]: expected a directory path, "
                f"got {directory!r}"
            )

    prepare = config.prepare
    _check_positive("prepare.val_size", prepare.val_size, allow_zero=True)
    for key in ("train_limit", "test_limit"):
        value = getattr(prepare, key)
        if value is not None:
            _check_positive(f"prepare.{key}", value)
    if prepare.train_limit is not None and prepare.val_size >= prepare.train_limit:
        raise ConfigError(
            f"prepare.val_size: expected fewer than prepare.train_limit "
            f"({prepare.train_limit}) images, got {prepare.val_size}"
        )

    _check_positive("evaluate.batch_size", config.evaluate.batch_size)
    _check_positive("plots.dpi", config.plots.dpi)
    for name, value in config.report.reference_accuracy.items():
        key = f"report.reference_accuracy.{name}"
        _check_range(
            key, value, 0.0, 1.0, "in [0, 1]", low_inclusive=True, high_inclusive=True
        )

    if not config.variants:
        raise ConfigError("variants: expected at least one variant, got none")
    for name, variant in config.variants.items():
        check_variant_name(name)
        validate_variant(name, variant)

    if config.variant is not None:
        config.selected()


def validate_variant(name: str, variant: VariantConfig) -> None:
    """Check one variant's values; errors name `variants.<name>.<key>`."""
    key = f"variants.{name}"
    _check_choice(f"{key}.family", variant.family, FAMILIES)
    _check_choice(f"{key}.activation", variant.activation, ACTIVATIONS)
    _check_choice(f"{key}.optimizer", variant.optimizer, OPTIMIZERS)
    for index, units in enumerate(variant.hidden):
        _check_positive(f"{key}.hidden[{index}]", units)
    _check_positive(f"{key}.epochs", variant.epochs)
    if variant.batch_size is not None:
        _check_positive(f"{key}.batch_size", variant.batch_size)
    elif variant.family == "keras_mlp":
        raise ConfigError(
            f"{key}.batch_size: expected a positive integer for family keras_mlp, "
            "got null"
        )
    _check_range(f"{key}.learning_rate", variant.learning_rate, 0.0, None, "> 0")
    _check_range(f"{key}.dropout", variant.dropout, 0.0, 1.0, "in [0, 1)", True)
    _check_range(f"{key}.l1", variant.l1, 0.0, None, ">= 0", True)
    _check_range(f"{key}.l2", variant.l2, 0.0, None, ">= 0", True)
    _check_range(f"{key}.bn_momentum", variant.bn_momentum, 0.0, 1.0, "in [0, 1)", True)
    _check_range(f"{key}.bn_epsilon", variant.bn_epsilon, 0.0, None, "> 0")
    _check_range(f"{key}.init_std", variant.init_std, 0.0, None, "> 0")

    if variant.family == "lowlevel" and variant.dropout > 0:
        raise ConfigError(
            f"{key}.dropout: family lowlevel has no dropout; expected 0, "
            f"got {variant.dropout}"
        )
    if (variant.batchnorm or variant.dropout > 0) and not variant.hidden:
        what = "batchnorm" if variant.batchnorm else "dropout"
        raise ConfigError(
            f"{key}.hidden: {what} acts on hidden layers; expected at least one "
            "layer size, got an empty list"
        )


def _check_positive(key: str, value: int, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        expected = "a non-negative integer" if allow_zero else "a positive integer"
        raise ConfigError(f"{key}: expected {expected}, got {value}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")


def _check_range(
    key: str,
    value: float,
    low: float,
    high: float | None,
    expected: str,
    low_inclusive: bool = False,
    high_inclusive: bool = False,
) -> None:
    too_low = value < low if low_inclusive else value <= low
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    # NaN fails every comparison and infinity passes an open upper bound.
    if too_low or too_high or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a value {expected}, got {value}")
