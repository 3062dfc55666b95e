"""All-or-nothing files: every file the harness owns that a kill must not leave half-written (checkpoints, the
journal's delivery count, calibration caches, the results store itself) is written to a temporary file in the same
folder, flushed to disk, and renamed over the target in one `os.replace`, which POSIX makes atomic. A kill before
the rename leaves the previous file (or none) and a `.<name>.*.tmp` leftover that the next writer may remove; a kill
after it leaves the new file whole. Imports nothing of the harness, so the bottom of every tier may use it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomic", "write_bytes_atomic", "write_text_atomic", "sha256_file", "temporary_sibling"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_sibling(path: Path) -> Path:
    """A new, empty temporary file beside `path` (same folder, so the rename stays on one filesystem), with the
    permissions a plain `open` would give it (mkstemp's 0600 would hide a shared results folder's files from the
    rest of its group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through `write(fh)` on a temporary sibling, fsync it, and rename it into place."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode()))


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
