"""prepare: flatten and scale the images, split off the validation set."""

import logging

import hydra
import numpy as np

from fmnist.config import load_config
from fmnist.data.prepare import prepare
from fmnist.io import atomic_path
from fmnist.seeding import derive_seed

log = logging.getLogger(__name__)


@hydra.main(config_path=".", config_name="entry", version_base=None)
def main(raw) -> None:
    config = load_config(raw)

    with np.load(config.paths.raw) as arrays:
        data = prepare(
            dict(arrays), config.prepare, derive_seed(config.seed, "prepare")
        )
    log.info(
        "train %s, test %s, %d held out for validation",
        data.x_train.shape,
        data.x_test.shape,
        len(data.val_index),
    )

    with atomic_path(config.paths.prepared) as tmp:
        data.save(tmp)
    log.info("wrote %s", config.paths.prepared)


if __name__ == "__main__":
    main()
