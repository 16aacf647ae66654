"""plots: render every figure of the report from the variants' metrics files."""

import logging
from pathlib import Path

import hydra

from fmnist import figures
from fmnist.config import load_config
from fmnist.io import atomic_dir

log = logging.getLogger(__name__)


@hydra.main(config_path=".", config_name="entry", version_base=None)
def main(raw) -> None:
    config = load_config(raw)
    metrics = Path(config.paths.metrics)

    histories = figures.read_histories(metrics, config.variants)
    evals = figures.read_evals(metrics, list(config.variants))
    drawn = figures.draw_all(
        histories,
        evals,
        config.variants,
        lambda name: figures.read_predictions(metrics, name),
    )

    # The whole directory is replaced, so figures of dropped variants disappear.
    with atomic_dir(config.paths.plots) as tmp:
        for stem, figure in drawn.items():
            figures.save_png(figure, tmp / f"{stem}.png", config.plots.dpi)
    log.info("wrote %d figures to %s", len(drawn), config.paths.plots)


if __name__ == "__main__":
    main()
