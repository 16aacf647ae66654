"""Entry points of the pipeline's stages, one module per stage.

Each is run as `python -m stages.<name>` and reads `params.yaml` through Hydra, so
command-line overrides and `--multirun` work on it.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the stage logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
