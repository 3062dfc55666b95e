"""What a cell costs, before and after it runs: forward/backward passes and FLOPs counted by running one real step
(`estimate`), per-device timings (`calibration/`, each measurement repeated: `repeat`), the wall times finished
cells logged (`learned`), wall-time predictions for `--dry-run`, the executors' order and the ETA (`planning`), and
the interleaved A/B measurements every speed claim in benchmarks/ uses (`benchmarking`).
"""
