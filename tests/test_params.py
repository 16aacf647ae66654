"""params.yaml is what conf/ composes, and the check notices when it is not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run

from fmnist import params

EDITED = "conf/variants/b_h4.yaml"
OLD_LINE, NEW_LINE = "hidden: [800, 600, 400, 200]", "hidden: [800, 600, 400, 100]"


@pytest.fixture
def copy(tmp_path) -> Path:
    """conf/, params.yaml and the package, copied so the check can run there."""
    for name in ("conf", "fmnist"):
        shutil.copytree(
            ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def edit_conf(root: Path) -> None:
    """Change one variant's layer sizes in the copy's conf/."""
    path = root / EDITED
    text = path.read_text(encoding="utf-8")
    assert OLD_LINE in text, f"{EDITED}: expected the line {OLD_LINE!r}"
    path.write_text(text.replace(OLD_LINE, NEW_LINE), encoding="utf-8")


def test_committed_params_match_conf():
    diff = params.stale_diff()

    assert diff == "", f"params.yaml is stale; run `python -m fmnist.params`\n{diff}"


def test_an_edit_in_conf_makes_a_diff(copy):
    assert params.stale_diff(copy / "params.yaml") == ""

    edit_conf(copy)
    diff = params.stale_diff(copy / "params.yaml")

    assert diff
    assert "\n-    - 200\n" in diff and "\n+    - 100\n" in diff


def test_write_then_diff_is_empty_and_holds_the_edit(copy):
    edit_conf(copy)

    params.write(copy / "params.yaml")

    assert params.stale_diff(copy / "params.yaml") == ""
    written = yaml.safe_load((copy / "params.yaml").read_text(encoding="utf-8"))
    assert written["variants"]["b_h4"]["hidden"] == [800, 600, 400, 100]


def test_overrides_reach_params_yaml(copy):
    params.write(copy / "params.yaml", overrides=["variants.b_h4.epochs=7"])

    written = yaml.safe_load((copy / "params.yaml").read_text(encoding="utf-8"))
    assert written["variants"]["b_h4"]["epochs"] == 7
    assert "epochs: 7" in params.stale_diff(copy / "params.yaml")


def test_missing_params_yaml_is_stale(copy):
    (copy / "params.yaml").unlink()

    assert params.stale_diff(copy / "params.yaml")


def test_check_command_exits_1_when_stale(copy):
    fresh = run(["python", "-m", "fmnist.params", "--check"], copy, check=False)
    assert fresh.returncode == 0, fresh.stderr

    edit_conf(copy)
    stale = run(["python", "-m", "fmnist.params", "--check"], copy, check=False)

    assert stale.returncode == 1
    assert "python -m fmnist.params" in stale.stderr
    assert "+    - 100" in stale.stderr

    run(["python", "-m", "fmnist.params"], copy)
    again = run(["python", "-m", "fmnist.params", "--check"], copy, check=False)
    assert again.returncode == 0, again.stderr
