"""evaluate: score one trained variant on the test set."""

import csv
import logging
from pathlib import Path

import hydra

from fmnist.config import load_config
from fmnist.data.prepare import Prepared
from fmnist.evaluate import predict_logits, score
from fmnist.io import atomic_path, read_json, write_json
from fmnist.training import family, read_history
from stages.common import output_root

log = logging.getLogger(__name__)


@hydra.main(config_path=".", config_name="entry", version_base=None)
def main(raw) -> None:
    config = load_config(raw)
    name, variant = config.selected()
    root = output_root()
    model_dir = root / config.paths.models / name
    metrics_dir = root / config.paths.metrics / name

    data = Prepared.load(config.paths.prepared)
    n_classes = max(int(data.y_train.max()), int(data.y_test.max())) + 1
    logits_fn, params = family(variant.family).load_logits_fn(
        model_dir, variant, data.x_train.shape[1], n_classes
    )
    scores = score(predict_logits(logits_fn, data.x_test, config.evaluate.batch_size), data.y_test)
    history = read_history(metrics_dir / "history.csv")
    summary = read_json(model_dir / "summary.json")

    final = history[-1]
    metrics = {
        "accuracy": scores["accuracy"],
        "loss": scores["loss"],
        "train_accuracy": final["train_accuracy"],
        "train_loss": final["train_loss"],
    }
    if "val_accuracy" in final:
        metrics |= {"val_accuracy": final["val_accuracy"], "val_loss": final["val_loss"]}
    metrics |= {
        "trainable_params": params,
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "per_class_accuracy": scores["per_class_accuracy"],
    }
    write_json(metrics_dir / "eval.json", metrics)
    with atomic_path(metrics_dir / "predictions.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["actual", "predicted"])
            writer.writerows(zip(data.y_test.tolist(), scores["predicted"].tolist()))
    log.info("%s: test accuracy %.4f, loss %.4f", name, metrics["accuracy"], metrics["loss"])


if __name__ == "__main__":
    main()
