"""Reliability: the same seed gives the same history, a diverging run stops with
a clear error and writes nothing, and a killed run never leaves half-written or
silently stale outputs.

What DVC itself does matters for the last point: before `dvc repro` runs a
stage's command it deletes that stage's outputs (unless they are `persist`), so
a `dvc repro` killed mid-training leaves no model. `dvc status` then reports the
outputs as deleted, `dvc checkout` restores the cached model directory, and the
history, being `cache: false`, comes back from git.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, clone_state, compose_config, env, make_repo, run

from fmnist.data import sources
from fmnist.data.prepare import prepare
from fmnist.io import atomic_dir, atomic_path, write_json
from fmnist.params import write
from fmnist.seeding import derive_seed, seed_everything
from fmnist.training import DivergenceError, check_finite, family

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
# Epochs enough that a killed run is surely still training.
LONG = 500
EPOCH_DONE = re.compile(rf"\b[1-9]\d*/{LONG}\b")


@pytest.fixture(scope="module")
def tiny():
    """The tiny configuration and its prepared data, from the local mirror."""
    config = compose_config(*TINY)
    arrays = sources.load_mirror(DEBIAN_DIR).arrays
    data = prepare(arrays, config.prepare, derive_seed(config.seed, "prepare"))
    return config, data


def train_with_seeds(module, name, variant, data, seeds=(42, 42)):
    """Train one variant once per seed, seeded as the train stage seeds it."""
    results = []
    for seed in seeds:
        seed_everything(seed)
        results.append(
            module.train(name, variant, data, seed, jit_compile=False, progress=False)
        )
    return results


def saved_arrays(result, directory: Path) -> list[np.ndarray]:
    """Save a trained model and read its weights back as arrays."""
    directory.mkdir()
    result.save(directory)
    if (directory / "weights.npz").exists():
        with np.load(directory / "weights.npz") as state:
            return [state[key] for key in sorted(state.files)]
    import keras

    model = keras.models.load_model(directory / "model.keras", compile=False)
    return model.get_weights()


@pytest.mark.parametrize("name", ["a_arch_b_batchnorm", "b_h3_dropout25"])
def test_same_seed_same_history_and_weights(tiny, tmp_path, name):
    config, data = tiny
    variant = config.variants[name]

    first, second = train_with_seeds(family(variant.family), name, variant, data)

    assert len(first.history) == variant.epochs
    assert first.history == second.history
    weights = [
        saved_arrays(r, tmp_path / str(i)) for i, r in enumerate([first, second])
    ]
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


# Trains one variant on the whole training set in a fresh interpreter, seeded as
# the train stage seeds it, and prints its history as JSON (floats in full).
FULL_SIZE_RUN = """
import dataclasses, json, sys
from fmnist.data import sources
from fmnist.data.prepare import prepare
from fmnist.seeding import derive_seed, seed_everything
from fmnist.training import family
from conftest import compose_config
name, epochs = sys.argv[1], int(sys.argv[2])
config = compose_config()  # the full profile: every image
seed_everything(config.seed)
arrays = sources.load_mirror(sys.argv[3]).arrays
data = prepare(arrays, config.prepare, derive_seed(config.seed, "prepare"))
variant = dataclasses.replace(config.variants[name], epochs=epochs)
result = family(variant.family).train(
    name, variant, data, config.seed, jit_compile=False, progress=False
)
print(json.dumps([len(data.y_train), result.history]))
"""


def python_in_new_process(code: str, *args: str):
    """Run `code` in a new interpreter (the tests' folder first on its path)."""
    return run([sys.executable, "-c", code, *args], cwd=Path(__file__).parent)


def test_full_size_batchnorm_history_is_identical_across_processes():
    """Three separate processes, one full-size history.

    With TensorFlow running a step's independent ops side by side, this network's
    test loss differed in the last digits between processes within a few epochs
    (in most runs of three), although op determinism was on.
    """
    histories = []
    for _ in range(3):
        result = python_in_new_process(
            FULL_SIZE_RUN, "a_arch_b_batchnorm", "12", DEBIAN_DIR
        )
        n_train, history = json.loads(result.stdout.strip().splitlines()[-1])
        assert n_train == 60000
        assert len(history) == 12
        histories.append(history)

    assert histories[1] == histories[0]
    assert histories[2] == histories[0]


def test_seeding_runs_graph_ops_one_at_a_time():
    code = (
        "from fmnist.seeding import seed_everything; seed_everything(0); "
        "import tensorflow as tf; "
        "print(tf.config.threading.get_inter_op_parallelism_threads())"
    )
    result = python_in_new_process(code)
    assert result.stdout.strip().splitlines()[-1] == "1"


def test_seeding_after_tensorflow_started_warns_that_results_may_differ():
    code = (
        "import logging; logging.basicConfig(); import tensorflow as tf; "
        "tf.constant(1.0) + 1.0; "
        "from fmnist.seeding import seed_everything; seed_everything(0)"
    )
    result = python_in_new_process(code)
    assert "results can differ in the last digits between processes" in result.stderr


@pytest.mark.parametrize("name", ["a_arch_a", "b_h1"])
def test_another_seed_gives_another_history(tiny, name):
    config, data = tiny
    variant = config.variants[name]

    first, second = train_with_seeds(
        family(variant.family), name, variant, data, (1, 2)
    )

    assert first.history != second.history


@pytest.mark.parametrize("name", ["a_arch_b", "b_h1"])
def test_huge_learning_rate_raises_divergence_naming_variant_and_epoch(tiny, name):
    config, data = tiny
    # Plain SGD: the step grows with the gradient, so the ReLU layers blow up to
    # inf and then NaN within two epochs. (Adam's step is bounded by the
    # learning rate: at 1e6 its loss stays finite, near 1e23, in two epochs.)
    variant = dataclasses.replace(
        config.variants[name], learning_rate=1e6, optimizer="sgd"
    )

    with pytest.raises(DivergenceError) as error:
        train_with_seeds(family(variant.family), name, variant, data, (42,))

    message = str(error.value)
    assert f"variant {name}:" in message
    assert re.search(r"at epoch [12]\b", message), message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_names_variant_key_and_epoch(bad):
    check_finite("b_h4", 3, {"loss": 0.5, "val_loss": 1.0})

    with pytest.raises(DivergenceError) as error:
        check_finite("b_h4", 3, {"loss": 0.5, "val_loss": bad})

    assert "variant b_h4: val_loss" in str(error.value)
    assert "epoch 3" in str(error.value)


# Safe output: a failure while writing leaves the previous file or directory.


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out" / "table.csv"
    write_json(target, {"version": 1})
    earlier = target.read_bytes()

    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a tab", encoding="utf-8")
        raise RuntimeError("interrupted")

    assert target.read_bytes() == earlier
    assert os.listdir(target.parent) == ["table.csv"]


def test_atomic_dir_keeps_the_old_directory_when_writing_fails(tmp_path):
    target = tmp_path / "models" / "b_h4"
    with atomic_dir(target) as tmp:
        (tmp / "weights.npz").write_bytes(b"old weights")

    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "weights.npz").write_bytes(b"new wei")
        raise RuntimeError("interrupted")

    assert os.listdir(target.parent) == ["b_h4"]
    assert os.listdir(target) == ["weights.npz"]
    assert (target / "weights.npz").read_bytes() == b"old weights"

    with atomic_dir(target) as tmp:
        (tmp / "weights.npz").write_bytes(b"new weights")
    assert os.listdir(target.parent) == ["b_h4"]
    assert (target / "weights.npz").read_bytes() == b"new weights"


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    # The temporary names are private (0600, 0700) while they are written; the
    # outputs must end up as any other new file or directory would.
    (tmp_path / "plain.json").write_text("{}", encoding="utf-8")
    (tmp_path / "plain").mkdir()

    write_json(tmp_path / "eval.json", {"accuracy": 0.5})
    with atomic_dir(tmp_path / "model"):
        pass

    def mode(name):
        return stat.S_IMODE((tmp_path / name).stat().st_mode)

    assert mode("eval.json") == mode("plain.json")
    assert mode("model") == mode("plain")


