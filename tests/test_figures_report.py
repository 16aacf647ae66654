"""The plots and report stages: figures, the summary table, and the DVC plots.

Fast tests draw from metrics the tests make themselves; slow ones read what the
tiny pipeline wrote in a repository copy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run

from fmnist import CLASS_NAMES, figures, report
from fmnist.config import VariantConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Metrics made up for the tests, shaped like those train and evaluate write.


def fake_history(variant: VariantConfig, epochs: int, rng) -> pd.DataFrame:
    """Per-epoch curves that rise and fall like training curves, with noise."""
    epoch = np.arange(1, epochs + 1)
    rate = rng.uniform(0.15, 0.5)
    top = rng.uniform(0.8, 0.95)
    accuracy = top - (top - 0.1) * np.exp(-rate * epoch)
    loss = 0.3 + 2.0 * np.exp(-rate * epoch)
    noise = rng.normal(0, 0.004, size=(4, epochs))
    held = "val" if variant.family == "keras_mlp" else "test"
    frame = pd.DataFrame(
        {
            "epoch": epoch,
            "train_loss": loss + noise[0],
            "train_accuracy": accuracy + noise[1],
            f"{held}_loss": loss + 0.05 + 0.01 * epoch + noise[2],
            f"{held}_accuracy": accuracy - 0.02 + noise[3],
        }
    )
    if variant.family == "lowlevel":
        penalty = 0.1 * (variant.l1 > 0) + 0.05 * (variant.l2 > 0)
        frame.insert(2, "train_loss_penalized", frame["train_loss"] + penalty)
        growth = 1.0 - 0.4 * bool(variant.l1 or variant.l2)
        frame["weight_abs_sum"] = 2000 + 9000 * growth * (1 - np.exp(-0.1 * epoch))
        frame["weight_abs_max"] = 0.05 + 0.3 * growth * (1 - np.exp(-0.1 * epoch))
        frame["weight_abs_mean"] = frame["weight_abs_sum"] / 266200
    return frame


def fake_metrics(variants, epochs: int = 12, n_test: int = 600, seed: int = 0):
    """Histories, eval.json contents and predictions for every variant."""
    rng = np.random.default_rng(seed)
    histories, evals, predictions = {}, {}, {}
    for index, (name, variant) in enumerate(variants.items()):
        history = fake_history(variant, epochs, rng)
        actual = rng.integers(0, len(CLASS_NAMES), n_test)
        right = rng.random(n_test) < 0.55 + 0.02 * index
        guessed = rng.integers(0, len(CLASS_NAMES), n_test)
        predicted = np.where(right, actual, guessed)
        final = history.iloc[-1]
        metrics = {
            "accuracy": float((predicted == actual).mean()),
            "loss": float(rng.uniform(0.3, 0.8)),
            "train_accuracy": float(final["train_accuracy"]),
            "train_loss": float(final["train_loss"]),
        }
        if variant.family == "keras_mlp":
            metrics["val_accuracy"] = float(final["val_accuracy"])
            metrics["val_loss"] = float(final["val_loss"])
        sizes = [784, *variant.hidden, 10]
        metrics |= {
            "trainable_params": sum(
                a * b + b for a, b in zip(sizes, sizes[1:], strict=False)
            ),
            "epochs": epochs,
            "train_seconds": round(float(rng.uniform(1, 90)), 2),
            "per_class_accuracy": {name: 0.5 for name in CLASS_NAMES},
        }
        histories[name] = history
        evals[name] = metrics
        predictions[name] = pd.DataFrame({"actual": actual, "predicted": predicted})
    return histories, evals, predictions


def write_metrics(metrics_dir: Path, histories, evals, predictions) -> None:
    """Write the made-up metrics where train and evaluate would."""
    for name, history in histories.items():
        folder = metrics_dir / name
        folder.mkdir(parents=True)
        history.to_csv(folder / "history.csv", index=False)
        (folder / "eval.json").write_text(json.dumps(evals[name]), encoding="utf-8")
        predictions[name].to_csv(folder / "predictions.csv", index=False)


# PNG checks.


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path}: not a PNG file"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, f"{path}: first chunk is not IHDR"
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]
    return struct.unpack(">II", data[16:24])


def check_png(path: Path) -> None:
    """A readable PNG, larger than 300 px each way, with a real picture in it."""
    width, height = png_size(path)
    assert width > 300 and height > 300, f"{path}: {width}x{height} px"
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    packed = (pixels[..., :3] * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1])
    colours = np.unique(packed)
    # Text, lines and antialiasing give thousands of colours; a blank or
    # single-colour image has a handful.
    assert len(colours) > 200, f"{path}: only {len(colours)} distinct colours"
    inked = (pixels[..., :3] < 0.9).any(axis=-1).mean()
    assert 0.01 < inked < 0.9, f"{path}: {inked:.1%} of pixels are not background"


# Figures.


@pytest.fixture
def made_up(tiny_config):
    """The real variants (tiny profile) with made-up metrics."""
    variants = tiny_config.variants
    return (variants, *fake_metrics(variants))


def test_every_figure_is_drawn_and_saved_as_a_readable_png(made_up, tmp_path):
    variants, histories, evals, predictions = made_up

    drawn = figures.draw_all(histories, evals, variants, predictions.__getitem__)
    for stem, figure in drawn.items():
        figures.save_png(figure, tmp_path / f"{stem}.png", dpi=80)

    assert sorted(drawn) == sorted(figures.CAPTIONS)
    for stem in figures.CAPTIONS:
        check_png(tmp_path / f"{stem}.png")


def test_figures_have_titles_labelled_axes_and_legends(made_up):
    variants, histories, evals, predictions = made_up

    drawn = figures.draw_all(histories, evals, variants, predictions.__getitem__)

    for stem, figure in drawn.items():
        title = figure.get_suptitle() or figure.axes[0].get_title()
        assert title, f"{stem}: no title"
        plotted = [ax for ax in figure.axes if ax.lines or ax.images]
        assert plotted, f"{stem}: nothing drawn"
        for ax in plotted:
            assert ax.get_xlabel(), f"{stem}: an axis without an x label"
        labelled = [ax for ax in plotted if ax.get_ylabel()]
        assert labelled, f"{stem}: no y label"
        if stem != "confusion":
            assert any(ax.get_legend() for ax in figure.axes), f"{stem}: no legend"


def test_comparisons_show_the_variants_they_compare(made_up):
    variants, histories, evals, predictions = made_up

    drawn = figures.draw_all(histories, evals, variants, predictions.__getitem__)

    def labels(stem):
        return {line.get_label() for ax in drawn[stem].axes for line in ax.get_lines()}

    assert labels("a_architectures") >= {"a_arch_a, train", "a_arch_b, test"}
    assert labels("a_batchnorm") >= {"a_arch_b, train", "a_arch_b_batchnorm, test"}
    assert labels("b_batchnorm") >= {"b_h4, validation", "b_h4_batchnorm, train"}
    assert labels("a_regularization_loss") >= {"train CE", "train CE + penalty"}
    weights = labels("a_regularization_weights")
    assert {label.split()[0] for label in weights} == {
        "a_arch_b",
        "a_arch_b_l1",
        "a_arch_b_l2",
    }
    dropout = drawn["b_dropout"]
    rows = {ax.get_title(loc="left") for ax in dropout.axes}
    assert rows >= {"hidden 600-400-200", "hidden 800-600-400-200"}
    assert labels("b_dropout") >= {
        "dropout 0 (b_h3)",
        "dropout 0.25 (b_h3_dropout25)",
        "dropout 0.5 (b_h4_dropout50)",
    }
    grid_titles = {ax.get_title().split("\n")[0] for ax in drawn["b_curves"].axes}
    assert grid_titles >= {"b_softmax", "b_h1", "b_h2", "b_h3", "b_h4"}


def test_curves_plot_the_history_values(made_up):
    variants, histories, evals, predictions = made_up

    figure = figures.curves_figure(histories, ["a_softmax"], "softmax")

    lines = {line.get_label(): line for line in figure.axes[1].get_lines()}
    test_loss = lines["a_softmax, test"].get_ydata()
    np.testing.assert_allclose(test_loss, histories["a_softmax"]["test_loss"])


def test_batchnorm_titles_name_the_training_setting(made_up):
    variants, histories, evals, predictions = made_up
    variants = dict(variants)
    variants["a_arch_b_batchnorm"] = dataclasses.replace(
        variants["a_arch_b_batchnorm"], batch_size=500
    )

    drawn = figures.draw_all(histories, evals, variants, predictions.__getitem__)

    a_title = drawn["a_batchnorm"].get_suptitle()
    b_title = drawn["b_batchnorm"].get_suptitle()
    # The two networks now train differently, so the title names both settings.
    assert "a_arch_b: full-batch training" in a_title
    assert "a_arch_b_batchnorm: mini-batches of 500" in a_title
    assert "mini-batches of 256" in b_title
    assert f"{variants['b_h4_batchnorm'].epochs} epochs" in b_title
    softmax = drawn["a_softmax"].get_suptitle()
    assert "full-batch training" in softmax


def test_size_figure_has_log_x_and_labels_every_point_apart(made_up):
    variants, histories, evals, predictions = made_up
    part_b = [n for n, v in variants.items() if v.family == "keras_mlp"]

    figure = figures.size_figure(evals, variants, part_b)

    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    texts = {text.get_text(): text for text in ax.texts}
    assert set(texts) == set(part_b)
    for name in part_b:
        assert texts[name].xy == (
            evals[name]["trainable_params"],
            evals[name]["accuracy"],
        )
    # The dropout variants share their network's size, so their points stack up;
    # the labels must still not overprint one another.
    renderer = figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    for index, box in enumerate(boxes):
        for other in boxes[index + 1 :]:
            assert not box.overlaps(other)
    frame = ax.get_window_extent(renderer)
    assert all(frame.contains(box.x0, box.y0) for box in boxes)


def test_confusion_matrix_is_of_the_best_model_with_counts(made_up):
    variants, histories, evals, predictions = made_up
    best = max(evals, key=lambda name: evals[name]["accuracy"])
    asked = []

    def read(name):
        asked.append(name)
        return predictions[name]

    figure = figures.draw_all(histories, evals, variants, read)["confusion"]

    assert asked == [best]
    ax = figure.axes[0]
    assert best in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASS_NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)
    frame = predictions[best]
    expected = pd.crosstab(frame["actual"], frame["predicted"]).reindex(
        index=range(10), columns=range(10), fill_value=0
    )
    cells = {(int(t.get_position()[1]), int(t.get_position()[0])): t for t in ax.texts}
    for (row, column), text in cells.items():
        assert int(text.get_text()) == expected.iloc[row, column]
    assert len(cells) == 100


def test_confusion_matrix_rejects_classes_out_of_range():
    frame = pd.DataFrame({"actual": [0, 1, 12], "predicted": [0, 1, 2]})

    with pytest.raises(ValueError, match=r"actual classes in \[0, 9\].*0\.\.12"):
        figures.confusion_figure(frame, "b_h1", 0.5)


def test_figures_of_dropped_variants_are_skipped_with_a_warning(made_up, caplog):
    variants, histories, evals, predictions = made_up
    dropped = {"a_arch_b_l1", "a_arch_b_l2", "b_h4_batchnorm", "a_softmax"}
    dropped |= {name for name in variants if "dropout" in name}
    kept = {n: v for n, v in variants.items() if n not in dropped}

    with caplog.at_level(logging.WARNING, logger="fmnist.figures"):
        drawn = figures.draw_all(histories, evals, kept, predictions.__getitem__)

    skipped = {
        "a_softmax",
        "a_regularization_loss",
        "a_regularization_weights",
        "b_dropout",
        "b_batchnorm",
    }
    assert set(drawn) == set(figures.CAPTIONS) - skipped
    warned = " ".join(r.getMessage() for r in caplog.records)
    for stem in skipped:
        assert f"skipping {stem}.png" in warned


def test_a_comparison_without_its_plain_twin_is_skipped(made_up, caplog):
    variants, histories, evals, predictions = made_up
    kept = {n: v for n, v in variants.items() if n != "a_arch_b"}

    with caplog.at_level(logging.WARNING, logger="fmnist.figures"):
        drawn = figures.draw_all(histories, evals, kept, predictions.__getitem__)

    assert "a_batchnorm" not in drawn and "a_regularization_loss" not in drawn
    assert "a_arch_b_batchnorm (lowlevel, hidden 300-100) has no plain" in caplog.text
    assert "skipping a_batchnorm.png" in caplog.text


def test_readers_name_the_missing_file_and_its_stage(made_up, tmp_path):
    variants, histories, evals, predictions = made_up
    write_metrics(tmp_path, histories, evals, predictions)
    (tmp_path / "b_h2" / "eval.json").unlink()
    (tmp_path / "a_arch_a" / "history.csv").write_text("epoch,train_loss\n1,2\n")

    with pytest.raises(FileNotFoundError, match=r"b_h2/eval.json.*evaluate@b_h2"):
        figures.read_evals(tmp_path, list(variants))
    with pytest.raises(ValueError, match=r"a_arch_a/history.csv: expected columns"):
        figures.read_histories(tmp_path, variants)


def test_readers_round_trip_the_metrics_files(made_up, tmp_path):
    variants, histories, evals, predictions = made_up
    write_metrics(tmp_path, histories, evals, predictions)

    read = figures.read_histories(tmp_path, variants)

    assert list(read) == list(variants)
    pd.testing.assert_frame_equal(read["b_h3"], histories["b_h3"], check_dtype=False)
    assert figures.read_evals(tmp_path, ["b_h1"]) == {"b_h1": evals["b_h1"]}
    pd.testing.assert_frame_equal(
        figures.read_predictions(tmp_path, "b_h1"), predictions["b_h1"]
    )


# The summary table.


def test_summary_table_has_one_row_per_variant_with_its_numbers(made_up):
    variants, histories, evals, predictions = made_up
    reference = {"a_softmax": 0.7651, "b_h4": 0.931}

    table = report.summary_table(variants, evals, reference)

    assert list(table["variant"]) == list(variants)
    for row in table.itertuples(index=False):
        metrics = evals[row.variant]
        assert row.test_accuracy == metrics["accuracy"]
        assert row.test_loss == metrics["loss"]
        assert row.train_accuracy == metrics["train_accuracy"]
        assert row.trainable_params == metrics["trainable_params"]
        assert row.train_seconds == metrics["train_seconds"]
        assert row.epochs == metrics["epochs"]
        if row.part == "B":
            assert row.val_accuracy == metrics["val_accuracy"]
        else:
            assert math.isnan(row.val_accuracy)
    rows = table.set_index("variant")
    assert rows.loc["a_softmax", "report_accuracy"] == 0.7651
    assert math.isnan(rows.loc["b_h1", "report_accuracy"])
    assert rows.loc["b_h4_dropout25", "extra"] == "dropout 0.25"
    assert rows.loc["a_arch_b_l1", "extra"] == f"L1 {variants['a_arch_b_l1'].l1:g}"
    assert rows.loc["b_h4_batchnorm", "extra"] == "batch norm"
    assert rows.loc["a_arch_b", "hidden"] == "300-100"
    assert rows.loc["b_softmax", "hidden"] == "none"
    assert rows.loc["b_softmax", "part"] == "B"


def test_summary_files_hold_the_table_and_link_the_figures(made_up, tmp_path):
    variants, histories, evals, predictions = made_up
    plots_dir, reports_dir = tmp_path / "plots", tmp_path / "reports"
    plots_dir.mkdir()
    for stem in ("a_softmax", "confusion"):
        (plots_dir / f"{stem}.png").write_bytes(PNG_SIGNATURE)
    table = report.summary_table(variants, evals, {"b_h1": 0.9156})

    links = report.figure_links(plots_dir, reports_dir)
    markdown, table_csv = report.write_summary(table, links, reports_dir)

    assert links == [
        (figures.CAPTIONS["a_softmax"], "../plots/a_softmax.png"),
        (figures.CAPTIONS["confusion"], "../plots/confusion.png"),
    ]
    # An empty text cell reads back as missing.
    read = pd.read_csv(table_csv).fillna({"extra": ""})
    pd.testing.assert_frame_equal(read, table, check_dtype=False)
    text = markdown.read_text(encoding="utf-8")
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table_lines) == len(variants) + 2
    b_h1 = next(line for line in table_lines if line.startswith("| b_h1 "))
    cells = [cell.strip() for cell in b_h1.strip("|").split("|")]
    assert cells[4] == f"{evals['b_h1']['accuracy']:.4f}"
    assert cells[8] == f"{evals['b_h1']['trainable_params']:,}"
    assert cells[-1] == "0.9156"
    assert f"[{figures.CAPTIONS['confusion']}](../plots/confusion.png)" in text
    assert not list(reports_dir.glob(".*"))


# The stages, run by DVC in the tiny repository copy.


def stage_outputs(repo: Path) -> tuple[dict, Path, Path]:
    """The copy's params and its plots and reports directories."""
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    return params, repo / params["paths"]["plots"], repo / params["paths"]["reports"]


