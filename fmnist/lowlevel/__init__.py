"""Part A: MLPs written with TensorFlow's low-level API.

`model` holds the network (variables, forward pass, hand-written batch
normalization) and the numerics (stable cross-entropy, accuracy, penalties);
`train` holds the training loop built on `tf.GradientTape` and `tf.function`.
"""

from fmnist.lowlevel.train import load_logits_fn, train

__all__ = ["load_logits_fn", "train"]
