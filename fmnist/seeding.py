"""One seed for every source of randomness, and deterministic TensorFlow ops."""

from __future__ import annotations

import hashlib
import logging
import random

import numpy as np

log = logging.getLogger(__name__)


def derive_seed(seed: int, *names: str) -> int:
    """Derive a stable sub-seed for one use (a variant, a split) from `seed`."""
    sequence = np.random.SeedSequence([seed, *(_text_key(name) for name in names)])
    return int(sequence.generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic.

    Call it before TensorFlow runs its first op, so `one_op_at_a_time` can act.
    """
    import tensorflow as tf

    one_op_at_a_time()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.keras.utils.set_random_seed(seed % 2**32)
    tf.config.experimental.enable_op_determinism()
    log.debug("seeded with %d; op determinism on", seed)


def one_op_at_a_time() -> None:
    """Run the ops of a TensorFlow graph one after another; each op still uses
    every core (intra-op threads are untouched).

    Op determinism alone was not enough: with independent ops of a training step
    running side by side, the full-size batch-norm network's losses differed in
    their last digits from one process to the next, and the gap grew over the
    epochs. Only the first call before TensorFlow starts can set this; later, a
    warning says that results may differ between processes.
    """
    import tensorflow as tf

    if tf.config.threading.get_inter_op_parallelism_threads() == 1:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.warning(
            "TensorFlow has already started, so its ops may run side by side: "
            "results can differ in the last digits between processes"
        )


def _text_key(name: str) -> int:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")