@pytest.mark.slow
def test_plots_stage_renders_every_figure(tiny_repo):
    params, plots_dir, _ = stage_outputs(tiny_repo)

    assert sorted(p.stem for p in plots_dir.glob("*.png")) == sorted(figures.CAPTIONS)
    for path in plots_dir.glob("*.png"):
        check_png(path)
    dpi = params["plots"]["dpi"]
    width, _ = png_size(plots_dir / "a_softmax.png")
    assert width == round(11 * dpi)


@pytest.mark.slow
def test_report_stage_table_matches_eval_files(tiny_repo):
    params, plots_dir, reports_dir = stage_outputs(tiny_repo)
    metrics_dir = tiny_repo / params["paths"]["metrics"]

    table = pd.read_csv(reports_dir / "summary.csv")

    assert list(table["variant"]) == list(params["variants"])
    for row in table.itertuples(index=False):
        metrics = json.loads((metrics_dir / row.variant / "eval.json").read_text())
        assert row.test_accuracy == pytest.approx(metrics["accuracy"], abs=1e-12)
        assert row.test_loss == pytest.approx(metrics["loss"], abs=1e-12)
        assert row.trainable_params == metrics["trainable_params"]
        assert row.epochs == metrics["epochs"]
        if "val_accuracy" in metrics:
            assert row.val_accuracy == pytest.approx(metrics["val_accuracy"])
    text = (reports_dir / "summary.md").read_text(encoding="utf-8")
    links = [
        line.split("](")[1].rstrip(")")
        for line in text.splitlines()
        if line.startswith("- [")
    ]
    assert len(links) == len(figures.CAPTIONS)
    for link in links:
        assert (reports_dir / link).resolve().is_file(), link


