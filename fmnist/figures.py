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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

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
    "lowlevel": (
        "epoch",
        "train_loss",
        "train_loss_penalized",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "weight_abs_sum",
        "weight_abs_max",
        "weight_abs_mean",
    ),
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
    """Group variants under their baseline; those without one are left out."""
    groups: dict[str, list[str]] = {}
    for name in names:
        base = baseline(name, variants)
        if base is not None:
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
    # Room around the points for their labels.
    ax.set_xlim(min(params.values()) / 3, max(params.values()) * 3)
    low, high = min(accuracy.values()), max(accuracy.values())
    margin = max(high - low, 0.01) * 0.12
    ax.set_ylim(low - margin, high + margin)
    _decorate(ax, "test accuracy", "trainable parameters (log scale)")
    ax.legend(fontsize="small", loc="best")
    ax.set_title("Part B: test accuracy against trainable parameters")
    _label_points(figure, ax, {name: (params[name], accuracy[name]) for name in names})
    return figure


def dropout_figure(
    histories: Mapping[str, pd.DataFrame],
    variants: Mapping[str, VariantConfig],
    names: Sequence[str],
) -> Figure:
    """One row per network: validation accuracy, validation loss and the gap
    between validation and train loss per epoch, one line per dropout rate.

    Each variant with dropout is drawn in the row of its plain baseline.
    """
    groups = with_baselines(
        [name for name in names if variants[name].dropout], variants
    )
    figure = Figure(figsize=(14, 3.8 * len(groups) + 0.6), layout="constrained")
    axes = figure.subplots(len(groups), 3, sharex=True, squeeze=False)
    panels = (
        ("validation accuracy", lambda h: h["val_accuracy"]),
        ("validation loss", lambda h: h["val_loss"]),
        ("validation - train loss", lambda h: h["val_loss"] - h["train_loss"]),
    )
    for row, (base, group) in enumerate(groups.items()):
        ordered = [base, *sorted(group, key=lambda name: variants[name].dropout)]
        shades = matplotlib.colormaps["viridis"](np.linspace(0.15, 0.85, len(group)))
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
    if xlabel == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


# Where a point's label may go, in points from the point, in order of preference.
LABEL_OFFSETS = [
    (side * 7, step * 9) for step in (0, 1, -1, 2, -2, 3, -3, 4, -4) for side in (1, -1)
]


def _label_points(figure: Figure, ax, points: Mapping[str, tuple[float, float]]):
    """Write each name beside its point where it overlaps no other label, point
    or the legend: right or left of the point first, then further up or down,
    joined to the point by a thin line."""
    # Positions are decided in pixels, so the layout must be final first.
    FigureCanvasAgg(figure)
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [
        Bbox.from_bounds(x - 5, y - 5, 10, 10)
        for x, y in ax.transData.transform(list(points.values()))
    ]
    if ax.get_legend():
        taken.append(ax.get_legend().get_window_extent(renderer))

    for name, xy in points.items():
        chosen = None
        for dx, dy in LABEL_OFFSETS:
            label = ax.annotate(
                name,
                xy,
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right",
                va="center",
                fontsize="small",
            )
            box = label.get_window_extent(renderer).padded(2)
            label.remove()
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if fits and not any(box.overlaps(other) for other in taken):
                chosen = (dx, dy, box)
                break
        dx, dy, box = chosen or (*LABEL_OFFSETS[0], None)
        ax.annotate(
            name,
            xy,
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            va="center",
            fontsize="small",
            arrowprops=(
                {"arrowstyle": "-", "color": "grey", "linewidth": 0.6} if dy else None
            ),
            # A light backing keeps a label readable where it crosses a line.
            bbox={
                "boxstyle": "square,pad=0.1",
                "fc": "white",
                "ec": "none",
                "alpha": 0.8,
            },
        )
        if box is not None:
            taken.append(box)


# All figures at once.

# Why a figure is skipped: what it needs and the configuration lacks.
NEEDS = {
    "a_softmax": "Part A variant without hidden layers",
    "a_architectures": "plain Part A variant with hidden layers",
    "a_regularization_loss": "Part A variant with an L1 or L2 penalty and its twin",
    "a_regularization_weights": "Part A variant with an L1 or L2 penalty and its twin",
    "a_batchnorm": "Part A variant with batch normalization and its twin",
    "b_curves": "plain Part B variant",
    "b_size": "Part B variant",
    "b_dropout": "Part B variant with dropout and its twin",
    "b_batchnorm": "Part B variant with batch normalization and its twin",
    "confusion": "variant",
}


