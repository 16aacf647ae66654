"""The configuration schema: the real config validates; every field refuses a
bad value with an error naming its key; the stages refuse before any work."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import math
import typing
from pathlib import Path

import pytest
from conftest import compose_config, compose_raw, make_repo, run
from omegaconf import OmegaConf

from fmnist.config import Config, ConfigError, load_config

VARIANT = "b_h4"
# Placeholder for "any variant" when listing the schema's keys.
ANY = "<name>"


@functools.cache
def composed(*overrides: str) -> dict:
    """Compose once per set of overrides: Hydra takes about a second a time."""
    return OmegaConf.to_container(compose_raw(*overrides), resolve=True)


def raw_tree(*overrides: str) -> dict:
    """The composed config as plain containers, interpolations resolved."""
    return copy.deepcopy(composed(*overrides))


def small_tree() -> dict:
    """The composed config with only the variants the cases below touch:
    OmegaConf takes a fifth of a second to check all eighteen."""
    tree = raw_tree()
    keep = (VARIANT, "a_softmax", "b_softmax", "b_h3")
    tree["variants"] = {name: tree["variants"][name] for name in keep}
    return tree


def with_value(tree: dict, key: str, value) -> dict:
    """Return a copy of `tree` with the dotted `key` set to `value`."""
    tree = copy.deepcopy(tree)
    *parents, last = key.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[last] = value
    return tree


def schema_keys(schema: type = Config, prefix: str = "") -> set[str]:
    """Every leaf key of the schema, with `<name>` for a variant's name."""
    keys = set()
    hints = typing.get_type_hints(schema)
    for item in dataclasses.fields(schema):
        kind, key = hints[item.name], f"{prefix}{item.name}"
        entry = typing.get_args(kind)[1] if typing.get_origin(kind) is dict else None
        if dataclasses.is_dataclass(kind):
            keys |= schema_keys(kind, f"{key}.")
        elif entry is not None and dataclasses.is_dataclass(entry):
            keys |= schema_keys(entry, f"{key}.{ANY}.")
        else:
            keys.add(key)
    return keys


def sections(schema: type = Config, prefix: str = "") -> list[str]:
    """Every mapping of the schema with fixed keys, outermost first."""
    found = [prefix.rstrip(".")]
    hints = typing.get_type_hints(schema)
    for item in dataclasses.fields(schema):
        kind, key = hints[item.name], f"{prefix}{item.name}"
        entry = typing.get_args(kind)[1] if typing.get_origin(kind) is dict else None
        if dataclasses.is_dataclass(kind):
            found += sections(kind, f"{key}.")
        elif entry is not None and dataclasses.is_dataclass(entry):
            found += sections(entry, f"{key}.{VARIANT}.")
    return found