@pytest.mark.slow
def test_pipeline_is_up_to_date_after_the_run(tiny_repo):
    status = run(["dvc", "status", "--json"], tiny_repo)

    assert json.loads(status.stdout) == {}


# The top-level plots of dvc.yaml: each curve is one file and column.
DECLARED_PLOTS = {
    "a_accuracy": {
        f"{name}/history.csv::{split}_accuracy"
        for name in ("a_softmax", "a_arch_a", "a_arch_b")
        for split in ("train", "test")
    },
    "b_loss": {
        f"{name}/history.csv::{split}_loss"
        for name in ("b_softmax", "b_h1", "b_h2", "b_h3", "b_h4")
        for split in ("train", "val")
    },
}


@pytest.mark.slow
def test_dvc_plots_show_renders_the_declared_plots(tiny_clone):
    result = run(["dvc", "plots", "show", "--json"], tiny_clone)

    shown = json.loads(result.stdout)
    assert "errors" not in shown, shown.get("errors")
    data = shown["data"]
    for name in ("a_accuracy", "a_loss", "b_accuracy", "b_loss", "confusion_b_h4"):
        assert name in data, f"{name} missing from {sorted(data)}"
        assert data[name][0]["content"]["data"]["values"], f"{name}: no data"
    for name, curves in DECLARED_PLOTS.items():
        values = data[name][0]["content"]["data"]["values"]
        assert {value["filename::field"] for value in values} == curves
    confusion = data["confusion_b_h4"][0]["content"]["data"]["values"]
    params, _, _ = stage_outputs(tiny_clone)
    metrics_dir = tiny_clone / params["paths"]["metrics"]
    predictions = pd.read_csv(metrics_dir / "b_h4" / "predictions.csv")
    assert len(confusion) == len(predictions)

    run(["dvc", "plots", "show", "-o", "dvc_plots"], tiny_clone)
    assert (tiny_clone / "dvc_plots" / "index.html").stat().st_size > 1000


@pytest.mark.slow
def test_plots_stage_skips_figures_of_dropped_variants(tiny_clone):
    dropped = ["a_arch_b_l1", "a_arch_b_l2"]
    out = tiny_clone / "figures_dropped"

    result = run(
        [
            "python",
            "-m",
            "stages.plots",
            "paths.plots=figures_dropped",
            *(f"~variants.{name}" for name in dropped),
        ],
        tiny_clone,
    )

    # Hydra sends the stage's log to standard output.
    logged = result.stdout + result.stderr
    assert "skipping a_regularization_loss.png" in logged
    assert "skipping a_regularization_weights.png" in logged
    rendered = {p.stem for p in out.glob("*.png")}
    assert rendered == set(figures.CAPTIONS) - {
        "a_regularization_loss",
        "a_regularization_weights",
    }
