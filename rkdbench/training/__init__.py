"""rkdbench.training."""
