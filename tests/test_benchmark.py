"""The benchmark's arithmetic, its guards, and one end-to-end run on tiny sizes.

Nothing here checks how fast anything is: timings are replaced by fixed numbers
where arithmetic is checked, and only checked for consistency end to end.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose_config, run

from fmnist import benchmark
from fmnist.config import VariantConfig
from fmnist.keras_mlp.train import STEPS_PER_EXECUTION
from fmnist.training import TrainResult

ARCH_B = (784, 300, 100, 10)


def test_forward_flops_counts_every_dense_product():
    # (5, 784) @ (784, 300), (5, 300) @ (300, 100), (5, 100) @ (100, 10)
    expected = 2 * 5 * 784 * 300 + 2 * 5 * 300 * 100 + 2 * 5 * 100 * 10
    assert expected == 2_662_000
    assert benchmark.forward_flops(ARCH_B, 5) == expected
    assert benchmark.forward_flops(ARCH_B, 10) == 2 * expected


def test_train_step_flops_skips_the_pixel_gradient():
    forward = [2_352_000, 300_000, 10_000]  # per layer, batch 5, as above
    weight_gradients = forward
    input_gradients = forward[1:]  # none for the first layer's input (pixels)
    expected = sum(forward) + sum(weight_gradients) + sum(input_gradients)
    assert benchmark.train_step_flops(ARCH_B, 5) == expected == 5_634_000


def test_softmax_regression_step_is_forward_plus_weight_gradient():
    forward = 2 * 3 * 784 * 10
    assert benchmark.forward_flops((784, 10), 3) == forward
    assert benchmark.train_step_flops((784, 10), 3) == 2 * forward


def test_epoch_flops_adds_the_scoring_pass():
    flops = benchmark.epoch_flops(ARCH_B, n_train=60_000, n_eval=10_000)
    assert flops == 60_000 * 5_634_000 // 5 + 10_000 * 2_662_000 // 5


def test_layer_sizes_come_from_the_variant():
    variant = VariantConfig(hidden=[800, 600, 400, 200])
    assert benchmark.layer_sizes(variant) == (784, 800, 600, 400, 200, 10)


@pytest.mark.parametrize("sizes", [(784,), (784, 0, 10), ()])
def test_flops_reject_impossible_layer_sizes(sizes):
    with pytest.raises(ValueError, match="sizes: expected at least two positive"):
        benchmark.forward_flops(sizes, 1)


def test_gflops_rate_and_ratios():
    assert benchmark.gflops_rate(3e9, 1.5) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="seconds: expected a positive duration"):
        benchmark.gflops_rate(1.0, 0.0)
    rows = benchmark.with_ratios([{"gflops": 50.0}, {"gflops": 25.0}, {}], 50.0)
    assert [row["ratio"] for row in rows] == [1.0, 0.5, None]


def test_best_of_each_skips_warmup_and_keeps_each_fastest(monkeypatch):
    # Each call advances a fake clock by its next duration; round 0 is warm-up.
    durations = {"a": iter([0.5, 3.0, 1.0, 2.0]), "b": iter([9.0, 4.0, 5.0, 0.25])}
    clock = {"now": 0.0}
    order = []

    def call(key):
        def advance():
            clock["now"] += next(durations[key])
            order.append(key)

        return advance

    fake = types.SimpleNamespace(perf_counter=lambda: clock["now"])
    monkeypatch.setattr(benchmark, "time", fake)
    best = benchmark.best_of_each({"a": call("a"), "b": call("b")}, repeats=3)

    assert best == {"a": 1.0, "b": 0.25}
    assert order == ["a", "b"] * 4  # the calls take turns, warm-up included
    with pytest.raises(ValueError, match="repeats"):
        benchmark.best_of_each({"a": call("a")}, repeats=0)


def test_synthetic_data_has_the_prepared_shapes():
    data = benchmark.synthetic_data(100, 30, 20, seed=1)
    assert data.x_train.shape == (100, 784) and data.x_train.dtype == np.float32
    assert data.x_test.shape == (30, 784)
    assert 0.0 <= data.x_train.min() and data.x_train.max() < 1.0
    assert set(np.unique(data.y_train)) <= set(range(10))
    assert len(np.unique(data.val_index)) == 20
    assert benchmark.epoch_images(VariantConfig(family="lowlevel"), data) == (100, 30)
    assert benchmark.epoch_images(VariantConfig(family="keras_mlp"), data) == (80, 20)
    with pytest.raises(ValueError, match="n_val"):
        benchmark.synthetic_data(10, 5, 10)


def _fake_family(monkeypatch, epoch_seconds, style="iterate"):
    """Replace the training function with one whose epochs take the given wall
    seconds (and twice that in CPU seconds, two cores' worth) on a fake clock.

    It reports epochs to its progress bar as the low-level loop does (iterating)
    or as the Keras guard does (`update`), and records the epochs it was asked
    for.
    """
    clock = {"wall": 0.0, "cpu": 0.0}
    calls = []
    module = types.ModuleType("fake_training")

    def train(name, variant, data, seed, jit_compile=True, progress=True):
        # No keyword options: the benchmark passes none unless a row asks.
        calls.append(variant.epochs)
        if style == "iterate":
            for epoch in module.tqdm(range(variant.epochs), disable=not progress):
                _advance(clock, epoch_seconds[epoch])
        else:
            bar = module.tqdm(total=variant.epochs, disable=not progress)
            for epoch in range(variant.epochs):
                _advance(clock, epoch_seconds[epoch])
                bar.update(1)
                bar.set_postfix(loss="0.1")
            bar.close()
        return TrainResult([], 0, sum(epoch_seconds), lambda _: None)

    train.__module__ = module.__name__
    module.train = train
    module.tqdm = None  # what the clock stands in for
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr("fmnist.training.family", lambda name: module)
    monkeypatch.setattr("fmnist.seeding.seed_everything", lambda seed: None)
    monkeypatch.setattr(benchmark, "_clear_session", lambda: None)
    fake_time = types.SimpleNamespace(
        perf_counter=lambda: clock["wall"], process_time=lambda: clock["cpu"]
    )
    monkeypatch.setattr(benchmark, "time", fake_time)
    return calls, module


def _advance(clock, seconds):
    clock["wall"] += seconds
    clock["cpu"] += 2 * seconds


@pytest.mark.parametrize("style", ["iterate", "update"])
def test_time_training_rates_from_the_median_steady_epoch(monkeypatch, style):
    calls, module = _fake_family(monkeypatch, [4.0, 1.0, 3.0, 2.0], style)
    variant = VariantConfig(family="keras_mlp", hidden=[800, 600, 400, 200])
    variant = replace(variant, batch_size=256)
    data = benchmark.synthetic_data(1000, 300, 200)

    row = benchmark.time_training("b_h4", variant, data, 0, False, 3)

    assert calls == [4]
    assert module.tqdm is None  # the bar is put back
    assert row["first_epoch_seconds"] == 4.0
    assert row["all_epoch_seconds"] == [4.0, 1.0, 3.0, 2.0]
    assert row["epoch_seconds"] == 2.0 and row["best_epoch_seconds"] == 1.0
    assert row["epoch_cpu_seconds"] == 4.0
    assert (row["images"], row["eval_images"]) == (800, 200)
    assert row["images_per_second"] == pytest.approx(800 / 2.0)
    sizes = (784, 800, 600, 400, 200, 10)
    flops = benchmark.train_step_flops(sizes, 800) + benchmark.forward_flops(sizes, 200)
    assert row["gflops"] == pytest.approx(flops / 2.0 / 1e9)


def test_time_training_fails_when_epochs_go_unreported(monkeypatch):
    calls, module = _fake_family(monkeypatch, [1.0, 1.0, 1.0])
    module.train = lambda *args, **kwargs: None  # trains without a progress bar
    module.train.__module__ = module.__name__
    data = benchmark.synthetic_data(100, 30, 20)

    with pytest.raises(RuntimeError, match="expected one progress bar reporting 3"):
        benchmark.time_training("a_softmax", VariantConfig(), data, 0, False, 2)
    assert module.tqdm is None

    del module.tqdm
    with pytest.raises(RuntimeError, match="expected a progress bar named 'tqdm'"):
        benchmark.time_training("a_softmax", VariantConfig(), data, 0, False, 2)


def test_stage_breakdown_reads_recorded_training_times(tmp_path):
    config = compose_config("profile=tiny")
    names = list(config.variants)
    for name, seconds in ((names[0], 12.5), (names[1], 3.0)):
        path = tmp_path / config.paths.metrics / name / "eval.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"train_seconds": seconds, "epochs": 2}))

    rows = benchmark.stage_breakdown(tmp_path, config, startup=4.0)

    assert [row["variant"] for row in rows] == names
    assert rows[0]["train_seconds"] == 12.5 and rows[1]["train_seconds"] == 3.0
    assert all(row["train_seconds"] is None for row in rows[2:])
    assert all(row["startup_seconds"] == 8.0 for row in rows)

    bad = tmp_path / config.paths.metrics / names[2] / "eval.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(KeyError, match="expected a 'train_seconds' key"):
        benchmark.stage_breakdown(tmp_path, config, startup=4.0)


def test_format_table_aligns_text_left_and_numbers_right():
    text = benchmark.format_table(
        ["name", "seconds"], [["a", 1.5], ["longer", 1234.0], ["c", None]]
    )
    lines = text.splitlines()
    assert lines[0] == "name    seconds"
    assert lines[2] == "a          1.50"
    assert lines[3] == "longer    1,234"
    assert lines[4] == "c             -"


def _dvc_repo(path: Path) -> Path:
    """A one-stage DVC repository whose stage logs each run outside its outputs."""
    path.mkdir()
    run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], path)
    (path / "input.txt").write_text("1\n")
    script = (
        "import pathlib; "
        "pathlib.Path('output.txt').write_text(pathlib.Path('input.txt').read_text()); "
        "open('runs.log', 'a').write('ran\\n')"
    )
    (path / "dvc.yaml").write_text(
        "stages:\n"
        "  copy:\n"
        f'    cmd: {sys.executable} -c "{script}"\n'
        "    deps: [input.txt]\n"
        "    outs: [output.txt]\n"
    )
    return path


def test_dvc_noop_needs_a_lock_file(tmp_path):
    result = benchmark.bench_dvc_noop(tmp_path)
    assert result["ran"] is False
    assert "dvc.lock not found" in result["reason"]


def test_dvc_noop_times_only_an_up_to_date_pipeline(tmp_path):
    repo = _dvc_repo(tmp_path / "repo")
    run([sys.executable, "-m", "dvc", "repro", "-q"], repo)
    assert (repo / "runs.log").read_text() == "ran\n"

    result = benchmark.bench_dvc_noop(repo)
    assert result["ran"] is True
    assert result["repro_seconds"] > 0 and result["status_seconds"] > 0
    assert (repo / "runs.log").read_text() == "ran\n"  # nothing was reproduced

    (repo / "input.txt").write_text("2\n")
    result = benchmark.bench_dvc_noop(repo)
    assert result["ran"] is False
    assert "not up to date (1 stages changed, e.g. copy)" in result["reason"]
    assert (repo / "runs.log").read_text() == "ran\n"
    assert (repo / "output.txt").read_text() == "1\n"


def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    done = run(
        [
            sys.executable,
            "-m",
            "fmnist.benchmark",
            "--quick",
            "--skip-dvc",
            "--root",
            str(ROOT),
            "--json",
            str(out),
        ],
        tmp_path,
        timeout=900,
    )
    results = json.loads(out.read_text())
    text = done.stdout

    for header in ("1. Matrix product", "2. Training", "3. Where", "4. Pipeline"):
        assert header in text
    assert "no-op dvc repro: not run: --skip-dvc" in text

    _check_matmul(results)
    _check_training(results)
    _check_overhead(results)


def _check_matmul(results):
    n = results["sizes"]["matmul"]
    rows = results["matmul"]
    assert [row["what"] for row in rows] == [
        "numpy a @ b",
        "tf.matmul eager",
        "tf.function",
        "tf.function jit_compile",
    ]
    reference = rows[0]["gflops"]
    for row in rows:
        assert row["gflops"] == pytest.approx(2 * n**3 / row["seconds"] / 1e9)
        assert row["ratio"] == pytest.approx(row["gflops"] / reference)
    assert rows[0]["ratio"] == 1.0


def _check_training(results):
    config = compose_config()
    reference = results["matmul"][0]["gflops"]
    rows = results["training"]
    many = STEPS_PER_EXECUTION
    assert many > 1
    plan = [(r["variant"], r["batch"], r["jit"], r["steps_per_call"]) for r in rows]
    assert plan == [
        ("a_arch_b", "full", False, None),
        ("a_arch_b", "full", True, None),
        ("a_softmax", "full", config.train.jit_compile, None),
        ("b_h4", 256, False, many),
        ("b_h4", 256, True, many),
        ("b_h4", 256, config.train.jit_compile, 1),
        ("b_h4", 32, config.train.jit_compile, many),
    ]
    starred = [
        (r["variant"], r["batch"], r["jit"], r["steps_per_call"])
        for r in rows
        if r["pipeline"]
    ]
    assert starred == [
        ("a_arch_b", "full", config.train.jit_compile, None),
        ("a_softmax", "full", config.train.jit_compile, None),
        ("b_h4", 256, config.train.jit_compile, many),
    ]
    # The train stage turns op determinism on, so Keras refuses XLA; the
    # low-level loop compiles its own tf.function and keeps it.
    keras_jit = [
        config.variants[r["variant"]].family == "keras_mlp" and r["jit"] for r in rows
    ]
    assert [r["jit_fell_back"] for r in rows] == keras_jit
    assert any(keras_jit)

    for row in rows:
        epochs = row["all_epoch_seconds"]
        assert len(epochs) == 1 + results["sizes"]["steady_epochs"]
        assert all(seconds > 0 for seconds in epochs)
        assert row["first_epoch_seconds"] == epochs[0]
        assert row["epoch_seconds"] == pytest.approx(statistics.median(epochs[1:]))
        assert row["best_epoch_seconds"] == min(epochs[1:])
        sizes = benchmark.layer_sizes(config.variants[row["variant"]])
        flops = benchmark.epoch_flops(sizes, row["images"], row["eval_images"])
        assert row["images_per_second"] == pytest.approx(
            row["images"] / row["epoch_seconds"]
        )
        assert row["gflops"] == pytest.approx(flops / row["epoch_seconds"] / 1e9)
        assert row["ratio"] == pytest.approx(row["gflops"] / reference)

    parts = [(r["variant"], r["part"]) for r in results["breakdown"]]
    assert ("a_arch_b", "optimizer update") in parts
    assert ("b_h4", "matrix products (forward and backward)") in parts
    b_h4 = [r for r in results["breakdown"] if r["variant"] == "b_h4"]
    n_fit = results["sizes"]["n_train"] - results["sizes"]["n_val"]
    assert all(r["steps"] == math.ceil(n_fit / 256) for r in b_h4)


def _check_overhead(results):
    startup = results["startup"]
    assert all(seconds > 0 for seconds in startup.values())
    assert startup["stage start-up estimate"] == pytest.approx(
        startup["import training code (TF, Keras)"]
        + startup["stages.train --help (Hydra, config)"]
        - startup["python"]
    )
    assert results["dvc"] == {"ran": False, "reason": "--skip-dvc"}
    names = [row["variant"] for row in results["stages"]]
    assert names == list(compose_config().variants)
