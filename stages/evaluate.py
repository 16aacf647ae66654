"""evaluate: score one trained variant (`variant=<name>`) on the test set."""

import hydra

from fmnist.config import load_config
from fmnist.data.prepare import Prepared
from fmnist.evaluate import evaluate_variant
from fmnist.seeding import one_op_at_a_time
from stages.common import output_root


@hydra.main(config_path=".", config_name="entry", version_base=None)
def main(raw) -> None:
    one_op_at_a_time()  # as in training, so both score with the same op order
    config = load_config(raw)
    name, variant = config.selected()
    root = output_root()

    data = Prepared.load(config.paths.prepared)
    evaluate_variant(
        name,
        variant,
        data,
        model_dir=root / config.paths.models / name,
        metrics_dir=root / config.paths.metrics / name,
        batch_size=config.evaluate.batch_size,
    )


if __name__ == "__main__":
    main()
