"""rkdbench.teachers."""
