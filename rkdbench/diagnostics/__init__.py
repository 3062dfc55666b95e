"""rkdbench.diagnostics."""
