"""Summarise a Hydra `--multirun` sweep of the stage scripts in one table.

`SweepSummary` is registered in `stages/entry.yaml` under `hydra.callbacks`, so a
sweep such as

    python -m stages.train --multirun variant=b_h1 variants.b_h1.batch_size=64,128

ends with `summary.csv` and `summary.md` in its sweep directory: one row per job,
with the job's overrides and the test scores it wrote (`eval.json`).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fmnist.io import atomic_path, read_json

log = logging.getLogger(__name__)

# Figures taken from each job's eval.json, in the order the table shows them.
METRICS = ("accuracy", "loss", "trainable_params", "epochs", "train_seconds")
COLUMNS = ("job", "variant", "overrides", *METRICS)
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


class SweepSummary(Callback):
    """Hydra callback: write the sweep's summary table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Collect every job of the finished sweep and write its summary."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = summarize(sweep_dir)
        csv_path, md_path = write_summary(rows, sweep_dir)
        log.info("sweep summary of %d jobs: %s, %s", len(rows), csv_path, md_path)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Return the directories of a sweep's jobs, in job order.

    A job directory is one where Hydra saved the job's configuration
    (`.hydra/hydra.yaml`); its number comes from there, not from the folder name,
    so any `hydra.sweep.subdir` pattern works.

    Raises:
        FileNotFoundError: when `sweep_dir` does not exist.
    """
    if not sweep_dir.is_dir():
        raise FileNotFoundError(
            f"sweep directory {sweep_dir}: expected the directory Hydra's "
            "multirun wrote its jobs to; it does not exist"
        )
    found = [path.parent.parent for path in sweep_dir.glob("*/.hydra/hydra.yaml")]
    return sorted(found, key=job_number)


def job_number(job_dir: Path) -> int:
    """Return the number Hydra gave the job whose directory is `job_dir`."""
    saved = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml")
    return int(saved.hydra.job.num)


def job_row(job_dir: Path) -> dict[str, Any]:
    """One summary row: the job's number, variant, overrides and test scores.

    Scores are read from `<job_dir>/<paths.metrics>/<variant>/eval.json`; a job
    that selected no variant or wrote no scores gets empty score cells.
    """
    saved = job_dir / ".hydra"
    job_config = OmegaConf.load(saved / "config.yaml")
    overrides = OmegaConf.to_container(OmegaConf.load(saved / "overrides.yaml"))
    variant = job_config.get("variant")

    row: dict[str, Any] = {
        "job": job_number(job_dir),
        "variant": variant or "",
        "overrides": " ".join(overrides),
    }
    scores: dict[str, Any] = {}
    if variant:
        eval_path = job_dir / job_config.paths.metrics / variant / "eval.json"
        if eval_path.is_file():
            scores = read_json(eval_path)
        else:
            log.warning("job %s wrote no scores: %s is missing", row["job"], eval_path)
    row.update({key: scores.get(key, "") for key in METRICS})
    return row


def summarize(sweep_dir: Path) -> list[dict[str, Any]]:
    """Return one row per job of the sweep in `sweep_dir`, in job order."""
    rows = [job_row(job_dir) for job_dir in job_dirs(sweep_dir)]
    if not rows:
        log.warning(
            "no jobs found in %s: expected <job>/.hydra/hydra.yaml for each job "
            "(is hydra.output_subdir null?)",
            sweep_dir,
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Render the rows as a Markdown table, scores rounded for reading."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if c in METRICS else "---" for c in COLUMNS) + "|",
    ]
    for row in rows:
        cells = [_cell(key, row[key]) for key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(key: str, value: Any) -> str:
    if key == "overrides":
        # Backticks keep Hydra's `=`, `[` and `,` literal; a `|` would end the cell.
        return f"`{value}`".replace("|", "\\|") if value else ""
    if key in ("accuracy", "loss") and isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_summary(rows: list[dict[str, Any]], sweep_dir: Path) -> tuple[Path, Path]:
    """Write `summary.csv` and `summary.md` into `sweep_dir`; return their paths."""
    csv_path = sweep_dir / SUMMARY_CSV
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    md_path = sweep_dir / SUMMARY_MD
    with atomic_path(md_path) as tmp:
        tmp.write_text(
            f"# Sweep {sweep_dir.name}\n\n{markdown_table(rows)}", encoding="utf-8"
        )
    return csv_path, md_path
