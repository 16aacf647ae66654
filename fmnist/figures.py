"""The report's figures, drawn from the per-variant metrics files.

Each drawing function takes per-epoch histories (one DataFrame per variant, one
row per epoch), test metrics or predictions, and returns a matplotlib `Figure`.
Figures are built with the object-oriented API on the Agg canvas, so nothing
needs a display and no global pyplot state is kept between figures.

Which variants a figure compares follows from their configuration, not their
names: a figure shows every variant of its kind, compared with the plain variant
(no dropout, penalty or batch normalization) of the same family and hidden layers.
`draw_all` skips, with a warning, a figure whose variants are not configured.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fmnist import CLASS_NAMES
from fmnist.config import VariantConfig
from fmnist.io import read_json

log = logging.getLogger(__name__)

PARTS = {"lowlevel": "A", "keras_mlp": "B"}
COLORS = matplotlib.colormaps["tab10"].colors

# One PNG per entry, named `<key>.png`, in the order the report lists them.
CAPTIONS = {
    "a_softmax": "Part A: softmax regression, train and test accuracy and loss",
    "a_architectures": "Part A: architecture A (one hidden layer) against B (two)",
    "a_regularization_loss": (
        "Part A: L1 and L2 against none, cross-entropy and cross-entropy + penalty"
    ),
    "a_regularization_weights": "Part A: sum, maximum and mean of |weights|",
    "a_batchnorm": "Part A: batch normalization against none",
    "b_curves": "Part B: train and validation accuracy and loss of each network",
    "b_size": "Part B: test accuracy against trainable parameters",
    "b_dropout": "Part B: dropout rates side by side",
    "b_batchnorm": "Part B: batch normalization against none",
    "confusion": "Confusion matrix of the best model by test accuracy",
}

HISTORY_COLUMNS = {
    "lowlevel": ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"),
    "keras_mlp": ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"),
}
EVAL_KEYS = ("accuracy", "loss", "train_accuracy", "trainable_params", "epochs")


# Reading the metrics files.


def read_histories(
    metrics_dir: str | os.PathLike[str], variants: Mapping[str, VariantConfig]
) -> dict[str, pd.DataFrame]:
    """Read `<metrics_dir>/<variant>/history.csv` for every variant.

    Raises:
        FileNotFoundError: naming the missing file and the stage that writes it.
        ValueError: when a file lacks a column its model family writes.
    """
    histories = {}
    for name, variant in variants.items():
        path = Path(metrics_dir) / name / "history.csv"
        _require(path, f"train@{name}")
        frame = pd.read_csv(path)
        expected = HISTORY_COLUMNS.get(variant.family, ())
        missing = [column for column in expected if column not in frame.columns]
        if missing or frame.empty:
            raise ValueError(
                f"{path}: expected columns {list(expected)} and at least one row, "
                f"found columns {list(frame.columns)} and {len(frame)} rows"
            )
        histories[name] = frame
    return histories


def read_evals(
    metrics_dir: str | os.PathLike[str], names: Sequence[str]
) -> dict[str, dict]:
    """Read `<metrics_dir>/<variant>/eval.json` for every variant name.

    Raises:
        FileNotFoundError: naming the missing file and the stage that writes it.
        ValueError: when a file lacks a key the evaluate stage writes.
    """
    evals = {}
    for name in names:
        path = Path(metrics_dir) / name / "eval.json"
        _require(path, f"evaluate@{name}")
        metrics = read_json(path)
        missing = [key for key in EVAL_KEYS if key not in metrics]
        if missing:
            raise ValueError(
                f"{path}: expected keys {list(EVAL_KEYS)}, missing {missing}"
            )
        evals[name] = metrics
    return evals


def read_predictions(metrics_dir: str | os.PathLike[str], name: str) -> pd.DataFrame:
    """Read `<metrics_dir>/<variant>/predictions.csv` (columns actual, predicted)."""
    path = Path(metrics_dir) / name / "predictions.csv"
    _require(path, f"evaluate@{name}")
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    if header != ["actual", "predicted"]:
        raise ValueError(
            f"{path}: expected the header ['actual', 'predicted'], found {header}"
        )
    return pd.read_csv(path, dtype="int64")


def _require(path: Path, stage: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: expected the output of stage {stage}, found no file; "
            f"run `dvc repro {stage}` first"
        )


# What a variant is, in words and by kind.


def describe_hidden(variant: VariantConfig) -> str:
    """Hidden layer sizes as `800-600-400`, or `none` for softmax regression."""
    return "-".join(str(units) for units in variant.hidden) or "none"


def describe_extra(variant: VariantConfig) -> str:
    """What the variant adds to a plain network: dropout, L1, L2, batch norm."""
    parts = []
    if variant.dropout:
        parts.append(f"dropout {variant.dropout:g}")
    if variant.l1:
        parts.append(f"L1 {variant.l1:g}")
    if variant.l2:
        parts.append(f"L2 {variant.l2:g}")
    if variant.batchnorm:
        parts.append("batch norm")
    return ", ".join(parts)


def describe_training(variant: VariantConfig) -> str:
    """The training setting: full batch or mini-batch size, and the epochs."""
    if variant.batch_size is None:
        batches = "full-batch training"
    else:
        batches = f"mini-batches of {variant.batch_size}"
    return f"{batches}, {variant.epochs} epochs"


def plain_variants(variants: Mapping[str, VariantConfig], family: str) -> list[str]:
    """Names of a family's variants without dropout, penalty or batch norm."""
    return [
        name
        for name, variant in variants.items()
        if variant.family == family and not describe_extra(variant)
    ]