V = f"variants.{VARIANT}"
# (key set, bad value, key the error must name). Wrong types, out-of-range
# values and values OmegaConf lets through unchecked, for every field.
HOSTILE = [
    ("seed", -1, "seed"),
    ("seed", "x", "seed"),
    ("seed", 1.5, "seed"),
    ("seed", None, "seed"),
    ("profile.name", "", "profile.name"),
    ("profile.name", ["full"], "profile.name"),
    ("profile.epochs_a", 0, "profile.epochs_a"),
    ("profile.epochs_a", -3, "profile.epochs_a"),
    ("profile.epochs_b", "two", "profile.epochs_b"),
    ("profile.epochs_b", -1, "profile.epochs_b"),
    ("profile.val_size", -1, "profile.val_size"),
    ("profile.train_limit", 0, "profile.train_limit"),
    ("profile.test_limit", -5, "profile.test_limit"),
    ("profile.test_limit", 2.5, "profile.test_limit"),
    *[
        (f"paths.{key}", value, f"paths.{key}")
        for key in ("raw", "prepared", "models", "metrics", "plots", "reports")
        for value in ("/abs/out", "../out", "data/../../out", "", ["a"])
    ],
    ("fetch.prefer", "web", "fetch.prefer"),
    ("fetch.mirror_dir", ["a"], "fetch.mirror_dir"),
    ("fetch.mirror_dirs", "data/mirror", "fetch.mirror_dirs"),
    ("fetch.mirror_dirs", [["a"]], "fetch.mirror_dirs[0]"),
    ("fetch.mirror_dirs", ["ok", ""], "fetch.mirror_dirs[1]"),
    ("fetch.allow_download", "maybe", "fetch.allow_download"),
    ("fetch.allow_download", [True], "fetch.allow_download"),
    ("fetch.tfds_data_dir", {"a": 1}, "fetch.tfds_data_dir"),
    ("prepare.val_size", -1, "prepare.val_size"),
    ("prepare.val_size", 2.5, "prepare.val_size"),
    ("prepare.train_limit", 0, "prepare.train_limit"),
    ("prepare.test_limit", -1, "prepare.test_limit"),
    ("train.jit_compile", "maybe", "train.jit_compile"),
    ("train.mixed_precision", "sometimes", "train.mixed_precision"),
    ("evaluate.batch_size", 0, "evaluate.batch_size"),
    ("evaluate.batch_size", "all", "evaluate.batch_size"),
    ("plots.dpi", -1, "plots.dpi"),
    ("plots.dpi", 0, "plots.dpi"),
    ("report.reference_accuracy", [0.9], "report.reference_accuracy"),
    ("report.reference_accuracy.b_h4", "high", "report.reference_accuracy.b_h4"),
    ("report.reference_accuracy.b_h4", 1.5, "report.reference_accuracy.b_h4"),
    ("report.reference_accuracy.b_h4", -0.1, "report.reference_accuracy.b_h4"),
    ("report.reference_accuracy.b_h4", math.nan, "report.reference_accuracy.b_h4"),
    ("variants", [], "variants"),
    ("variants", {}, "variants"),
    (V, [1], V),
    (f"{V}.family", "torch", f"{V}.family"),
    (f"{V}.hidden", [0], f"{V}.hidden[0]"),
    (f"{V}.hidden", [800, -3], f"{V}.hidden[1]"),
    (f"{V}.hidden", "800", f"{V}.hidden"),
    (f"{V}.hidden", [True], f"{V}.hidden[0]"),
    (f"{V}.activation", "swish", f"{V}.activation"),
    (f"{V}.dropout", 1.0, f"{V}.dropout"),
    (f"{V}.dropout", -0.1, f"{V}.dropout"),
    (f"{V}.l1", -1.0, f"{V}.l1"),
    (f"{V}.l1", math.inf, f"{V}.l1"),
    (f"{V}.l2", -1e-3, f"{V}.l2"),
    (f"{V}.l2", math.nan, f"{V}.l2"),
    (f"{V}.batchnorm", "maybe", f"{V}.batchnorm"),
    (f"{V}.bn_momentum", 1.0, f"{V}.bn_momentum"),
    (f"{V}.bn_momentum", -0.5, f"{V}.bn_momentum"),
    (f"{V}.bn_epsilon", 0.0, f"{V}.bn_epsilon"),
    (f"{V}.bn_epsilon", math.inf, f"{V}.bn_epsilon"),
    (f"{V}.epochs", 0, f"{V}.epochs"),
    (f"{V}.epochs", -1, f"{V}.epochs"),
    (f"{V}.epochs", 2.5, f"{V}.epochs"),
    (f"{V}.batch_size", 0, f"{V}.batch_size"),
    (f"{V}.batch_size", None, f"{V}.batch_size"),
    (f"{V}.learning_rate", 0.0, f"{V}.learning_rate"),
    (f"{V}.learning_rate", -0.001, f"{V}.learning_rate"),
    (f"{V}.learning_rate", math.inf, f"{V}.learning_rate"),
    (f"{V}.learning_rate", math.nan, f"{V}.learning_rate"),
    (f"{V}.learning_rate", "fast", f"{V}.learning_rate"),
    (f"{V}.optimizer", "lbfgs", f"{V}.optimizer"),
    (f"{V}.init_std", 0.0, f"{V}.init_std"),
    (f"{V}.init_std", math.inf, f"{V}.init_std"),
    ("variants.a_softmax.dropout", 0.5, "variants.a_softmax.dropout"),
    ("variants.b_softmax.batchnorm", True, "variants.b_softmax.hidden"),
    ("variant", "nope", "variant"),
    ("variant", ["b_h4"], "variant"),
    *[
        (f"{section}.unknown" if section else "unknown", 1, "unknown")
        for section in sections()
    ],
]


