"""Experiment workflows, end to end on the tiny profile in throwaway copies.

Each slow test works in a private copy of the repository (its own git and DVC
state) on which the whole tiny pipeline has already run: incremental reruns, the
guard against a stale params.yaml, DVC experiments and their queue, Hydra
multirun sweeps of the stage scripts and their summary, sharing results through
a DVC remote, and the run cache. The stage list is read from the copy's
`dvc.yaml`, so stages that combine every variant (plots, report) are expected
wherever they exist.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run
from omegaconf import OmegaConf

from fmnist.sweep import COLUMNS, SweepSummary

log = logging.getLogger(__name__)

# The stage that checks params.yaml against conf/ (see dvc.yaml).
GUARD = "params"
DATA_STAGES = {"fetch", "prepare"}
PER_VARIANT = ("train", "evaluate")

RAN = re.compile(r"Running stage '([^']+)'")
CACHED = re.compile(r"Stage '([^']+)' is cached - skipping run")
SKIPPED = re.compile(r"'([^']+)' didn't change, skipping")
STALE_MESSAGE = "params.yaml does not match conf/"

# Hidden layer sizes and what Keras counts for them: weights and biases of each
# dense layer, 784 inputs, 10 classes.
N_FEATURES, N_CLASSES = 784, 10


def mlp_params(*hidden: int) -> int:
    """Trainable parameters of an MLP with these hidden layer sizes."""
    sizes = [N_FEATURES, *hidden, N_CLASSES]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))


# ---------------------------------------------------------------- helpers


def output(result) -> str:
    """Everything a command printed (DVC logs progress to both streams)."""
    return result.stdout + result.stderr


def ran(result) -> list[str]:
    """Stages whose command `dvc repro` ran, in order."""
    return RAN.findall(output(result))


def cached(result) -> set[str]:
    """Stages `dvc repro` restored from the run cache instead of running."""
    return set(CACHED.findall(output(result)))


def skipped(result) -> set[str]:
    """Stages `dvc repro` found unchanged."""
    return set(SKIPPED.findall(output(result)))


def stage_names(repo: Path) -> set[str]:
    """Every stage of the copy's pipeline, `foreach` entries expanded."""
    names = run(["dvc", "stage", "list", "--name-only"], repo).stdout.split()
    assert GUARD in names, f"dvc.yaml: expected a stage {GUARD!r}, found {names}"
    return set(names)


def variant_stages(names: set[str], prefix: str = "") -> set[str]:
    """The train and evaluate stages of the variants whose names start with
    `prefix` (all variants for '')."""
    return {
        name
        for name in names
        if name.partition("@")[0] in PER_VARIANT
        and name.partition("@")[2].startswith(prefix)
    }


def aggregate_stages(names: set[str]) -> set[str]:
    """Stages that combine every variant (plots, report, ...): all but the guard,
    the data stages and the per-variant stages."""
    return names - {GUARD} - DATA_STAGES - variant_stages(names)


