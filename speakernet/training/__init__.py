"""Training: optimisers and schedulers, samplers, checkpoints, the trainer loop, DDP helpers."""
