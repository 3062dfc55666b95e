"""Errors the host raises for bad input: each is one line naming what was wrong and what is allowed.

`UserError` and its subclasses are what the CLI turns into a one-line message and exit code 2; anything
else is a bug or a failure of a cell and is reported with its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "UserError",
    "ConfigError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "MissingTeacherError",
    "TrackingError",
    "close_matches",
]


class UserError(Exception):
    """Bad input from the user: the CLI prints the message on one line and exits with code 2."""


class ConfigError(UserError):
    """A protocol, suite or override is malformed or names a field or value that is not allowed."""


class UnknownComponentError(UserError, KeyError):
    """A plugin name (method, architecture, attack, dataset, teacher) that nobody registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(UserError):
    """Two plugins registered the same name for the same kind of component."""


class MissingTeacherError(UserError):
    """A teacher checkpoint is not in the model dir (or fails its sha256 check)."""


class TrackingError(UserError):
    """The MLflow tracking store cannot be reached or written."""


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for the closest names, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
