"""Changing one variant reruns that variant (and the figures and report) only,
and `dvc metrics diff` / `dvc params diff` name only that variant's entries."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from conftest import run

CHANGED = "b_h1"
# One hidden layer of 32 units: 784 * 32 + 32 weights and biases, then 32 * 10 + 10.
HIDDEN = 32
PARAMS = 784 * HIDDEN + HIDDEN + HIDDEN * 10 + 10


@pytest.mark.slow
def test_one_changed_variant_shows_alone_in_the_diffs(tiny_clone):
    repo = tiny_clone
    variant_file = repo / "conf" / "variants" / f"{CHANGED}.yaml"
    text = variant_file.read_text(encoding="utf-8")
    edited = re.sub(r"(?m)^hidden: .*$", f"hidden: [{HIDDEN}]", text)
    assert edited != text, f"{variant_file}: no `hidden:` line to change"
    variant_file.write_text(edited, encoding="utf-8")

    run(["python", "-m", "fmnist.params"], repo)
    repro = run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", f"{CHANGED} with {HIDDEN} hidden units"], repo)
    metrics = json.loads(run("dvc metrics diff HEAD~1 --json", repo).stdout)
    params = json.loads(run("dvc params diff HEAD~1 --json", repo).stdout)
    plots = json.loads(run("dvc plots diff HEAD~1 --json", repo).stdout)

    ran = set(re.findall(r"Running stage '([^']+)'", repro.stdout))
    assert {stage for stage in ran if "@" in stage} == {
        f"train@{CHANGED}",
        f"evaluate@{CHANGED}",
    }
    assert {"plots", "report"} <= ran
    assert not {"fetch", "prepare"} & ran

    paths = yaml.safe_load((repo / "params.yaml").read_text())["paths"]
    changed_file = f"{paths['metrics']}/{CHANGED}/eval.json"
    assert list(metrics) == [changed_file]
    assert metrics[changed_file]["trainable_params"]["new"] == PARAMS
    assert metrics[changed_file]["trainable_params"]["old"] != PARAMS

    assert list(params) == ["params.yaml"]
    assert list(params["params.yaml"]) == [f"variants.{CHANGED}.hidden"]

    # The declared curves compare the two commits side by side.
    assert "errors" not in plots, plots.get("errors")
    curves = plots["data"]["b_accuracy"][0]["content"]["data"]["values"]
    assert {value["rev"] for value in curves} == {"HEAD~1", "workspace"}

    table = pd.read_csv(repo / paths["reports"] / "summary.csv").set_index("variant")
    assert table.loc[CHANGED, "trainable_params"] == PARAMS
    assert str(table.loc[CHANGED, "hidden"]) == str(HIDDEN)
