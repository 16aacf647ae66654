"""Shared fixtures: the real configuration, shrunk; throwaway copies of the repo.

End-to-end tests run the pipeline in a temporary copy of the repository with its
own git and DVC state, on the tiny profile, reading the local IDX mirror; they
never touch the network (downloads are switched off in the copies).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fmnist.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = ["profile=tiny", "fetch.allow_download=false"]
# What make_repo changes in a copy's conf/ so that everything composed there
# (params.yaml, `dvc exp run`) is the tiny profile with downloads off.
COPY_EDITS = {
    "conf/config.yaml": ("  - profile: full\n", "  - profile: tiny\n"),
    "conf/fetch.yaml": ("allow_download: true\n", "allow_download: false\n"),
}


def compose_raw(*overrides: str):
    """Compose `conf/` with Hydra, as `dvc exp run` does, and return the tree."""
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", overrides=list(overrides))


def compose_config(*overrides: str) -> Config:
    """Compose `conf/` and validate it into a typed `Config`."""
    return load_config(compose_raw(*overrides))


@pytest.fixture
def tiny_config() -> Config:
    """The real configuration on the tiny profile, with downloads switched off."""
    return compose_config(*TINY)


def env() -> dict[str, str]:
    """The environment for subprocesses: this interpreter's tools first on PATH."""
    result = dict(os.environ)
    result["PATH"] = f"{BIN}{os.pathsep}{result.get('PATH', '')}"
    result.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result["DVC_NO_ANALYTICS"] = "1"
    result["HYDRA_FULL_ERROR"] = "1"
    return result


def run(args: list[str] | str, cwd: Path, check: bool = True, timeout: float = 1800):
    """Run a command in `cwd` and return the completed process (text output)."""
    if isinstance(args, str):
        args = args.split()
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n"
            f"--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def project_files(src: Path = ROOT) -> list[str]:
    """Files of the project: tracked or new, not ignored, never generated data."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return [name for name in listed if name and (src / name).is_file()]


def make_repo(dst: Path, overrides: list[str] | None = None) -> Path:
    """Copy the project into `dst` as a fresh git + DVC repository.

    The copy's `conf/` selects the tiny profile with downloads off, so
    `params.yaml` (composed with `overrides`) and `dvc exp run` agree; committed
    results are left out so the copy starts clean; everything is committed once.
    """
    from fmnist.params import write

    dst.mkdir(parents=True, exist_ok=True)
    for name in project_files():
        if name.startswith(("metrics/", "plots/", "reports/")) or name == "dvc.lock":
            continue
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    for name, (old, new) in COPY_EDITS.items():
        text = (dst / name).read_text(encoding="utf-8")
        if old not in text:
            raise AssertionError(f"{name}: expected to find {old!r} to edit")
        (dst / name).write_text(text.replace(old, new), encoding="utf-8")
    write(dst / "params.yaml", overrides=list(overrides or []))

    run(["git", "init", "-q", "-b", "main"], dst)
    run(["git", "config", "user.email", "tests@example.com"], dst)
    run(["git", "config", "user.name", "tests"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "commit", "-q", "-m", "tiny copy"], dst)
    return dst


def clone_state(src: Path, dst: Path) -> Path:
    """Copy a repository copy with its git, DVC cache and outputs."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A repository copy on which the whole tiny pipeline has run and been
    committed. Tests must not change it: copy it with `clone_state` first."""
    repo = make_repo(tmp_path_factory.mktemp("tiny") / "repo")
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "tiny run"], repo)
    return repo


@pytest.fixture
def tiny_clone(tiny_repo, tmp_path) -> Path:
    """A private copy of `tiny_repo` that a test may change."""
    return clone_state(tiny_repo, tmp_path / "repo")
