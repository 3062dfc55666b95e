"""`--executor serial`: this process runs the suite's cells one after another (`rkdbench.run_cells`: cells held by
other workers are passed over, then waited for or taken over when their holder is gone)."""

from __future__ import annotations

from rkdbench import Executor, hookimpl, run_cells

__all__ = ["Serial"]


class Serial(Executor):
    name = "serial"
    description = "this process runs the cells one after another"

    def run(self, cells, tracker, options, prepare):
        prepare(cells, tracker, options)
        return run_cells(cells, tracker, options)


@hookimpl
def register_executors(register):
    register(Serial)
