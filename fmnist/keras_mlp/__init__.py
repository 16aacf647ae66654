"""Part B: MLPs built and trained with Keras."""

from fmnist.keras_mlp.model import build
from fmnist.keras_mlp.train import load_logits_fn, train

__all__ = ["build", "load_logits_fn", "train"]
