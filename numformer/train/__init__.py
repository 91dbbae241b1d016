"""Training loops, evaluation, checkpoints, metrics and generation."""

from numformer.train.config import TrainConfig  # noqa: E402
from numformer.train.run import train  # noqa: E402

__all__ = ["TrainConfig", "train"]
