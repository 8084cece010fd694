"""Training: data, optimizers, the training loop, checkpoints, metrics and diagnostics."""
