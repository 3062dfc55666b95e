"""Checkpoint files: atomic writes, a sha256 sidecar, and loading with `weights_only=True` only.

A write goes to a temporary file in the same folder and is renamed over the target, so a kill mid-write
leaves the previous checkpoint intact; the `<file>.sha256` sidecar is written after it and checked on load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import sha256_file, write_atomic
from ..errors import UserError

__all__ = ["sha256_file", "save_atomic", "load_verified", "CheckpointError"]


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, not a torch file, or fails its sha256 check."""


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> str:
    """torch.save `obj` to `path` atomically, write `<path>.sha256`, and return the digest."""
    path = Path(path)
    write_atomic(path, lambda fh: torch.save(obj, fh))
    digest = sha256_file(path)
    write_atomic(path.with_name(path.name + ".sha256"), lambda fh: fh.write(f"{digest}  {path.name}\n".encode()))
    return digest


def load_verified(
    path: str | os.PathLike[str], expected_sha256: str | None = None, map_location: str | torch.device = "cpu"
) -> Any:
    """Load a torch file with weights_only=True after checking its sha256 (given, or from the sidecar if present)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    sidecar = path.with_name(path.name + ".sha256")
    if expected_sha256 is None and sidecar.is_file():
        expected_sha256 = sidecar.read_text().split()[0]
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise CheckpointError(f"checkpoint {path} fails its sha256 check: expected {expected_sha256}, got {actual}")
    with path.open("rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise CheckpointError(f"checkpoint {path} is an HTML page, not a torch file (a failed download?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
