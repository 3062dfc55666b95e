"""The evaluation batch size: the protocol's, or (`eval.batch_size = 0`) chosen once from free GPU memory.

The batch size changes the attacks' random starts (AutoAttack seeds per batch), so a chosen size must never
drift: it is measured once per evaluation target, written to a small JSON record beside the evaluation's saved
chunks, and read back on every resume. On CUDA the choice is the largest power of two whose measured peak
memory (forward and input-gradient backward, as the attacks do) fits in half the free memory; on the CPU,
where memory is not the limit, it is AutoAttack's own default of 250.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_text_atomic
from ..config import Protocol

__all__ = ["CPU_BATCH_SIZE", "batch_size_for", "measure_bytes_per_example", "choose_batch_size", "eval_batch_size"]

CPU_BATCH_SIZE = 250
PROBE = 32


def batch_size_for(
    free_bytes: int, bytes_per_example: float, fraction: float = 0.5, floor: int = 16, cap: int = 4096
) -> int:
    """The largest power of two with `n * bytes_per_example <= fraction * free_bytes`, within [floor, cap]."""
    fits = int(fraction * free_bytes // max(bytes_per_example, 1.0))
    size = floor
    while size * 2 <= min(fits, cap):
        size *= 2
    return size


def measure_bytes_per_example(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> float:
    """Peak CUDA memory of one forward + input-gradient backward on a probe batch, per example."""
    x = torch.rand(PROBE, *input_shape, device=device, requires_grad=True)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model(x).logsumexp(1).sum().backward(inputs=[x])
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / PROBE


def choose_batch_size(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> tuple[int, str]:
    """A batch size for `model` on `device` and how it was chosen (free memory and bytes per example)."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE, "CPU default"
    was_training = model.training
    model.eval()
    per_example = measure_bytes_per_example(model, input_shape, device)
    model.train(was_training)
    free, _ = torch.cuda.mem_get_info(device)
    return batch_size_for(free, per_example), f"{free / 2**30:.1f} GiB free, {per_example / 2**20:.1f} MiB/example"


def eval_batch_size(protocol: Protocol, model: nn.Module, x: torch.Tensor, record: Path | None = None) -> int:
    """The protocol's `eval.batch_size`; for 0, the recorded choice if `record` holds one, else a new choice
    (saved to `record`)."""
    configured = protocol.eval.batch_size
    if configured:
        return configured
    if record is not None and record.is_file():
        return int(json.loads(record.read_text())["batch_size"])
    chosen, how = choose_batch_size(model, tuple(x.shape[1:]), x.device)
    if record is not None:
        write_text_atomic(record, json.dumps({"batch_size": chosen, "chosen_from": how}) + "\n")
    return chosen
