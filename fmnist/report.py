"""The summary report: one table of every variant, as Markdown and CSV.

The table has one row per variant in the configuration's order, with the test,
train and validation figures of `eval.json`, the model's size and training time,
and the course report's own test accuracy where it gives one. The Markdown file
also lists the rendered figures with links relative to itself.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from fmnist.config import VariantConfig
from fmnist.figures import CAPTIONS, PARTS, describe_extra, describe_hidden
from fmnist.io import atomic_path

log = logging.getLogger(__name__)

# CSV column -> Markdown header, in table order.
HEADERS = {
    "variant": "variant",
    "part": "part",
    "hidden": "hidden layers",
    "extra": "extra",
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "train_accuracy": "final train accuracy",
    "val_accuracy": "final validation accuracy",
    "trainable_params": "trainable parameters",
    "train_seconds": "training seconds",
    "epochs": "epochs",
    "report_accuracy": "report's test accuracy",
}
DIGITS = {
    "test_accuracy": 4,
    "test_loss": 4,
    "train_accuracy": 4,
    "val_accuracy": 4,
    "train_seconds": 1,
    "report_accuracy": 4,
}


def summary_table(
    variants: Mapping[str, VariantConfig],
    evals: Mapping[str, Mapping],
    reference: Mapping[str, float],
) -> pd.DataFrame:
    """One row per variant, in the order of `variants`.

    Args:
        variants: the configured variants.
        evals: each variant's `eval.json` contents.
        reference: the course report's test accuracy by variant, where it has one.

    Returns:
        A DataFrame with the columns of `HEADERS`; a value a variant does not
        have (validation accuracy in Part A, a reference accuracy) is missing.
    """
    unknown = sorted(set(reference) - set(variants))
    if unknown:
        log.warning("report.reference_accuracy names unconfigured variants %s", unknown)

    rows = []
    for name, variant in variants.items():
        metrics = evals[name]
        rows.append(
            {
                "variant": name,
                "part": PARTS.get(variant.family, variant.family),
                "hidden": describe_hidden(variant),
                "extra": describe_extra(variant),
                "test_accuracy": metrics["accuracy"],
                "test_loss": metrics["loss"],
                "train_accuracy": metrics["train_accuracy"],
                "val_accuracy": metrics.get("val_accuracy", math.nan),
                "trainable_params": metrics["trainable_params"],
                "train_seconds": metrics.get("train_seconds", math.nan),
                "epochs": metrics["epochs"],
                "report_accuracy": reference.get(name, math.nan),
            }
        )
    return pd.DataFrame(rows, columns=list(HEADERS))


def markdown_table(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown, numbers rounded, missing values blank."""
    shown = table.copy()
    for column, digits in DIGITS.items():
        shown[column] = shown[column].map(
            lambda value, digits=digits: "" if pd.isna(value) else f"{value:.{digits}f}"
        )
    shown["trainable_params"] = shown["trainable_params"].map(lambda n: f"{n:,}")
    shown = shown.rename(columns=HEADERS)
    # Text columns keep their formatting; numbers align right for easy scanning.
    align = [
        "left" if column in ("variant", "part", "hidden", "extra") else "right"
        for column in table.columns
    ]
    return shown.to_markdown(index=False, colalign=align, disable_numparse=True)


def figure_links(
    plots_dir: str | os.PathLike[str], reports_dir: str | os.PathLike[str]
) -> list[tuple[str, str]]:
    """(caption, link relative to `reports_dir`) for each figure in `plots_dir`."""
    plots_dir = Path(plots_dir)
    relative = Path(os.path.relpath(plots_dir, reports_dir))
    return [
        (caption, (relative / f"{stem}.png").as_posix())
        for stem, caption in CAPTIONS.items()
        if (plots_dir / f"{stem}.png").is_file()
    ]


def summary_markdown(table: pd.DataFrame, figures: Sequence[tuple[str, str]]) -> str:
    """The Markdown summary: the table, what its columns mean, the figures."""
    lines = [
        "# Results",
        "",
        "One row per variant, in the order of `params.yaml`. Test accuracy and loss "
        "are on the test set; the final train and validation accuracy are those of "
        "the last epoch. The last column is the accuracy the course report gives, "
        "where it gives one; its Part B was measured on a split of its own.",
        "",
        markdown_table(table),
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"- [{caption}]({link})" for caption, link in figures]
        lines.append("")
    return "\n".join(lines)


def write_summary(
    table: pd.DataFrame,
    figures: Sequence[tuple[str, str]],
    reports_dir: str | os.PathLike[str],
) -> tuple[Path, Path]:
    """Write `summary.md` and `summary.csv` into `reports_dir`, atomically."""
    markdown = Path(reports_dir) / "summary.md"
    table_csv = Path(reports_dir) / "summary.csv"
    with atomic_path(table_csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(markdown) as tmp:
        tmp.write_text(summary_markdown(table, figures), encoding="utf-8")
    return markdown, table_csv