# The stages, run as users run them, in throwaway copies of the repository.


def files(root: Path, *parts: str) -> dict[str, str]:
    """SHA-256 of every file (hidden ones too) under the given directories."""
    found = {}
    for part in parts:
        for path in sorted((root / part).rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path.relative_to(root))] = digest
    return found


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start a command in its own process group, its output going to `log`."""
    with open(log, "wb") as handle:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_for_training(process: subprocess.Popen, log: Path, timeout: float = 300):
    """Wait until the progress bar shows a finished epoch of a long run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace")
        if EPOCH_DONE.search(text):
            return
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before training:\n{text[-4000:]}")
        time.sleep(0.25)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no epoch finished within {timeout} s:\n{log.read_text()[-4000:]}")


def kill(process: subprocess.Popen, signum: int) -> None:
    """Send `signum` to the process group we started, and reap it."""
    os.killpg(process.pid, signum)
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny copy where `dvc repro train@b_h4` ran and was committed."""
    repo = make_repo(tmp_path_factory.mktemp("reliability") / "repo")
    run(["dvc", "repro", "train@b_h4"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "b_h4 trained"], repo)
    return repo


@pytest.mark.slow
def test_diverging_stage_exits_nonzero_and_writes_nothing(trained, tmp_path):
    repo = clone_state(trained, tmp_path / "repo")
    before = files(repo, "models", "metrics", "data")

    result = run(
        [
            "python",
            "-m",
            "stages.train",
            "variant=b_h1",
            "variants.b_h1.learning_rate=1e6",
            "variants.b_h1.optimizer=sgd",
        ],
        repo,
        check=False,
        timeout=600,
    )

    assert result.returncode != 0
    assert "DivergenceError: variant b_h1:" in result.stderr
    assert re.search(r"at epoch \d+", result.stderr)
    assert not (repo / "models" / "b_h1").exists()
    assert not (repo / "metrics" / "b_h1").exists()
    assert files(repo, "models", "metrics", "data") == before


@pytest.mark.slow
def test_stage_killed_mid_training_keeps_previous_outputs(trained, tmp_path):
    repo = clone_state(trained, tmp_path / "repo")
    before = files(repo, "models", "metrics", "data")
    assert "models/b_h4/model.keras" in before
    assert "metrics/b_h4/history.csv" in before
    log = tmp_path / "train.log"

    process = start(
        [
            "python",
            "-m",
            "stages.train",
            "variant=b_h4",
            f"variants.b_h4.epochs={LONG}",
        ],
        repo,
        log,
    )
    wait_for_training(process, log)
    kill(process, signal.SIGTERM)

    assert process.returncode == -signal.SIGTERM
    # Same files, same bytes, and no temporary file or directory left beside them.
    assert files(repo, "models", "metrics", "data") == before
    assert sorted(os.listdir(repo / "models")) == ["b_h4"]
    assert sorted(os.listdir(repo / "metrics" / "b_h4")) == ["history.csv"]
    status = run(["dvc", "status", "train@b_h4"], repo).stdout
    assert "up to date" in status, status


@pytest.mark.slow
def test_dvc_repro_killed_mid_training_is_reported_and_restorable(trained, tmp_path):
    repo = clone_state(trained, tmp_path / "repo")
    before = files(repo, "models", "metrics", "data")
    write(repo / "params.yaml", overrides=[f"variants.b_h4.epochs={LONG}"])
    log = tmp_path / "repro.log"

    process = start(["dvc", "repro", "train@b_h4"], repo, log)
    wait_for_training(process, log)
    # DVC removed the stage's outputs before it started the command.
    assert not (repo / "models" / "b_h4").exists()
    assert not (repo / "metrics" / "b_h4" / "history.csv").exists()
    kill(process, signal.SIGKILL)

    status = run(["dvc", "status", "train@b_h4"], repo).stdout
    assert "variants.b_h4" in status, status
    assert re.search(r"deleted:\s+models/b_h4\n", status), status
    assert re.search(r"deleted:\s+metrics/b_h4/history.csv\n", status), status
    assert os.listdir(repo / "models") == []

    write(repo / "params.yaml")
    run(["dvc", "checkout", "train@b_h4"], repo)
    restored = files(repo, "models", "metrics", "data")
    assert {k: v for k, v in before.items() if k.startswith("models/")} == {
        k: v for k, v in restored.items() if k.startswith("models/")
    }
    # DVC keeps no copy of a `cache: false` output; the committed one is in git.
    assert "metrics/b_h4/history.csv" not in restored
    run(["git", "checkout", "--", "metrics/b_h4/history.csv"], repo)

    assert files(repo, "models", "metrics", "data") == before
    status = run(["dvc", "status", "train@b_h4"], repo).stdout
    assert "up to date" in status, status
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