def baseline(name: str, variants: Mapping[str, VariantConfig]) -> str | None:
    """The first plain variant with the same family and hidden layers as `name`."""
    variant = variants[name]
    for other in plain_variants(variants, variant.family):
        if variants[other].hidden == variant.hidden:
            return other
    return None


def with_baselines(
    names: Sequence[str], variants: Mapping[str, VariantConfig]
) -> dict[str, list[str]]:
    """Group variants under their baseline, dropping those that have none."""
    groups: dict[str, list[str]] = {}
    for name in names:
        base = baseline(name, variants)
        if base is None:
            log.warning(
                "%s (%s, hidden %s) has no plain variant to compare with; left out",
                name,
                variants[name].family,
                describe_hidden(variants[name]),
            )
            continue
        groups.setdefault(base, []).append(name)
    return groups


def best_variant(evals: Mapping[str, Mapping]) -> str:
    """The variant with the highest test accuracy (the first one on a tie)."""
    if not evals:
        raise ValueError("best_variant: expected test metrics of at least one variant")
    return max(evals, key=lambda name: evals[name]["accuracy"])


# Drawing.


def held_out(history: pd.DataFrame) -> str:
    """The held-out split a history scores every epoch: `val` or `test`."""
    return "val" if "val_accuracy" in history.columns else "test"


SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
METRIC_NAMES = {"accuracy": "accuracy", "loss": "cross-entropy loss"}


def curves_figure(
    histories: Mapping[str, pd.DataFrame],
    names: Sequence[str],
    title: str,
) -> Figure:
    """Accuracy and loss per epoch, train (solid) against held-out (dashed).

    One colour per variant; the held-out split is the test set for Part A and the
    validation set for Part B.
    """
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    axes = figure.subplots(1, 2)
    for index, name in enumerate(names):
        history = histories[name]
        color = COLORS[index % len(COLORS)]
        for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
            for split, style in (("train", "-"), (held_out(history), "--")):
                ax.plot(
                    history["epoch"],
                    history[f"{split}_{metric}"],
                    style,
                    color=color,
                    label=f"{name}, {SPLIT_NAMES[split]}",
                )
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        _decorate(ax, METRIC_NAMES[metric])
    axes[0].legend(fontsize="small")
    figure.suptitle(title)
    return figure


def curves_grid(
    histories: Mapping[str, pd.DataFrame],
    variants: Mapping[str, VariantConfig],
    names: Sequence[str],
    title: str,
) -> Figure:
    """One column per variant: accuracy (top) and loss (bottom) per epoch.

    Rows share their y axis so the networks compare at a glance.
    """
    figure = Figure(figsize=(3.4 * len(names) + 1, 6.4), layout="constrained")
    axes = figure.subplots(2, len(names), sharex=True, sharey="row", squeeze=False)
    for column, name in enumerate(names):
        history = histories[name]
        for row, metric in enumerate(("accuracy", "loss")):
            ax = axes[row, column]
            for split, color in (("train", COLORS[0]), (held_out(history), COLORS[1])):
                ax.plot(
                    history["epoch"],
                    history[f"{split}_{metric}"],
                    color=color,
                    label=SPLIT_NAMES[split],
                )
            _decorate(ax, METRIC_NAMES[metric] if column == 0 else None)
        axes[0, column].set_title(f"{name}\nhidden: {describe_hidden(variants[name])}")
    axes[0, 0].legend(fontsize="small")
    figure.suptitle(title)
    return figure


