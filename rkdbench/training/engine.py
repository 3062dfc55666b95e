"""The training engine: one readable loop that runs either method contract.

Per batch: augment on the device; for a declarative `Method`, compute the constants the attack needs (teacher on
clean x under `inference_mode`, the student's clean output in the attack's BN mode), run PGD on the method's
`attack_objective` with the method's init / BN mode / steps / step size, compute exactly the forward
passes in `method.needs`, and step on `method.loss`; a `StepMethod`'s `training_step` does all of that itself with
a `StepContext`. No host synchronisation inside the epoch. After each
epoch: validation clean / PGD accuracy on the held-out split (never the test set), an atomic checkpoint
with everything needed to resume bit-for-bit (model, optimizer, scheduler, RNG states, method state,
best-val record, MLflow run id), and the `on_epoch` callback.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.pgd import pgd
from ..contracts.method import TEACHER_PASSES, Losses, Method, Outputs, Progress, StepContext, as_losses
from ..contracts.step_method import StepMethod
from ..contracts.student_passes import run_after_step, run_before_step
from ..data import augment
from ..tracking.schema import TRAIN_EPOCH_SECONDS, TRAIN_LR, VAL_CLEAN_ACC, VAL_PGD_ACC, VAL_SECONDS, metric_key
from .checkpoint import load_verified, save_atomic
from .compiling import compile_networks, release_compiled
from .setup import (
    Counter,
    TrainOutcome,
    TrainSetup,
    gpu_features,
    make_optimizer,
    make_scheduler,
    pick_device,
    robust_accuracy,
)
from .swa import WeightAverage, recompute_batchnorm

__all__ = ["TrainSetup", "TrainOutcome", "Trainer", "pick_device", "gpu_features", "robust_accuracy"]

CHECKPOINT_FORMAT = 1


class Trainer:
    """Trains one cell; `fit()` resumes from `workdir/last.pt` when it exists."""

    def __init__(
        self,
        setup: TrainSetup,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> None:
        self.s = setup
        self.on_epoch = on_epoch
        self.progress = progress
        train = setup.protocol.train
        self.threat = setup.protocol.threat
        settings = dataclasses.asdict(train)  # what `Method.configure_optimizer` may change
        self.optimizer = make_optimizer(setup.method.configure_optimizer(settings), setup.student.parameters())
        self.scheduler = make_scheduler(train, self.optimizer)
        self.lr_milestones = train.milestones if train.schedule == "piecewise" else ()
        # networks the method trains itself (PeerAiD's peer): own optimizer and scheduler, checkpointed with the cell
        self.networks = {name: net.to(setup.device) for name, net in setup.method.build_networks(setup.student).items()}
        self.network_optimizers = {
            name: make_optimizer(setup.method.configure_optimizer(settings, name), net.parameters())
            for name, net in self.networks.items()
        }
        self.network_schedulers = {name: make_scheduler(train, opt) for name, opt in self.network_optimizers.items()}
        # stochastic weight averaging of the student (`train.swa_start`, a 0-based epoch; absent = off)
        self.swa = WeightAverage(setup.student) if train.swa_start is not None else None
        self.data_generator = torch.Generator(device="cpu").manual_seed(setup.seed)
        self.aug_generator = torch.Generator(device=setup.device).manual_seed(setup.seed + 1)
        self.counter = Counter()
        self._plan = None  # the current step's StudentForwards (see `after_step`)
        self.history: list[dict[str, float]] = []
        self.best = {"epoch": -1, "val_pgd_acc": -1.0}
        self.start_epoch = 0
        for teacher in setup.teachers.values():
            teacher.eval().requires_grad_(False)
        roles = setup.method.teacher_roles
        missing = [r for r in roles if r not in setup.teachers]
        if missing:
            raise ValueError(
                f"method {setup.method.name!r} needs teacher role(s) {missing}; got {sorted(setup.teachers)}"
            )
        self.teacher = setup.teachers[roles[0]] if roles else None
        # bf16 autocast covers the training step (attack included); validation and evaluation stay fp32
        self.bf16, self.channels_last = gpu_features(train, setup.device)
        if self.channels_last:
            for model in [setup.student, *setup.teachers.values(), *self.networks.values()]:
                model.to(memory_format=torch.channels_last)

    def pass_counts(self) -> dict[str, float]:
        """Forward/backward passes counted so far, summed over the examples, by pass name (`student_forward`,
        `teacher_backward`, ...; the method's own networks only when it has any): the numbers behind `cost.*`."""
        return self.counter.counts()

    # ---- checkpoints -------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.s.workdir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.s.workdir / "best-val.pt"

    @property
    def swa_path(self) -> Path:
        return self.s.workdir / "swa.pt"

    @property
    def resumes(self) -> bool:
        """Whether `fit()` will resume from a checkpoint of an earlier (interrupted) run."""
        return self.last_path.exists()

    def _state(self, epochs_done: int) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if self.s.device.type == "cuda" else []
        return {
            "format": CHECKPOINT_FORMAT,
            "epochs_done": epochs_done,
            "model": self.s.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method_state": dict(self.s.method.state),
            "networks": {
                name: {
                    "model": net.state_dict(),
                    "optimizer": self.network_optimizers[name].state_dict(),
                    "scheduler": self.network_schedulers[name].state_dict(),
                }
                for name, net in self.networks.items()
            },
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": cuda,
                "data": self.data_generator.get_state(),
                "augment": self.aug_generator.get_state(),
            },
            "best": dict(self.best),
            "history": list(self.history),
            "counter": dict(self.counter.__dict__),
            "run_id": self.s.run_id,
            **({"swa": self.swa.state_dict()} if self.swa is not None else {}),
        }

    def _restore(self) -> None:
        state = load_verified(self.last_path, map_location=self.s.device)
        self.s.student.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.s.method.state.update(state["method_state"])
        for name, saved in state.get("networks", {}).items():
            self.networks[name].load_state_dict(saved["model"])
            self.network_optimizers[name].load_state_dict(saved["optimizer"])
            self.network_schedulers[name].load_state_dict(saved["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        self.data_generator.set_state(state["rng"]["data"].cpu())
        self.aug_generator.set_state(
            state["rng"]["augment"].cpu() if self.s.device.type == "cpu" else state["rng"]["augment"]
        )
        self.best = dict(state["best"])
        self.history = list(state["history"])
        self.counter = Counter(**state["counter"])
        self.start_epoch = int(state["epochs_done"])
        if self.swa is not None and "swa" in state:
            self.swa.load_state_dict(state["swa"])

    # ---- one step ----------------------------------------------------------------------------------
    def run_attack(self, x: Tensor, y: Tensor, objective: Callable[[Tensor], Tensor]) -> Tensor:
        """PGD with the method's AttackSpec (init, BN mode, steps, step size) on `objective(x_adv)`."""
        spec = self.s.method.attack
        assert spec is not None, f"method {self.s.method.name!r} has no training attack"
        self.s.student.train(spec.bn == "train")
        eps = self.threat.eps
        x_adv = pgd(
            objective,
            x,
            eps=eps,
            step_size=spec.step_size * eps,
            steps=spec.steps,
            norm=self.threat.norm,
            init=spec.init,
            gauss_std=spec.gauss_std,
        )
        self.s.student.train()
        n = x.shape[0]
        self.counter.student_forward += n * spec.steps
        self.counter.student_backward += n * spec.steps
        if "t_adv" in spec.needs:
            self.counter.teacher_forward += n * spec.steps
            self.counter.teacher_backward += n * spec.steps
        return x_adv

    def _attack(self, method: Method, x: Tensor, y: Tensor, t_nat: Tensor | None) -> Tensor:
        student, teacher = self.s.student, self.teacher
        spec = method.attack
        assert spec is not None
        s_nat = None
        if "s_nat" in spec.needs:
            student.train(spec.bn == "train")
            with torch.no_grad():
                s_nat = student(x)
            self.counter.student_forward += x.shape[0]
        through_teacher = "t_adv" in spec.needs

        def objective(xa: Tensor) -> Tensor:
            out = Outputs(s_adv=student(xa), s_nat=s_nat, t_nat=t_nat, t_adv=teacher(xa) if through_teacher else None)
            return method.attack_objective(out, y)

        return self.run_attack(x, y, objective)

    def _count(self, **passes: int) -> None:
        for name, n in passes.items():
            setattr(self.counter, name, getattr(self.counter, name) + int(n))

    def _teacher_logits(self, teacher: nn.Module, x: Tensor) -> Tensor:
        with torch.inference_mode():
            logits = teacher(x)
        self.counter.teacher_forward += x.shape[0]
        return logits.clone()  # inference tensors cannot enter autograd graphs

    def training_step(self, x: Tensor, y: Tensor, progress: Progress) -> Losses:
        method = self.s.method
        if isinstance(method, StepMethod):
            ctx = StepContext(
                student=self.s.student,
                teachers=self.s.teachers,
                progress=progress,
                eps=self.threat.eps,
                norm=self.threat.norm,
                attack=self.run_attack,
                count=self._count,
                networks=self.networks,
            )
            return as_losses(method.training_step((x, y), ctx))
        if not isinstance(method, Method):
            raise TypeError(f"method {method.name!r} subclasses neither rkdbench.Method nor rkdbench.StepMethod")
        return self._declarative_step(method, x, y, progress)

    def _declarative_step(self, method: Method, x: Tensor, y: Tensor, progress: Progress) -> Losses:
        student, teacher = self.s.student, self.teacher
        needs = method.needs
        attack_needs = method.attack.needs if method.attack is not None else frozenset()
        t_nat = None
        if teacher is not None and ("t_nat" in needs or "t_nat" in attack_needs):
            t_nat = self._teacher_logits(teacher, x)
        x_adv = self._attack(method, x, y, t_nat) if method.attack is not None else None
        out = Outputs(t_nat=t_nat if "t_nat" in needs else None)
        self._plan = method.student_forwards(progress)  # BatchNorm-only passes of the official loop, if any
        passes = run_before_step(student, self._plan, needs, x, x_adv, self._count)
        out.s_nat, out.s_adv = passes.get("s_nat"), passes.get("s_adv")
        self._step_inputs = (x, x_adv)
        if "t_adv" in needs:
            out.t_adv = self._teacher_logits(teacher, x_adv)
        x_mir = 2 * x - x_adv if x_adv is not None else None  # x - delta, unclamped as in the official codes
        if "s_mir" in needs:
            out.s_mir = student(x_mir)
            self._count(student_forward=x.shape[0], student_backward=x.shape[0])
        if "t_mir" in needs:
            out.t_mir = self._teacher_logits(teacher, x_mir)
        for role in method.teacher_roles[1:]:
            inputs = {"t_nat": x, "t_adv": x_adv, "t_mir": x_mir}
            out.teachers[role] = {
                p: self._teacher_logits(self.s.teachers[role], inputs[p])
                for p in TEACHER_PASSES
                if f"{role}:{p}" in needs
            }
        return as_losses(method.loss(out, y, progress))

    def after_step(self) -> None:
        """The step's post-update passes (robust_overfitting's logging forward on x): BatchNorm statistics only."""
        plan, self._plan = self._plan, None
        if plan is not None:
            with torch.autocast(self.s.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                run_after_step(self.s.student, plan, *self._step_inputs, self._count)

    # ---- the loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainOutcome:
        s, train = self.s, self.s.protocol.train
        resumed_from = 0
        if self.last_path.exists():
            self._restore()
            resumed_from = self.start_epoch
        x_train, y_train = s.splits.train
        x_val, y_val = s.splits.val
        epochs, batch_size = train.epochs, train.batch_size
        n = x_train.shape[0]
        steps = (n + batch_size - 1) // batch_size
        aug = s.protocol.inputs.augment
        eval_seed = s.protocol.eval.seed
        # `train.compile`: compiled in place for fit() only; evaluation afterwards runs the eager modules
        compiled = compile_networks([s.student, *s.teachers.values()], train.compile)
        for epoch in range(self.start_epoch, epochs):
            started = time.perf_counter()
            s.student.train()
            order = torch.randperm(n, generator=self.data_generator).to(s.device)
            totals: dict[str, Tensor] = {}
            for step in range(steps):
                idx = order[step * batch_size : (step + 1) * batch_size]
                x = augment(aug, x_train[idx], self.aug_generator)
                if s.method.extra_augment is not None:
                    x = augment(s.method.extra_augment, x, self.aug_generator)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    progress = Progress(epoch, epochs, step, steps, self.lr_milestones)
                    losses = self.training_step(x, y_train[idx], progress)
                self.optimizer.zero_grad(set_to_none=True)
                for optimizer in self.network_optimizers.values():
                    optimizer.zero_grad(set_to_none=True)
                losses.total.backward()
                self.optimizer.step()
                for optimizer in self.network_optimizers.values():
                    optimizer.step()
                self.after_step()
                s.method.on_step_end(losses, progress)
                for name, value in {"loss": losses.total.detach(), **losses.parts}.items():
                    totals[name] = totals.get(name, 0.0) + value.detach().float()
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            for scheduler in self.network_schedulers.values():
                scheduler.step()
            # the epoch's one host sync
            metrics = {metric_key("train", k, kind=""): float(v) / steps for k, v in totals.items()}
            train_seconds = time.perf_counter() - started
            val_clean, val_pgd = robust_accuracy(
                s.student,
                x_val,
                y_val,
                eps=self.threat.eps,
                norm=self.threat.norm,
                steps=train.val_pgd_steps,
                seed=eval_seed,
            )
            metrics.update(
                {
                    TRAIN_LR: lr,
                    VAL_CLEAN_ACC: val_clean,
                    VAL_PGD_ACC: val_pgd,
                    TRAIN_EPOCH_SECONDS: train_seconds,
                    VAL_SECONDS: time.perf_counter() - started - train_seconds,
                }
            )
            if val_pgd > self.best["val_pgd_acc"]:
                self.best = {"epoch": epoch, "val_pgd_acc": val_pgd}
                save_atomic({"model": s.student.state_dict(), "epoch": epoch, "val_pgd_acc": val_pgd}, self.best_path)
            self.history.append({"epoch": epoch, **metrics})
            if self.swa is not None and epoch >= train.swa_start:
                self.swa.update(s.student)
            save_atomic(self._state(epoch + 1), self.last_path)
            if self.progress is not None:
                self.progress(epoch + 1, epochs, metrics)
            if self.on_epoch is not None:
                self.on_epoch(epoch, metrics)
        release_compiled(compiled)
        averaged_saved = self.swa is not None and self.swa.count > 0
        if averaged_saved:
            averaged = recompute_batchnorm(self.swa.averaged(s.student), x_train, batch_size, aug, s.seed + 2)
            save_atomic({"model": averaged.state_dict(), "count": self.swa.count}, self.swa_path)
        return TrainOutcome(
            last_epoch=epochs - 1,
            best_epoch=int(self.best["epoch"]),
            history=self.history,
            cost={k: v / n / max(epochs, 1) for k, v in self.counter.as_dict().items()},
            last_path=self.last_path,
            best_path=self.best_path,
            swa_path=self.swa_path if averaged_saved else None,
            precision="bf16" if self.bf16 else "fp32",
            channels_last=self.channels_last,
            resumed_from=resumed_from,
        )
