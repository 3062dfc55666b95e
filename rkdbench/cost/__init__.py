"""What a cell costs, before and after it runs: forward/backward passes and FLOPs counted by running one real step
(`estimate`), per-device timings (`calibration/`), wall-time predictions for `--dry-run` (`planning`), and the
interleaved A/B measurements every speed claim in benchmarks/ uses (`benchmarking`).
"""