def regularization_loss_figure(
    histories: Mapping[str, pd.DataFrame],
    variants: Mapping[str, VariantConfig],
    names: Sequence[str],
) -> Figure:
    """Per variant: cross-entropy against cross-entropy + penalty, and accuracy.

    The top row shows the training cross-entropy, the quantity the optimizer
    minimized (cross-entropy + penalty) and the test cross-entropy; the bottom row
    train and test accuracy, where the gap shows the overfitting the penalty
    fights.
    """
    figure = Figure(figsize=(4.2 * len(names) + 1, 7.0), layout="constrained")
    axes = figure.subplots(2, len(names), sharex=True, sharey="row", squeeze=False)
    for column, name in enumerate(names):
        history = histories[name]
        loss_ax, accuracy_ax = axes[0, column], axes[1, column]
        loss_ax.plot(
            history["epoch"], history["train_loss"], color=COLORS[0], label="train CE"
        )
        loss_ax.plot(
            history["epoch"],
            history["train_loss_penalized"],
            ":",
            color=COLORS[3],
            linewidth=2.2,
            label="train CE + penalty",
        )
        loss_ax.plot(
            history["epoch"],
            history["test_loss"],
            "--",
            color=COLORS[1],
            label="test CE",
        )
        for split, style in (("train", "-"), ("test", "--")):
            accuracy_ax.plot(
                history["epoch"],
                history[f"{split}_accuracy"],
                style,
                color=COLORS[0] if split == "train" else COLORS[1],
                label=f"{split} accuracy",
            )
        extra = describe_extra(variants[name]) or "no penalty"
        loss_ax.set_title(f"{name}\n{extra}")
        _decorate(loss_ax, "cross-entropy (CE)" if column == 0 else None)
        _decorate(accuracy_ax, "accuracy" if column == 0 else None)
    axes[0, 0].legend(fontsize="small")
    axes[1, 0].legend(fontsize="small")
    figure.suptitle("Part A: L1 and L2 penalties against none")
    return figure


def weights_figure(
    histories: Mapping[str, pd.DataFrame],
    variants: Mapping[str, VariantConfig],
    names: Sequence[str],
) -> Figure:
    """Sum, maximum and mean of the absolute weights per epoch, one line each."""
    figure = Figure(figsize=(13, 4.4), layout="constrained")
    axes = figure.subplots(1, 3, sharex=True)
    stats = (("sum", "sum of |w|"), ("max", "largest |w|"), ("mean", "mean |w|"))
    for index, name in enumerate(names):
        history = histories[name]
        label = f"{name} ({describe_extra(variants[name]) or 'no penalty'})"
        for ax, (stat, _) in zip(axes, stats, strict=True):
            ax.plot(
                history["epoch"],
                history[f"weight_abs_{stat}"],
                color=COLORS[index % len(COLORS)],
                label=label,
            )
    for ax, (_, ylabel) in zip(axes, stats, strict=True):
        _decorate(ax, ylabel)
    axes[0].legend(fontsize="small")
    figure.suptitle("Part A: absolute weights per epoch (weight matrices, no biases)")
    return figure


def size_figure(
    evals: Mapping[str, Mapping],
    variants: Mapping[str, VariantConfig],
    names: Sequence[str],
) -> Figure:
    """Test accuracy against trainable parameters, log x axis, points labelled.

    Plain networks are joined by a line (the size trade-off); variants with
    dropout or batch normalization are drawn as separate markers.
    """
    figure = Figure(figsize=(10, 6), layout="constrained")
    ax = figure.subplots()
    params = {name: evals[name]["trainable_params"] for name in names}
    accuracy = {name: evals[name]["accuracy"] for name in names}

    plain = [name for name in names if not describe_extra(variants[name])]
    plain.sort(key=params.get)
    ax.plot(
        [params[name] for name in plain],
        [accuracy[name] for name in plain],
        "o-",
        color=COLORS[0],
        label="plain network",
    )
    for kind, marker, color in (
        ("dropout", "^", COLORS[2]),
        ("batch norm", "s", COLORS[3]),
        ("penalty", "D", COLORS[4]),
    ):
        chosen = [name for name in names if _kind(variants[name]) == kind]
        if chosen:
            ax.plot(
                [params[name] for name in chosen],
                [accuracy[name] for name in chosen],
                marker,
                linestyle="none",
                color=color,
                label=f"with {kind}",
            )
    ax.set_xscale("log")
    _label_points(ax, names, params, accuracy)
    _decorate(ax, "test accuracy", "trainable parameters (log scale)")
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("Part B: test accuracy against trainable parameters")
    return figure