def test_real_config_composes_and_validates_full():
    config = compose_config()

    assert config.profile.name == "full"
    assert config.prepare.train_limit is None and config.prepare.val_size == 6000
    assert len(config.variants) == 18
    assert config.variants["a_softmax"].family == "lowlevel"
    assert config.variants["a_softmax"].epochs == 100
    assert config.variants["b_h4"].hidden == [800, 600, 400, 200]
    assert config.variants["b_h4"].epochs == 20


def test_real_config_composes_and_validates_tiny():
    config = compose_config("profile=tiny")

    assert config.profile.name == "tiny"
    assert config.prepare.train_limit == config.profile.train_limit
    assert config.prepare.val_size < config.prepare.train_limit
    assert {v.epochs for v in config.variants.values()} == {
        config.profile.epochs_a,
        config.profile.epochs_b,
    }
    assert sorted(config.variants) == sorted(compose_config().variants)


def test_plain_dict_and_omegaconf_tree_give_the_same_config():
    assert load_config(raw_tree()) == load_config(compose_raw())


def test_hostile_cases_cover_every_field_and_section():
    covered = {key.replace(f"{V}.", f"variants.{ANY}.") for key, _, _ in HOSTILE}
    assert schema_keys() <= covered, schema_keys() - covered
    unknown = {key for key, _, _ in HOSTILE if key.endswith("unknown")}
    assert len(unknown) == len(sections()) >= 10


@pytest.mark.parametrize(
    ("key", "value", "named"),
    HOSTILE,
    ids=[f"{key}={value!r}" for key, value, _ in HOSTILE],
)
def test_bad_value_is_rejected_naming_the_key(key, value, named):
    load_config(small_tree())
    tree = with_value(small_tree(), key, value)

    with pytest.raises(ConfigError) as error:
        load_config(tree)

    assert named in str(error.value)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "..", ".hidden", "b_h4\n", ""])
def test_path_like_variant_names_are_rejected(name):
    tree = small_tree()
    tree["variants"][name] = tree["variants"][VARIANT]

    with pytest.raises(ConfigError) as error:
        load_config(tree)
    assert repr(name) in str(error.value)

    with pytest.raises(ConfigError) as error:
        load_config(with_value(small_tree(), "variant", name))
    assert repr(name) in str(error.value)


def test_selected_variant_is_returned():
    config = load_config(with_value(small_tree(), "variant", "b_h3"))

    name, variant = config.selected()

    assert name == "b_h3" and variant.hidden == [600, 400, 200]


def test_no_selected_variant_lists_the_choices():
    with pytest.raises(ConfigError, match="variant=<name>.*b_h4"):
        compose_config().selected()


def test_validation_set_must_be_smaller_than_the_training_subset():
    tree = with_value(raw_tree("profile=tiny"), "prepare.val_size", 3000)

    with pytest.raises(ConfigError, match="prepare.val_size.*3000"):
        load_config(tree)


def test_broken_interpolation_is_a_config_error():
    raw = compose_raw()
    raw.prepare.val_size = "${profile.no_such_key}"

    with pytest.raises(ConfigError, match="no_such_key"):
        load_config(raw)


def test_hydra_node_is_ignored():
    tree = raw_tree()
    tree["hydra"] = {"run": {"dir": "outputs"}}

    assert load_config(tree) == load_config(raw_tree())


# The stages, run as users run them, in a throwaway copy of the repository.


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file, leaving out git's and DVC's own state and Hydra's
    run logs under outputs/ (written before the job starts)."""
    skip = (".git/", ".dvc/tmp/", "outputs/")
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not str(path.relative_to(root)).startswith(skip)
    }


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """A tiny-profile copy of the repository; the tests here must not change it."""
    return make_repo(tmp_path_factory.mktemp("config") / "repo")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["stages.train", "variant=nope"], "variant"),
        (["stages.train", "variant=../x"], "variant name '../x'"),
        (["stages.train", f"{V}.learning_rate=-1"], f"{V}.learning_rate"),
        (["stages.prepare", "prepare.val_size=999999"], "prepare.val_size"),
        (["stages.prepare", "seed=-4"], "seed"),
        (["stages.fetch", "paths.raw=/tmp/raw.npz"], "paths.raw"),
    ],
)
def test_stage_refuses_bad_config_before_work(repo_copy, args, named):
    before = snapshot(repo_copy)

    result = run(["python", "-m", *args], repo_copy, check=False, timeout=300)

    assert result.returncode != 0
    assert named in result.stderr
    assert "ConfigError" in result.stderr
    assert snapshot(repo_copy) == before