def select(variants: Mapping[str, VariantConfig]) -> dict[str, list[str]]:
    """Which variants each figure draws, by file stem, in configuration order.

    A comparison lists each plain baseline before the variants compared with it;
    a variant without a baseline is left out with a warning. A figure whose list
    is empty cannot be drawn.
    """

    def of(family: str, kind: str) -> list[str]:
        return [
            name
            for name, variant in variants.items()
            if variant.family == family and _kind(variant) == kind
        ]

    def compared(family: str, kind: str) -> list[str]:
        names = of(family, kind)
        groups = with_baselines(names, variants)
        for name in names:
            if not any(name in group for group in groups.values()):
                log.warning(
                    "%s (%s, hidden %s) has no plain variant to compare with; "
                    "left out of the figures",
                    name,
                    variants[name].family,
                    describe_hidden(variants[name]),
                )
        return [name for base, group in groups.items() for name in (base, *group)]

    plain_a = plain_variants(variants, "lowlevel")
    penalized = compared("lowlevel", "penalty")
    return {
        "a_softmax": [name for name in plain_a if not variants[name].hidden],
        "a_architectures": [name for name in plain_a if variants[name].hidden],
        "a_regularization_loss": penalized,
        "a_regularization_weights": penalized,
        "a_batchnorm": compared("lowlevel", "batch norm"),
        "b_curves": plain_variants(variants, "keras_mlp"),
        "b_size": [n for n, v in variants.items() if v.family == "keras_mlp"],
        "b_dropout": compared("keras_mlp", "dropout"),
        "b_batchnorm": compared("keras_mlp", "batch norm"),
        "confusion": list(variants),
    }


def draw_all(
    histories: Mapping[str, pd.DataFrame],
    evals: Mapping[str, Mapping],
    variants: Mapping[str, VariantConfig],
    predictions: Callable[[str], pd.DataFrame],
) -> dict[str, Figure]:
    """Draw every figure whose variants are configured, keyed by file stem.

    A figure none of whose variants are configured is skipped with a warning, so
    variants can be dropped from the configuration without breaking the stage.

    Args:
        histories: per-epoch history of every variant in `variants`.
        evals: test metrics (`eval.json`) of every variant in `variants`.
        variants: the configured variants, in report order.
        predictions: returns a variant's test predictions (read on demand, as
            only the best model's are drawn).
    """

    def training(names: Sequence[str]) -> str:
        settings = {name: describe_training(variants[name]) for name in names}
        if len(set(settings.values())) == 1:
            return settings[names[0]]
        return "; ".join(f"{name}: {text}" for name, text in settings.items())

    def hidden(names: Sequence[str]) -> str:
        return ", ".join(f"{name}: {describe_hidden(variants[name])}" for name in names)

    def confusion(names: Sequence[str]) -> Figure:
        best = best_variant({name: evals[name] for name in names})
        return confusion_figure(predictions(best), best, evals[best]["accuracy"])

    drawers = {
        "a_softmax": lambda names: curves_figure(
            histories, names, f"Part A: softmax regression ({training(names)})"
        ),
        "a_architectures": lambda names: curves_figure(
            histories, names, f"Part A: hidden layers ({hidden(names)})"
        ),
        "a_regularization_loss": lambda names: regularization_loss_figure(
            histories, variants, names
        ),
        "a_regularization_weights": lambda names: weights_figure(
            histories, variants, names
        ),
        "a_batchnorm": lambda names: curves_figure(
            histories,
            names,
            f"Part A: batch normalization against none ({training(names)})",
        ),
        "b_curves": lambda names: curves_grid(
            histories,
            variants,
            names,
            f"Part B: train and validation curves ({training(names)})",
        ),
        "b_size": lambda names: size_figure(evals, variants, names),
        "b_dropout": lambda names: dropout_figure(histories, variants, names),
        "b_batchnorm": lambda names: curves_figure(
            histories,
            names,
            f"Part B: batch normalization against none ({training(names)})",
        ),
        "confusion": confusion,
    }

    figures = {}
    for stem, names in select(variants).items():
        if names:
            figures[stem] = drawers[stem](names)
        else:
            log.warning("skipping %s.png: no %s configured", stem, NEEDS[stem])
    return figures


def save_png(figure: Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """Write `figure` as a PNG file at `dpi`."""
    figure.savefig(path, dpi=dpi, format="png")