def declared(repo: Path, stage: str, field: str) -> list[str]:
    """What a plain (non-`foreach`) stage lists under `deps` or `params` in
    params.yaml, as written in dvc.yaml."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))
    entries: list[str] = []
    for item in spec["stages"][stage].get(field, []):
        if isinstance(item, str):
            entries.append(item)
        elif field == "params":
            # {file: [keys]}: only params.yaml's keys matter here.
            entries.extend(item.get("params.yaml") or [])
    return entries


def covers(entries: list[str], target: str, sep: str) -> bool:
    """Whether one of `entries` is `target` or one of its parents."""
    return any(target == e or target.startswith(e.rstrip(sep) + sep) for e in entries)


def reads(repo: Path, stages: set[str], key: str) -> set[str]:
    """Those of `stages` that declare a params.yaml key covering `key`."""
    return {s for s in stages if covers(declared(repo, s, "params"), key, ".")}


def imports(repo: Path, stages: set[str], path: str) -> set[str]:
    """Those of `stages` that declare a dependency covering file `path`."""
    return {s for s in stages if covers(declared(repo, s, "deps"), path, "/")}


def status(repo: Path) -> set[str]:
    """Stages `dvc status` reports as changed."""
    return set(json.loads(run(["dvc", "status", "--json"], repo).stdout))


def regenerate(repo: Path) -> None:
    """Compose the copy's conf/ into its params.yaml, as a user does."""
    run(["python", "-m", "fmnist.params"], repo)


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` by `new` in a text file, which must contain `old` once."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path}: expected {old!r} once in it"
    path.write_text(text.replace(old, new), encoding="utf-8")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def params_yaml(repo: Path) -> dict[str, Any]:
    """The copy's params.yaml as a dict."""
    return yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))


def assert_repro(result, expected: set[str], names: set[str]) -> None:
    """`dvc repro` ran exactly `expected` (each once) and skipped the rest."""
    done = ran(result)
    assert sorted(done) == sorted(expected), (
        f"ran {sorted(done)}; expected exactly {sorted(expected)}"
    )
    assert not cached(result), f"restored from the run cache: {cached(result)}"
    assert skipped(result) == names - expected


# --------------------------------------------- 1. incremental reruns (dvc repro)


@pytest.mark.slow
def test_unchanged_pipeline_is_up_to_date(tiny_clone):
    """After a complete run, `dvc status` is clean and `dvc repro` runs nothing."""
    names = stage_names(tiny_clone)

    assert status(tiny_clone) == set()
    result = run(["dvc", "repro"], tiny_clone)

    assert ran(result) == []
    assert skipped(result) == names


@pytest.mark.slow
def test_one_variant_change_reruns_that_variant(tiny_clone):
    """A parameter of b_h1 changed in conf/ reruns b_h1 and the aggregates only."""
    names = stage_names(tiny_clone)
    aggregates = aggregate_stages(names)
    edit(tiny_clone / "conf/variants/b_h1.yaml", "hidden: [200]", "hidden: [32]")
    regenerate(tiny_clone)

    direct = {GUARD, "train@b_h1", "evaluate@b_h1"}
    assert status(tiny_clone) == direct | reads(
        tiny_clone, aggregates, "variants.b_h1.hidden"
    )
    result = run(["dvc", "repro"], tiny_clone)

    assert_repro(result, direct | aggregates, names)
    assert ran(result)[0] == GUARD
    eval_json = read_json(tiny_clone / "metrics/b_h1/eval.json")
    assert eval_json["trainable_params"] == mlp_params(32)
    assert status(tiny_clone) == set()


@pytest.mark.slow
def test_seed_change_reruns_everything_but_fetch(tiny_clone):
    """The shared seed reaches prepare and every variant; fetch does not read it."""
    names = stage_names(tiny_clone)
    aggregates = aggregate_stages(names)
    trains = {name for name in names if name.startswith("train@")}
    edit(tiny_clone / "conf/config.yaml", "\nseed: 42\n", "\nseed: 7\n")
    regenerate(tiny_clone)

    assert status(tiny_clone) == {GUARD, "prepare"} | trains | reads(
        tiny_clone, aggregates, "seed"
    )
    result = run(["dvc", "repro"], tiny_clone)

    assert_repro(result, names - {"fetch"}, names)
    assert "fetch" in skipped(result)


@pytest.mark.slow
def test_touching_keras_module_reruns_part_b_only(tiny_clone):
    """A change in fmnist/keras_mlp reruns exactly Part B and the aggregates."""
    names = stage_names(tiny_clone)
    aggregates = aggregate_stages(names)
    part_b = variant_stages(names, "b_")
    module = "fmnist/keras_mlp/model.py"
    assert part_b and variant_stages(names, "a_"), "expected Part A and B variants"
    with open(tiny_clone / module, "a", encoding="utf-8") as handle:
        handle.write("# A comment changes the file's hash, not its behaviour.\n")

    assert status(tiny_clone) == part_b | imports(tiny_clone, aggregates, module)
    result = run(["dvc", "repro"], tiny_clone)

    assert_repro(result, part_b | aggregates, names)


# ------------------------------------------- 2. the guard and DVC experiments


@pytest.mark.slow
def test_repro_refuses_conf_edit_without_params_yaml(tiny_clone):
    """An edit in conf/ that params.yaml lacks stops `dvc repro` with a message
    before any stage runs; nothing is changed."""
    before = (tiny_clone / "metrics/b_h1/eval.json").read_bytes()
    lock = (tiny_clone / "dvc.lock").read_bytes()
    edit(tiny_clone / "conf/variants/b_h1.yaml", "hidden: [200]", "hidden: [32]")

    result = run(["dvc", "repro"], tiny_clone, check=False)

    assert result.returncode != 0
    assert STALE_MESSAGE in output(result)
    assert "python -m fmnist.params" in output(result)
    assert ran(result) == [GUARD]
    assert (tiny_clone / "metrics/b_h1/eval.json").read_bytes() == before
    assert (tiny_clone / "dvc.lock").read_bytes() == lock
    assert GUARD in status(tiny_clone)

    regenerate(tiny_clone)
    assert ran(run(["dvc", "repro", GUARD], tiny_clone)) == [GUARD]
    assert GUARD not in status(tiny_clone)


@pytest.mark.slow
def test_exp_run_composes_conf_and_set_param(tiny_clone):
    """`dvc exp run -S` composes params.yaml from conf/ (an uncommitted edit
    included) plus the override, and both reach the trained model."""
    names = stage_names(tiny_clone)
    edit(
        tiny_clone / "conf/variants/b_h1.yaml",
        "hidden: [200]\n",
        "hidden: [200]\nepochs: 3\n",
    )

    result = run(
        ["dvc", "exp", "run", "-n", "h1-16", "-S", "variants.b_h1.hidden=[16]"],
        tiny_clone,
    )

    assert sorted(ran(result)) == sorted(
        {GUARD, "train@b_h1", "evaluate@b_h1"} | aggregate_stages(names)
    )
    variant = params_yaml(tiny_clone)["variants"]["b_h1"]
    assert (variant["hidden"], variant["epochs"]) == ([16], 3)
    eval_json = read_json(tiny_clone / "metrics/b_h1/eval.json")
    assert eval_json["trainable_params"] == 784 * 16 + 16 + 16 * 10 + 10
    assert eval_json["epochs"] == 3
    shown = experiments(tiny_clone)["h1-16"]
    assert shown["metrics/b_h1/eval.json"]["trainable_params"] == mlp_params(16)


def experiments(repo: Path) -> dict[str, dict[str, Any]]:
    """`dvc exp show --json` as {experiment: {file: data}} for params and metrics."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    found: dict[str, dict[str, Any]] = {}
    for baseline in shown:
        for group in baseline.get("experiments") or []:
            for rev in group["revs"]:
                data = rev.get("data") or {}
                files = {}
                for kind in ("params", "metrics"):
                    for name, entry in (data.get(kind) or {}).items():
                        files[name] = entry.get("data", {})
                found[rev["name"]] = files
    return found


def wait_for_queue(repo: Path, timeout: float = 1800) -> str:
    """Poll `dvc queue status` until no task is queued or running; return it."""
    deadline = time.monotonic() + timeout
    while True:
        table = run(["dvc", "queue", "status"], repo).stdout
        states = re.findall(r"\b(Queued|Running)\b", table)
        if not states:
            return table
        if time.monotonic() > deadline:
            raise AssertionError(f"queue still busy after {timeout} s:\n{table}")
        time.sleep(5)


@pytest.mark.slow
def test_queued_sweep_runs_in_parallel_and_applies(tiny_clone):
    """A queued `-S` sweep runs both values with two workers; `dvc exp show`
    lists them with metrics and `dvc exp apply` brings one back."""
    key = "variants.b_softmax.batch_size"
    queued = run(["dvc", "exp", "run", "--queue", "-S", f"{key}=64,128"], tiny_clone)
    assert len(re.findall(r"Queued experiment", output(queued))) == 2

    try:
        run(["dvc", "queue", "start", "-j", "2"], tiny_clone)
        table = wait_for_queue(tiny_clone)
    finally:
        run(["dvc", "queue", "stop"], tiny_clone, check=False)

    assert len(re.findall(r"\bSuccess\b", table)) == 2, table
    by_size = {}
    for name, files in experiments(tiny_clone).items():
        size = files["params.yaml"]["variants"]["b_softmax"]["batch_size"]
        by_size[size] = (name, files["metrics/b_softmax/eval.json"])
    assert sorted(by_size) == [64, 128]
    for _, metrics in by_size.values():
        assert 0.0 < metrics["accuracy"] <= 1.0
        assert metrics["trainable_params"] == mlp_params()
    assert by_size[64][1]["loss"] != by_size[128][1]["loss"]

    name, metrics = by_size[64]
    run(["dvc", "exp", "apply", name], tiny_clone)
    assert params_yaml(tiny_clone)["variants"]["b_softmax"]["batch_size"] == 64
    applied = read_json(tiny_clone / "metrics/b_softmax/eval.json")
    assert applied["loss"] == metrics["loss"]
    assert status(tiny_clone) == set()


# ------------------------------------------------ 3. Hydra multirun sweeps


def sweep_dir(repo: Path) -> Path:
    """The one sweep directory a multirun made under `multirun/`."""
    found = [path for path in (repo / "multirun").iterdir() if path.is_dir()]
    assert len(found) == 1, f"expected one sweep directory, found {found}"
    return found[0]


def read_summary(sweep: Path) -> list[dict[str, str]]:
    """The rows of a sweep's summary.csv."""
    with open(sweep / "summary.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_outputs_untouched(repo: Path) -> None:
    """Neither DVC's outputs nor any tracked file changed."""
    assert status(repo) == set()
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


@pytest.mark.slow
def test_multirun_trains_into_sweep_dir_with_summary(tiny_clone):
    """`--multirun` over batch sizes trains each job into its own directory,
    leaves the pipeline's outputs alone and ends with a summary table."""
    key = "variants.b_softmax.batch_size"
    run(
        ["python", "-m", "stages.train", "--multirun", "variant=b_softmax"]
        + [f"{key}=64,128"],
        tiny_clone,
    )

    sweep = sweep_dir(tiny_clone)
    scores = []
    for job, size in enumerate((64, 128)):
        job_dir = sweep / str(job)
        assert (job_dir / "models/b_softmax/model.keras").is_file()
        assert OmegaConf.load(job_dir / ".hydra/overrides.yaml") == [
            "variant=b_softmax",
            f"{key}={size}",
        ]
        scores.append(read_json(job_dir / "metrics/b_softmax/eval.json"))
    # Same seed and data: only the batch size can make the two runs differ.
    assert scores[0]["loss"] != scores[1]["loss"]
    assert_outputs_untouched(tiny_clone)

    rows = read_summary(sweep)
    assert [row["job"] for row in rows] == ["0", "1"]
    for row, score, size in zip(rows, scores, (64, 128), strict=True):
        assert row["overrides"] == f"variant=b_softmax {key}={size}"
        assert float(row["accuracy"]) == score["accuracy"]
        assert float(row["loss"]) == score["loss"]
        assert int(row["trainable_params"]) == mlp_params()
        assert float(row["train_seconds"]) > 0
    markdown = (sweep / "summary.md").read_text(encoding="utf-8")
    assert f"`variant=b_softmax {key}=128`" in markdown


@pytest.mark.slow
def test_multirun_with_joblib_launcher_runs_jobs_in_parallel(tiny_clone):
    """`hydra/launcher=joblib` runs the jobs at once in separate processes, and
    each job's override reaches its model."""
    # Each log line starts with the process id and the time it was written.
    log_format = "'%(process)d %(created)f %(message)s'"
    stamp = re.compile(r"^(\d+) (\d+\.\d+) ", re.MULTILINE)
    run(
        ["python", "-m", "stages.train", "--multirun", "hydra/launcher=joblib"]
        + ["hydra.launcher.n_jobs=2", "variant=b_h1", "variants.b_h1.hidden=[8],[16]"]
        + [f"hydra.job_logging.formatters.simple.format={log_format}"],
        tiny_clone,
    )

    sweep = sweep_dir(tiny_clone)
    spans = []
    for job, hidden in enumerate((8, 16)):
        stamps = stamp.findall((sweep / str(job) / "train.log").read_text())
        pids = {pid for pid, _ in stamps}
        times = [float(created) for _, created in stamps]
        assert len(pids) == 1, f"job {job}: expected one process, got {pids}"
        spans.append((pids.pop(), min(times), max(times)))
        eval_json = read_json(sweep / str(job) / "metrics/b_h1/eval.json")
        assert eval_json["trainable_params"] == mlp_params(hidden)
    (pid0, start0, end0), (pid1, start1, end1) = spans
    assert pid0 != pid1
    assert start0 < end1 and start1 < end0, f"jobs did not overlap: {spans}"
    assert_outputs_untouched(tiny_clone)

    rows = read_summary(sweep)
    assert [int(row["trainable_params"]) for row in rows] == [
        mlp_params(8),
        mlp_params(16),
    ]


def fake_job(sweep: Path, num: int, overrides: list[str], scores: dict | None):
    """Lay out one job directory as Hydra and the train stage leave it."""
    job_dir = sweep / f"job-{num}"
    saved = job_dir / ".hydra"
    saved.mkdir(parents=True)
    OmegaConf.save({"hydra": {"job": {"num": num}}}, saved / "hydra.yaml")
    config = {"variant": "b_h1", "paths": {"metrics": "metrics"}}
    OmegaConf.save(config, saved / "config.yaml")
    OmegaConf.save(overrides, saved / "overrides.yaml")
    if scores is not None:
        (job_dir / "metrics/b_h1").mkdir(parents=True)
        (job_dir / "metrics/b_h1/eval.json").write_text(json.dumps(scores))


def test_sweep_summary_orders_jobs_and_marks_missing_scores(tmp_path, caplog):
    """The callback writes one row per job, in job order, with each job's
    overrides and scores; a job without scores gets empty cells and a warning."""
    sweep = tmp_path / "sweep"
    scores = {
        "accuracy": 0.75,
        "loss": 0.6123456,
        "trainable_params": 12730,
        "epochs": 2,
        "train_seconds": 1.5,
        "val_accuracy": 0.7,
    }
    fake_job(sweep, 10, ["variant=b_h1", "variants.b_h1.hidden=[16]"], scores)
    fake_job(sweep, 2, ["variant=b_h1", "variants.b_h1.hidden=[8]"], None)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})

    with caplog.at_level(logging.WARNING, logger="fmnist.sweep"):
        SweepSummary().on_multirun_end(config)

    rows = read_summary(sweep)
    assert list(rows[0]) == list(COLUMNS)
    assert [row["job"] for row in rows] == ["2", "10"]
    assert rows[0]["overrides"] == "variant=b_h1 variants.b_h1.hidden=[8]"
    assert rows[0]["accuracy"] == rows[0]["trainable_params"] == ""
    assert "job 2 wrote no scores" in caplog.text
    assert rows[1]["accuracy"] == "0.75"
    assert rows[1]["trainable_params"] == "12730"
    assert rows[1]["train_seconds"] == "1.5"
    markdown = (sweep / "summary.md").read_text(encoding="utf-8").splitlines()
    assert markdown[2] == "| " + " | ".join(COLUMNS) + " |"
    assert markdown[-1] == (
        "| 10 | b_h1 | `variant=b_h1 variants.b_h1.hidden=[16]` | 0.7500 | 0.6123 "
        "| 12730 | 2 | 1.5 |"
    )


def test_sweep_summary_names_a_missing_sweep_dir(tmp_path):
    """A sweep directory that does not exist is an error naming it."""
    missing = tmp_path / "multirun" / "nothing"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(missing)}}})

    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        SweepSummary().on_multirun_end(config)


# ----------------------------------------- 4. sharing: remote and run cache


@pytest.mark.slow
def test_remote_push_then_fresh_clone_pull_needs_no_rerun(tiny_clone, tmp_path):
    """Results pushed to a directory remote come back in a fresh `git clone`
    with `dvc pull`: models and data present, nothing to reproduce."""
    storage = tmp_path / "storage"
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], tiny_clone)
    run(["git", "commit", "-q", "-am", "add a DVC remote"], tiny_clone)
    run(["dvc", "push"], tiny_clone)
    assert any(path.is_file() for path in storage.rglob("*"))

    fresh = tmp_path / "fresh"
    run(["git", "clone", "-q", str(tiny_clone), str(fresh)], tmp_path)
    assert not (fresh / "models").exists()
    run(["dvc", "pull"], fresh)

    names = stage_names(fresh)
    for variant in params_yaml(fresh)["variants"]:
        model = Path("models") / variant
        assert (fresh / model).is_dir(), f"{model} was not pulled"
        for file in (tiny_clone / model).rglob("*"):
            if file.is_file():
                copy = fresh / file.relative_to(tiny_clone)
                assert copy.read_bytes() == file.read_bytes()
    prepared = params_yaml(fresh)["paths"]["prepared"]
    assert (fresh / prepared).read_bytes() == (tiny_clone / prepared).read_bytes()
    assert status(fresh) == set()
    result = run(["dvc", "repro"], fresh)
    assert ran(result) == []
    assert skipped(result) == names


@pytest.mark.slow
def test_reverted_parameter_is_restored_from_run_cache(tiny_clone):
    """Changing a parameter and changing it back restores the earlier results
    from the run cache instead of training again."""
    targets = ["train@b_softmax", "evaluate@b_softmax"]
    conf = tiny_clone / "conf/variants/b_softmax.yaml"
    original = conf.read_text(encoding="utf-8")
    metrics = tiny_clone / "metrics/b_softmax/eval.json"
    before = metrics.read_bytes()

    conf.write_text(original + "batch_size: 64\n", encoding="utf-8")
    regenerate(tiny_clone)
    changed = run(["dvc", "repro", *targets], tiny_clone)
    assert sorted(ran(changed)) == sorted(targets)
    assert metrics.read_bytes() != before

    conf.write_text(original, encoding="utf-8")
    regenerate(tiny_clone)
    restored = run(["dvc", "repro", *targets], tiny_clone)

    assert ran(restored) == []
    assert cached(restored) == set(targets)
    # Byte for byte the first run's file, training time included: not retrained.
    assert metrics.read_bytes() == before
    assert run(["git", "status", "--porcelain"], tiny_clone).stdout == ""
