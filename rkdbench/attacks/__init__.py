"""rkdbench.attacks."""
