"""Executors: how the cells of a suite are spread over workers. Every executor calls `run.cell.run_cell` for one
cell, which makes a cell exactly-once by itself (its lease and journal): `serial` is one worker's loop (its pass,
then the wait for cells other workers hold), `local` runs N such workers as processes on this machine, and
`ray_executor` runs one Ray task per cell on a local or remote Ray cluster."""
