"""Compatibility path: the store module moved to `rkdbench.tracking.store`."""

from .tracking.store import LOCK_NAME, open_client, sqlite_path, store_lock, upgrade_store

__all__ = ["store_lock", "open_client", "upgrade_store", "sqlite_path", "LOCK_NAME"]
