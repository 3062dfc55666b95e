"""rkdbench.app."""
