"""rkdbench.evaluation."""