def dropout_figure(
    histories: Mapping[str, pd.DataFrame],
    variants: Mapping[str, VariantConfig],
    groups: Mapping[str, Sequence[str]],
) -> Figure:
    """One row per network: validation accuracy, validation loss and the gap
    between validation and train loss per epoch, one line per dropout rate."""
    figure = Figure(figsize=(14, 3.8 * len(groups) + 0.6), layout="constrained")
    axes = figure.subplots(len(groups), 3, sharex=True, squeeze=False)
    panels = (
        ("validation accuracy", lambda h: h["val_accuracy"]),
        ("validation loss", lambda h: h["val_loss"]),
        ("validation - train loss", lambda h: h["val_loss"] - h["train_loss"]),
    )
    for row, (base, names) in enumerate(groups.items()):
        ordered = [base, *sorted(names, key=lambda name: variants[name].dropout)]
        shades = matplotlib.colormaps["viridis"](np.linspace(0.15, 0.85, len(names)))
        colors = ["black", *shades]
        for column, (ylabel, value) in enumerate(panels):
            ax = axes[row, column]
            for name, color in zip(ordered, colors, strict=True):
                history = histories[name]
                ax.plot(
                    history["epoch"],
                    value(history),
                    color=color,
                    label=f"dropout {variants[name].dropout:g} ({name})",
                )
            _decorate(ax, ylabel)
        axes[row, 2].axhline(0.0, color="grey", linewidth=0.8)
        axes[row, 0].set_title(
            f"hidden {describe_hidden(variants[base])}", loc="left", fontsize="medium"
        )
        axes[row, 0].legend(fontsize="small")
    figure.suptitle("Part B: dropout rates side by side")
    return figure


def confusion_figure(predictions: pd.DataFrame, name: str, accuracy: float) -> Figure:
    """Confusion matrix of one model: true class rows, predicted columns, counts."""
    n_classes = len(CLASS_NAMES)
    labels = predictions["actual"].to_numpy()
    predicted = predictions["predicted"].to_numpy()
    for column, values in (("actual", labels), ("predicted", predicted)):
        if len(values) and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(
                f"predictions of {name}: expected {column} classes in "
                f"[0, {n_classes - 1}], found {values.min()}..{values.max()}"
            )
    matrix = np.bincount(
        labels * n_classes + predicted, minlength=n_classes**2
    ).reshape(n_classes, n_classes)

    figure = Figure(figsize=(8.6, 7.4), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8, label="images")
    threshold = matrix.max() / 2
    for row in range(n_classes):
        for column in range(n_classes):
            count = matrix[row, column]
            ax.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize="small",
                color="white" if count > threshold else "black",
            )
    ticks = np.arange(n_classes)
    ax.set_xticks(ticks, CLASS_NAMES, rotation=40, ha="right")
    ax.set_yticks(ticks, CLASS_NAMES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        f"Confusion matrix of {name}, the best model\n"
        f"test accuracy {accuracy:.4f} on {len(labels)} images"
    )
    return figure


def _kind(variant: VariantConfig) -> str:
    if variant.dropout:
        return "dropout"
    if variant.batchnorm:
        return "batch norm"
    if variant.l1 or variant.l2:
        return "penalty"
    return "plain"


def _decorate(ax, ylabel: str | None, xlabel: str = "epoch") -> None:
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _label_points(ax, names, x: Mapping, y: Mapping) -> None:
    """Write each name to the right of its point; names of points that share an
    x value are spread apart vertically so they do not overprint."""
    low, high = min(y.values()), max(y.values())
    margin = max(high - low, 0.01) * 0.15
    ax.set_ylim(low - margin, high + margin)
    gap = (high - low + 2 * margin) * 0.045

    by_x: dict[float, list[str]] = {}
    for name in names:
        by_x.setdefault(x[name], []).append(name)
    for x_value, group in by_x.items():
        group.sort(key=y.get)
        positions = spread([y[name] for name in group], gap)
        for name, position in zip(group, positions, strict=True):
            ax.annotate(
                name,
                (x_value, y[name]),
                xytext=(x_value * 1.08, position),
                textcoords="data",
                va="center",
                fontsize="small",
                arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5},
            )
    # Room on the right for the labels of the largest network.
    ax.set_xlim(min(x.values()) / 1.6, max(x.values()) * 3.5)


