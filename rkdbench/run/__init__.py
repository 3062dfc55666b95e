"""Running suites: from a suite's cells to one finished MLflow run per cell, idempotently.

`cells` expands a suite into cells (each carrying its method object), `prepare` checks the store and builds
missing teachers, `executor` is the executor contract (the executors themselves are plugins: plugins/executors/)
and runs a suite on one, `loop` runs cells in this process and `remote` in other processes or machines, `lease` is
a cell's lease, `cell` is one cell's exactly-once lifecycle (lease, find or create its run, deliver
its journal), `train` trains and evaluates it (`selections` measures its checkpoints), `progress` prints epoch
bars and the suite status line, `options` holds `RunOptions` and `CellOutcome`. A FINISHED run with the same
cell key is skipped; an unfinished one (killed, interrupted, failed) is resumed from its last checkpoint in the
same MLflow run. Import the module you need: this file re-exports nothing.
"""
