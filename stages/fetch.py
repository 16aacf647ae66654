"""fetch: get Fashion-MNIST, verify it, store the raw arrays and their provenance."""

import logging
from pathlib import Path

import hydra
import numpy as np

from fmnist.config import load_config
from fmnist.data import sources
from fmnist.io import atomic_path, write_json

log = logging.getLogger(__name__)


@hydra.main(config_path=".", config_name="entry", version_base=None)
def main(raw) -> None:
    config = load_config(raw)

    dataset = sources.fetch(config.fetch)
    summary = sources.verify(dataset.arrays, sources.COUNTS, sources.SHA256)
    log.info(
        "verified %s from %s",
        {k: v.shape for k, v in dataset.arrays.items()},
        dataset.source,
    )

    with atomic_path(config.paths.raw) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **dataset.arrays)
    write_json(
        Path(config.paths.metrics) / "fetch.json", {"source": dataset.source, **summary}
    )
    log.info("wrote %s", config.paths.raw)


if __name__ == "__main__":
    main()