def spread(values: Sequence[float], gap: float) -> list[float]:
    """Move sorted values apart to at least `gap`, keeping their mean."""
    positions = list(values)
    for index in range(1, len(positions)):
        positions[index] = max(positions[index], positions[index - 1] + gap)
    shift = (sum(positions) - sum(values)) / max(len(values), 1)
    return [position - shift for position in positions]


# All figures at once.


def draw_all(
    histories: Mapping[str, pd.DataFrame],
    evals: Mapping[str, Mapping],
    variants: Mapping[str, VariantConfig],
    predictions: Callable[[str], pd.DataFrame],
) -> dict[str, Figure]:
    """Draw every figure whose variants are configured, keyed by file stem.

    A figure none of whose variants are in `variants` is skipped with a warning,
    so variants can be dropped from the configuration without breaking the stage.

    Args:
        histories: per-epoch history of every variant in `variants`.
        evals: test metrics (`eval.json`) of every variant in `variants`.
        variants: the configured variants, in report order.
        predictions: returns a variant's test predictions (read on demand, as
            only the best model's are drawn).
    """
    figures: dict[str, Figure] = {}

    def skip(stem: str, needs: str) -> None:
        log.warning("skipping %s.png: no %s in the configured variants", stem, needs)

    def of(family: str, kind: str) -> list[str]:
        return [
            name
            for name, variant in variants.items()
            if variant.family == family and _kind(variant) == kind
        ]

    softmax = [
        name
        for name in plain_variants(variants, "lowlevel")
        if not variants[name].hidden
    ]
    if softmax:
        figures["a_softmax"] = curves_figure(
            histories,
            softmax,
            f"Part A: softmax regression ({describe_training(variants[softmax[0]])})",
        )
    else:
        skip("a_softmax", "Part A variant without hidden layers")

    architectures = [
        name for name in plain_variants(variants, "lowlevel") if variants[name].hidden
    ]
    if architectures:
        labels = ", ".join(
            f"{name}: {describe_hidden(variants[name])}" for name in architectures
        )
        figures["a_architectures"] = curves_figure(
            histories, architectures, f"Part A: hidden layers ({labels})"
        )
    else:
        skip("a_architectures", "plain Part A variant with hidden layers")

    penalized = with_baselines(of("lowlevel", "penalty"), variants)
    if penalized:
        names = [name for base, group in penalized.items() for name in (base, *group)]
        figures["a_regularization_loss"] = regularization_loss_figure(
            histories, variants, names
        )
        figures["a_regularization_weights"] = weights_figure(histories, variants, names)
    else:
        skip("a_regularization_loss", "Part A variant with an L1 or L2 penalty")
        skip("a_regularization_weights", "Part A variant with an L1 or L2 penalty")

    _compare_batchnorm(
        figures,
        "a_batchnorm",
        "A",
        with_baselines(of("lowlevel", "batch norm"), variants),
        histories,
        variants,
        skip,
    )

    networks = plain_variants(variants, "keras_mlp")
    if networks:
        figures["b_curves"] = curves_grid(
            histories,
            variants,
            networks,
            "Part B: train and validation curves "
            f"({describe_training(variants[networks[0]])})",
        )
        figures["b_size"] = size_figure(
            evals,
            variants,
            [
                name
                for name, variant in variants.items()
                if variant.family == "keras_mlp"
            ],
        )
    else:
        skip("b_curves", "plain Part B variant")
        skip("b_size", "plain Part B variant")

    dropout = with_baselines(of("keras_mlp", "dropout"), variants)
    if dropout:
        figures["b_dropout"] = dropout_figure(histories, variants, dropout)
    else:
        skip("b_dropout", "Part B variant with dropout")

    _compare_batchnorm(
        figures,
        "b_batchnorm",
        "B",
        with_baselines(of("keras_mlp", "batch norm"), variants),
        histories,
        variants,
        skip,
    )

    best = best_variant({name: evals[name] for name in variants})
    figures["confusion"] = confusion_figure(
        predictions(best), best, evals[best]["accuracy"]
    )
    return figures


def _compare_batchnorm(figures, stem, part, groups, histories, variants, skip) -> None:
    if not groups:
        skip(stem, f"Part {part} variant with batch normalization and its plain twin")
        return
    names = [name for base, group in groups.items() for name in (base, *group)]
    training = describe_training(variants[names[-1]])
    figures[stem] = curves_figure(
        histories,
        names,
        f"Part {part}: batch normalization against none ({training})",
    )


def save_png(figure: Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """Write `figure` as a PNG file at `dpi`."""
    figure.savefig(path, dpi=dpi, format="png")
