"""Measuring A against B honestly on a shared machine: alternate them, and report the median pair ratio.

Timing A several times and then B several times lets any drift of the machine (another process starting, a
thermal change) land on one side only. `interleave` runs them in pairs, alternating which goes first (A B, B A,
A B, ...) so a steady drift cancels too, measures each run's wall and process CPU time, and reports the median of
the per-pair ratios A/B with their min and max: the spread says how much to trust the median. `machine_line`
names what was measured on (CPU model, threads, torch version, GPU), which every benchmark prints.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = [
    "Timing",
    "Ratio",
    "Comparison",
    "ratio_summary",
    "interleave",
    "interleave_many",
    "machine_line",
    "cpu_model",
    "timed",
]


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # user + system time of this process (threads included), the load-independent view


def timed(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> tuple[Timing, object]:
    """Run `fn` once and time it; `sync` (e.g. torch.cuda.synchronize) runs before the clock starts and stops."""
    if sync is not None:
        sync()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if sync is not None:
        sync()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


@dataclass(frozen=True)
class Ratio:
    """The median of per-pair ratios and their range."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.3f} (min {self.low:.3f}, max {self.high:.3f})"


def ratio_summary(a: list[float], b: list[float]) -> Ratio:
    """Median, min and max of a[i] / b[i] over the pairs; the lists pair up index by index."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same non-zero number of A and B measurements; got {len(a)} and {len(b)}")
    ratios = [x / y for x, y in zip(a, b)]
    return Ratio(statistics.median(ratios), min(ratios), max(ratios))


@dataclass
class Comparison:
    """The timings of A and B, pair by pair, and the A/B ratios of wall and CPU time."""

    name_a: str
    name_b: str
    a: list[Timing] = field(default_factory=list)
    b: list[Timing] = field(default_factory=list)

    @property
    def wall(self) -> Ratio:
        return ratio_summary([t.wall for t in self.a], [t.wall for t in self.b])

    @property
    def cpu(self) -> Ratio:
        return ratio_summary([t.cpu for t in self.a], [t.cpu for t in self.b])

    def median_seconds(self, side: str) -> Timing:
        runs = self.a if side == "a" else self.b
        return Timing(statistics.median(t.wall for t in runs), statistics.median(t.cpu for t in runs))

    def report(self) -> str:
        a, b = self.median_seconds("a"), self.median_seconds("b")
        return (
            f"{self.name_a} / {self.name_b} over {len(self.a)} interleaved pairs: wall {self.wall}, CPU {self.cpu}"
            f"; median {self.name_a} {a.wall:.3f} s wall ({a.cpu:.3f} s CPU), "
            f"{self.name_b} {b.wall:.3f} s wall ({b.cpu:.3f} s CPU)"
        )


def interleave_many(
    runs: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1, sync: Callable[[], None] | None = None
) -> dict[str, list[Timing]]:
    """`warmup` untimed rounds, then `rounds` timed rounds of every run, the order reversed on every other round
    (A B C, C B A, ...); round i of each name pairs with round i of the others."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    for i in range(rounds):
        for name in list(runs) if i % 2 == 0 else list(reversed(runs)):
            timings[name].append(timed(runs[name], sync)[0])
    return timings


def interleave(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    pairs: int = 5,
    warmup: int = 1,
    names: tuple[str, str] = ("A", "B"),
    sync: Callable[[], None] | None = None,
) -> Comparison:
    """`warmup` untimed runs of each, then `pairs` timed pairs, alternating which of A and B runs first."""
    timings = interleave_many({"a": run_a, "b": run_b}, pairs, warmup, sync)
    return Comparison(*names, a=timings["a"], b=timings["b"])


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line naming the machine a measurement was made on."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {gpu}"
    )
