"""Training loops, evaluation, checkpoints, metrics and generation."""
