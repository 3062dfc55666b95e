"""A cell's lease: which worker trains it now. At most one worker holds a cell at a time, and a dead holder
releases it without anyone's help.

The lease is a non-blocking exclusive `fcntl.flock` on `<results>/cells/<key>/.lease`, held from before the
store is re-checked until the cell's last log line is delivered. The operating system drops the lock the moment
its holder dies (SIGKILL, OOM kill, a crash): on a local filesystem another worker can take the cell over at
once. On a shared NFSv4 filesystem the server drops the lock of a client that stopped renewing it after the NFS
lease time (90 s by default), which bounds how long a lost node holds a cell. The file also says, for humans,
who holds it (`host:pid since <UTC time>`); it is never deleted (deleting a lock file lets two workers lock two
different files). Linux emulates `flock` on NFS with POSIX record locks, which a process loses when it closes
any descriptor of the file: the holder never opens its own lease file a second time.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

__all__ = ["CellLease", "LEASE_NAME", "NFS_LEASE_SECONDS"]

LEASE_NAME = ".lease"
NFS_LEASE_SECONDS = 90  # the Linux NFSv4 server's default lease time: the takeover bound on NFS


class CellLease:
    """`with CellLease(folder) as lease:` tries once; `lease.held` says whether this process holds the cell."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LEASE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lease if no live process holds it; never waits."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()} since {stamp}\n".encode(), 0)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def busy(self) -> bool:
        """Whether a live process holds the lease now (a probe that takes nothing; never waits)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)

    def holder(self) -> str:
        """'host:pid since <time>' of the last holder, as it wrote itself ('' if unknown)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def __enter__(self) -> CellLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
