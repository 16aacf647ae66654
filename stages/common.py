"""Helpers the stage entry points share."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def is_multirun() -> bool:
    """Whether Hydra runs this job as part of a `--multirun` sweep."""
    return HydraConfig.get().mode == RunMode.MULTIRUN


def output_root() -> Path:
    """Where a stage writes: the repository root, or the job's sweep directory
    when Hydra runs it under `--multirun`."""
    if is_multirun():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(".")
