"""Compose `conf/` into `params.yaml`, or check that the two agree.

`dvc exp run` composes `params.yaml` itself; `dvc repro` does not, so after an
edit in `conf/` run `python -m fmnist.params` (or the check fails and says so).

Usage:
    python -m fmnist.params [OVERRIDE ...]    # write params.yaml
    python -m fmnist.params --check           # exit 1 when params.yaml is stale
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from pathlib import Path

from fmnist.io import atomic_path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "conf"
PARAMS_FILE = ROOT / "params.yaml"


def compose(overrides: list[str] | None = None, config_dir: Path = CONFIG_DIR) -> str:
    """Return the YAML text DVC's Hydra composition writes for these overrides."""
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(
            out, str(config_dir.resolve()), None, "config", tmp, overrides or []
        )
        return out.read_text(encoding="utf-8")


def write(path: Path = PARAMS_FILE, overrides: list[str] | None = None) -> None:
    """Compose `conf/` and write the result to `path` atomically."""
    text = compose(overrides, path.parent / "conf")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def stale_diff(path: Path = PARAMS_FILE) -> str:
    """Return a unified diff between `path` and what `conf/` composes ('' if none)."""
    expected = compose(None, path.parent / "conf")
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = difflib.unified_diff(
        actual.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        fromfile=str(path.name),
        tofile="composed from conf/",
    )
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    args = parser.parse_args(argv)

    if args.check:
        if os.environ.get("DVC_EXP_NAME"):
            # `dvc exp run` has just composed params.yaml from conf/ plus its -S
            # overrides, so any difference from conf/ alone is those overrides.
            sys.stderr.write("params.yaml composed by `dvc exp run`; not compared\n")
            return 0
        diff = stale_diff()
        if diff:
            sys.stderr.write(
                "params.yaml does not match conf/; run `python -m fmnist.params`.\n"
            )
            sys.stderr.write(diff)
            return 1
        return 0

    write(overrides=args.overrides)
    print(f"wrote {PARAMS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
