"""rkdbench.cost."""
