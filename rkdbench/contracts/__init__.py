"""rkdbench.contracts."""
