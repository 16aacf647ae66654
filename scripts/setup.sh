#!/usr/bin/env bash
# Set up a machine for the pipeline: a virtual environment with the pinned
# packages, Debian's Fashion-MNIST files where apt-get can install them, and a
# DVC repository. Safe to run again: it only does what is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=".venv"
STAMP="$VENV/.installed"

say() { printf 'setup: %s\n' "$*" >&2; }

# 1. The data: Debian's package puts the four IDX files in this directory.
MIRROR=/usr/share/datasets/fashion-mnist
if [ -f "$MIRROR/train-images-idx3-ubyte.gz" ]; then
    :
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing Debian's dataset-fashion-mnist"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; then
        say "apt-get could not install dataset-fashion-mnist; the fetch stage will" \
            "try tensorflow-datasets or fetch.mirror_dir instead"
    fi
else
    say "not root or no apt-get: skipping Debian's dataset-fashion-mnist; the fetch" \
        "stage will try tensorflow-datasets or fetch.mirror_dir instead"
fi

# 2. The environment, reinstalled only when the pinned requirements change.
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    say "installing the pinned packages (requirements.lock)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.lock
    "$VENV/bin/python" -m pip install -q --no-deps -e .
    echo "$want" > "$STAMP"
fi

# 3. A DVC repository (committed in this one; made when missing).
if [ ! -d .dvc ]; then
    "$VENV/bin/dvc" init -q
    "$VENV/bin/dvc" config hydra.enabled true
fi
