"""train: train one variant (`variant=<name>`), save the model and its history.

Under `--multirun` each job writes into its own Hydra sweep directory instead of
the pipeline's outputs, and scores the test set there too, so a sweep is complete
without the evaluate stage.
"""

import logging

import hydra

from fmnist.config import load_config
from fmnist.data.prepare import Prepared
from fmnist.evaluate import evaluate_variant
from fmnist.io import atomic_dir, write_json
from fmnist.seeding import seed_everything
from fmnist.training import family, write_history
from stages.common import is_multirun, output_root

log = logging.getLogger(__name__)


@hydra.main(config_path=".", config_name="entry", version_base=None)
def main(raw) -> None:
    config = load_config(raw)
    name, variant = config.selected()
    seed_everything(config.seed)
    if config.train.mixed_precision:
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
    root = output_root()
    model_dir = root / config.paths.models / name
    metrics_dir = root / config.paths.metrics / name

    data = Prepared.load(config.paths.prepared)
    result = family(variant.family).train(
        name, variant, data, config.seed, jit_compile=config.train.jit_compile
    )

    summary = {
        "epochs": len(result.history),
        "trainable_params": result.trainable_params,
        "train_seconds": round(result.seconds, 2),
    }
    # Model first, history last, so a new history always describes a saved model.
    with atomic_dir(model_dir) as tmp:
        result.save(tmp)
        write_json(tmp / "summary.json", summary)
    write_history(metrics_dir / "history.csv", result.history)
    log.info("%s: trained in %.1f s; model in %s", name, result.seconds, model_dir)

    if is_multirun():
        evaluate_variant(
            name, variant, data, model_dir, metrics_dir, config.evaluate.batch_size
        )


if __name__ == "__main__":
    main()
