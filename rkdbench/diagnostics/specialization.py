"""Student specialization (METHODS.md §11): how closely each teacher unit is mirrored by some student unit.

Tian (2019) and Yang et al. (AISTATS 2021) find that a trained student's neurons each become highly
correlated with some teacher neuron at the same layer inside the data subspace, may differ wildly outside it,
and that this tracks robustness; so the harness measures it on clean inputs and on the student's own PGD
points. Following luckmatters' `StatsCorr`, forward hooks read each matched stage (channels are units;
sample × position are observations when the spatial sizes agree, otherwise each channel is globally average
pooled), a float64 accumulator streams Σf, Σg, Σf², Σg², Σf gᵀ and the count so that no activation matrix is
ever held, and ρ_jk = (E[f_j g_k] − E f_j E g_k) / (sqrt(Var f_j + 1e-7)·sqrt(Var g_k + 1e-7)). The summary is
the per-teacher-unit best match s_j = max_k ρ_jk: its mean / min / max and the fraction of units with
s_j ≥ 0.9, per stage pair and averaged over the pairs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..attacks.pgd import Norm, pgd
from .stages import Stage, pair_stages, stage_outputs

__all__ = [
    "CORR_EPS",
    "Stage",
    "StageMatch",
    "PearsonAccumulator",
    "stage_outputs",
    "pair_stages",
    "specialization",
    "student_pgd_points",
    "summarize",
    "specialization_report",
]

CORR_EPS = 1e-7  # luckmatters StatsCorr's regularizer inside each standard deviation


@dataclass(frozen=True)
class StageMatch:
    """The Pearson matrix of one teacher/student stage pair (float64, on the CPU) and what it came from."""

    teacher_stage: str
    student_stage: str
    corr: Tensor  # [n_teacher_units, n_student_units]
    teacher_var: Tensor  # [n_teacher_units] population variance, for the active-unit filter
    count: int  # observations: samples, or samples × spatial positions
    pooled: bool  # True when channels were globally average pooled because the spatial sizes differ

    def best_match(self) -> Tensor:
        """s_j = max_k ρ_jk for every teacher unit j."""
        return self.corr.max(dim=1).values

    def summary(
        self, *, threshold: float = 0.9, active_only: bool = False, active_var: float = 1e-8
    ) -> dict[str, float]:
        """mean / min / max of s_j, the fraction with s_j ≥ `threshold`, and the number of units used
        (only teacher units with variance > `active_var` when `active_only`; NaN when none is left)."""
        best = self.best_match()
        if active_only:
            best = best[self.teacher_var > active_var]
        if best.numel() == 0:
            nan = float("nan")
            return {"mean_best": nan, "min_best": nan, "max_best": nan, "frac_matched": nan, "n_units": 0.0}
        return {
            "mean_best": float(best.mean()),
            "min_best": float(best.min()),
            "max_best": float(best.max()),
            "frac_matched": float((best >= threshold).double().mean()),
            "n_units": float(best.numel()),
        }


class PearsonAccumulator:
    """Streams the sufficient statistics of the teacher × student Pearson matrix in float64.

    `update(f, g)` takes one batch of observations as [n, n_teacher] and [n, n_student] matrices; only the
    sums and the count are kept, so memory does not grow with the dataset.
    """

    def __init__(self) -> None:
        self.count = 0
        self.sum_f: Tensor | None = None
        self.sum_g: Tensor | None = None
        self.sum_f2: Tensor | None = None
        self.sum_g2: Tensor | None = None
        self.sum_fg: Tensor | None = None

    def update(self, f: Tensor, g: Tensor) -> None:
        if f.dim() != 2 or g.dim() != 2 or f.shape[0] != g.shape[0]:
            raise ValueError(
                f"need [n, units] observation matrices with equal n; got {tuple(f.shape)} and {tuple(g.shape)}"
            )
        # float64 before summing: float32 sums over ~1e6 observations lose the digits the variance needs.
        f, g = f.to(torch.float64), g.to(torch.float64)
        if self.sum_f is None:
            self.sum_f, self.sum_f2 = f.new_zeros(f.shape[1]), f.new_zeros(f.shape[1])
            self.sum_g, self.sum_g2 = g.new_zeros(g.shape[1]), g.new_zeros(g.shape[1])
            self.sum_fg = f.new_zeros(f.shape[1], g.shape[1])
        assert (
            self.sum_f2 is not None and self.sum_g is not None and self.sum_g2 is not None and self.sum_fg is not None
        )
        self.sum_f += f.sum(0)
        self.sum_g += g.sum(0)
        self.sum_f2 += (f * f).sum(0)
        self.sum_g2 += (g * g).sum(0)
        self.sum_fg += f.T @ g
        self.count += f.shape[0]

    def _moments(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if self.count == 0 or self.sum_f is None:
            raise ValueError("no observations were accumulated")
        assert (
            self.sum_f2 is not None and self.sum_g is not None and self.sum_g2 is not None and self.sum_fg is not None
        )
        n = self.count
        mean_f, mean_g = self.sum_f / n, self.sum_g / n
        # E[x²] − E[x]² can round to a tiny negative number for a constant unit; a variance is never below 0.
        var_f = (self.sum_f2 / n - mean_f**2).clamp_min(0.0)
        var_g = (self.sum_g2 / n - mean_g**2).clamp_min(0.0)
        cov = self.sum_fg / n - torch.outer(mean_f, mean_g)
        return mean_f, mean_g, var_f, var_g, cov

    def teacher_variance(self) -> Tensor:
        return self._moments()[2]

    def correlation(self, eps: float = CORR_EPS) -> Tensor:
        """ρ_jk = (E[f_j g_k] − E f_j E g_k) / (sqrt(Var f_j + eps) · sqrt(Var g_k + eps)), [n_teacher, n_student]."""
        _, _, var_f, var_g, cov = self._moments()
        return cov / (var_f + eps).sqrt()[:, None] / (var_g + eps).sqrt()[None, :]


class _Recorder:
    """Forward hooks that copy each stage's activation of one forward pass; they record only while `enabled`,
    so that a network compared with itself (or sharing modules) does not record the other network's pass."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)
        self.enabled = False
        self.acts: list[Tensor | None] = [None] * len(self.stages)
        self.handles: list[RemovableHandle] = []

    def __enter__(self) -> _Recorder:
        for i, stage in enumerate(self.stages):
            if stage.read_input:
                self.handles.append(stage.module.register_forward_pre_hook(self._hook(i, read_input=True)))
            else:
                self.handles.append(stage.module.register_forward_hook(self._hook(i, read_input=False)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _hook(self, index: int, read_input: bool) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor | None = None) -> None:
            if not self.enabled:
                return
            if self.acts[index] is not None:
                raise RuntimeError(
                    f"stage {self.stages[index].name!r} ran twice in one forward pass; name a module that runs once"
                )
            value = inputs[0] if read_input else output
            # A copy: later in-place ops (ReLU(inplace=True), residual `+=`) would otherwise rewrite it.
            self.acts[index] = value.detach().clone()

        return hook

    def run(self, model: nn.Module, x: Tensor) -> list[Tensor]:
        self.acts = [None] * len(self.stages)
        self.enabled = True
        try:
            model(x)
        finally:
            self.enabled = False
        missing = [s.name for s, a in zip(self.stages, self.acts) if a is None]
        if missing:
            raise RuntimeError(f"stages {missing} did not run in the forward pass")
        return [a for a in self.acts if a is not None]


def _observations(f: Tensor, g: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Channels as columns: (sample × position) rows when both maps have the same spatial size, otherwise one
    row per sample with each channel globally average pooled. Returns (f_obs, g_obs, pooled)."""
    f, g = f.to(torch.float64), g.to(torch.float64)
    if f.dim() > 2 and f.shape[2:] == g.shape[2:]:
        return f.movedim(1, -1).reshape(-1, f.shape[1]), g.movedim(1, -1).reshape(-1, g.shape[1]), False
    return _pool(f), _pool(g), f.dim() > 2 or g.dim() > 2


def _pool(a: Tensor) -> Tensor:
    return a.flatten(2).mean(2) if a.dim() > 2 else a


@contextlib.contextmanager
def _eval_mode(*models: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm on running statistics) for every module, restoring each module's own flag after."""
    flags = [(m, m.training) for model in models for m in model.modules()]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def specialization(
    teacher: nn.Module,
    student: nn.Module,
    x: Tensor,
    *,
    batch_size: int = 256,
    teacher_stages: Sequence[str] | None = None,
    student_stages: Sequence[str] | None = None,
    eps: float = CORR_EPS,
) -> list[StageMatch]:
    """Teacher × student Pearson matrices of every paired stage over `x`, both networks in eval mode, streamed
    in batches of `batch_size` without gradients. Stage names override `stage_outputs`' defaults."""
    pairs = pair_stages(stage_outputs(teacher, teacher_stages), stage_outputs(student, student_stages))
    accumulators = [PearsonAccumulator() for _ in pairs]
    pooled = [False] * len(pairs)
    device = _device_of(teacher)
    with (
        _eval_mode(teacher, student),
        _Recorder([t for t, _ in pairs]) as t_rec,
        _Recorder([s for _, s in pairs]) as s_rec,
        torch.inference_mode(),
    ):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            for k, (f, g) in enumerate(zip(t_rec.run(teacher, xb), s_rec.run(student, xb))):
                f_obs, g_obs, pooled[k] = _observations(f, g)
                accumulators[k].update(f_obs, g_obs)
    return [
        StageMatch(t.name, s.name, acc.correlation(eps).cpu(), acc.teacher_variance().cpu(), acc.count, was_pooled)
        for (t, s), acc, was_pooled in zip(pairs, accumulators, pooled)
    ]


def student_pgd_points(
    student: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: Norm,
    steps: int = 10,
    seed: int = 0,
    batch_size: int = 256,
) -> Tensor:
    """PGD-`steps` on the student's cross-entropy (uniform start, step eps/4, student in eval mode), drawing the
    random start from a private generator seeded with `seed` so the caller's RNG stream is left alone."""
    device = _device_of(student)
    generator = torch.Generator(device=device).manual_seed(seed)
    x_adv = torch.empty_like(x)
    with _eval_mode(student):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            x_adv[i : i + batch_size] = pgd(
                lambda xa, yb=yb: F.cross_entropy(student(xa), yb, reduction="none"),
                xb,
                eps=eps,
                step_size=eps / 4,
                steps=steps,
                norm=norm,
                init="uniform",
                generator=generator,
            ).to(x.device)
    return x_adv


def summarize(
    matches: Sequence[StageMatch],
    prefix: str,
    *,
    threshold: float = 0.9,
    active_only: bool = False,
    active_var: float = 1e-8,
) -> dict[str, float]:
    """Flat metrics: `PREFIX.stageI.{mean_best,min_best,max_best,frac_matched,n_units}` per pair (I = 0 is the
    shallowest pair) and `PREFIX.{mean_best,frac_matched}` averaged over the pairs that have units."""
    metrics: dict[str, float] = {}
    per_stage = [m.summary(threshold=threshold, active_only=active_only, active_var=active_var) for m in matches]
    for i, stage in enumerate(per_stage):
        metrics.update({f"{prefix}.stage{i}.{key}": value for key, value in stage.items()})
    for key in ("mean_best", "frac_matched"):
        values = [s[key] for s in per_stage if not math.isnan(s[key])]
        metrics[f"{prefix}.{key}"] = sum(values) / len(values) if values else float("nan")
    return metrics


def specialization_report(
    teacher: nn.Module,
    student: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: Norm,
    steps: int = 10,
    seed: int = 0,
    batch_size: int = 256,
    *,
    threshold: float = 0.9,
    active_only: bool = False,
    teacher_stages: Sequence[str] | None = None,
    student_stages: Sequence[str] | None = None,
) -> dict[str, float]:
    """Specialization on clean `x` (`spec.clean.*`) and on the student's PGD points (`spec.adv.*`): the
    in-subspace versus off-subspace contrast of Yang et al. See `summarize` for the metric names."""

    def matches(inputs: Tensor) -> list[StageMatch]:
        return specialization(
            teacher,
            student,
            inputs,
            batch_size=batch_size,
            teacher_stages=teacher_stages,
            student_stages=student_stages,
        )

    clean = matches(x)
    adv = matches(student_pgd_points(student, x, y, eps=eps, norm=norm, steps=steps, seed=seed, batch_size=batch_size))
    return {
        **summarize(clean, "spec.clean", threshold=threshold, active_only=active_only),
        **summarize(adv, "spec.adv", threshold=threshold, active_only=active_only),
    }
