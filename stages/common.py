"""Helpers the stage entry points share."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def output_root() -> Path:
    """Where a stage writes: the repository root, or the job's sweep directory
    when Hydra runs it under `--multirun`."""
    hydra_config = HydraConfig.get()
    if hydra_config.mode == RunMode.MULTIRUN:
        return Path(hydra_config.runtime.output_dir)
    return Path(".")
