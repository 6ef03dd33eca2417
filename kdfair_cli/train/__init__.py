"""Training: device choice, batch pipeline, KD loss, the shared loop, checkpoints."""
