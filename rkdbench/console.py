"""The rich Console the command line prints progress and tables with: on a terminal, rich's own; in a log, a pipe
or CI, every message is one unwrapped (greppable) line and tables are laid out for LOG_WIDTH columns instead of
rich's default 80.
"""

from __future__ import annotations

__all__ = ["LOG_WIDTH", "make_console"]

LOG_WIDTH = 100  # tables printed to a log or pipe are laid out for this many columns


def make_console(quiet: bool = False):
    """A rich Console, or None when `quiet` (nothing but errors and results is printed)."""
    from rich.console import Console

    if quiet:
        return None
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, soft_wrap=True, width=LOG_WIDTH)
