"""Values of a cell's fields that mean something of their own, shared by the code that expands cells (the runner)
and the code that reads them back from the store (leaderboards, plots). It imports nothing, so presentation code
reads these names without pulling in the runner or torch.
"""

from __future__ import annotations

__all__ = ["NO_TEACHER"]

NO_TEACHER = "none"  # the teacher of a cell whose method uses none (its key and its `rkdbench.teacher` tag)
