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
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic."""
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.keras.utils.set_random_seed(seed % 2**32)
    tf.config.experimental.enable_op_determinism()
    log.debug("seeded with %d; op determinism on", seed)


def _text_key(name: str) -> int:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")
