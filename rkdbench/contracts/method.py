"""The types plugin authors program against (`Outputs`, `Progress`, `Losses`, `AttackSpec`, `AttackResult`,
`StepContext`), `MethodBase`, what both method contracts share, and `Method`, the declarative contract.

A method declares which forward passes it `needs`, an `AttackSpec` for its training attack, typed `Params` (a
dataclass whose defaults equal the official code) and, optionally, the `space` of those params that `rkdbench tune`
searches (checked when the class is defined, `rkdbench.contracts.space`). A `Method` implements two pure tensor
functions, `attack_objective(out, y)` (per-example, maximized by PGD) and `loss(out, y, progress)`, and the engine runs
the loop; a method that does not fit is a `StepMethod` (rkdbench.contracts.step_method) and writes its own
`training_step`. Either keeps adaptive state in `self.state`. A method that trains a network of its own (PeerAiD's
peer) returns it from `build_networks(student)`: the engine gives it an optimizer and a scheduler, steps them with the
student's, and checkpoints all three with the cell; `configure_optimizer` overrides the protocol's optimizer settings
for the method (Fair-ARD's Nesterov SGD).
"""

from __future__ import annotations

import abc
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from torch import Tensor

from ..errors import ConfigError
from .params import Params, build_params, check_param

if TYPE_CHECKING:
    from ..config.space import Distribution

__all__ = [
    "FORWARD_PASSES",
    "Outputs",
    "Progress",
    "Losses",
    "AttackSpec",
    "AttackResult",
    "MethodBase",
    "Method",
    "Params",
    "StepContext",
]

# Method overrides that change the training attack rather than the loss (every method accepts them).
ATTACK_OVERRIDES = {"attack_bn": "bn", "attack_init": "init", "attack_steps": "steps", "attack_step_size": "step_size"}

# The forward passes the engine knows how to compute: student/teacher on clean x / adversarial x' / the mirror
# point x_mir = x - delta = 2x - x' (IGDM; unclamped, as in every official code that uses it).
FORWARD_PASSES = frozenset({"s_nat", "s_adv", "t_nat", "t_adv", "s_mir", "t_mir"})
TEACHER_PASSES = ("t_nat", "t_adv", "t_mir")
PGDInit = Literal["uniform", "gauss", "zero"]  # the random starts (the one list of them; AttackSpec.init uses it)


@dataclass
class Outputs:
    """Logits a method asked for. `s_mir` / `t_mir` are at the mirror point x - delta (delta = x' - x).
    `teachers[role]["t_nat" | "t_adv" | "t_mir"]` holds the non-primary teachers' logits (e.g. MTARD's `natural`
    teacher), for the passes named `ROLE:t_nat` / `ROLE:t_adv` / `ROLE:t_mir` in `needs`."""

    s_nat: Tensor | None = None
    s_adv: Tensor | None = None
    t_nat: Tensor | None = None
    t_adv: Tensor | None = None
    s_mir: Tensor | None = None
    t_mir: Tensor | None = None
    teachers: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    def require(self, name: str) -> Tensor:
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"Outputs.{name} was not computed: add {name!r} to the method's `needs`")
        return value


@dataclass(frozen=True)
class Progress:
    """Where training is: 0-based `epoch` of `epochs`, 0-based `step` of `steps` within the epoch, and the
    protocol's learning-rate decay epochs (`lr_milestones`: the lr drops at the start of each listed 0-based
    epoch; empty unless the schedule is `piecewise`), so a schedule tied to the lr decays needs no copy of them."""

    epoch: int
    epochs: int
    step: int = 0
    steps: int = 1
    lr_milestones: tuple[int, ...] = ()

    @property
    def fraction(self) -> float:
        """Fraction of training done, in [0, 1)."""
        return (self.epoch + self.step / max(self.steps, 1)) / max(self.epochs, 1)


@dataclass
class Losses:
    """A scalar `total` to minimize and named detached parts for logging."""

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackSpec:
    """The training attack: PGD maximizing `Method.attack_objective`.

    `needs` are the forward passes the objective reads (`s_adv` always; `t_adv` makes the teacher part of the
    attack graph). `step_size` is a fraction of eps (CIFAR's 2/255 at eps 8/255 is 0.25) so that one spec
    serves every threat model. `bn` is the student's BatchNorm mode while attacking.
    """

    needs: frozenset[str] = frozenset({"s_adv"})
    init: PGDInit = "uniform"
    bn: Literal["train", "eval"] = "eval"
    steps: int = 10
    step_size: float = 0.25
    gauss_std: float = 0.001

    def __post_init__(self) -> None:
        unknown = set(self.needs) - FORWARD_PASSES
        if unknown or "s_adv" not in self.needs:
            raise ValueError(
                f"AttackSpec.needs must contain 's_adv' and only {sorted(FORWARD_PASSES)}; got {sorted(self.needs)}"
            )


@dataclass
class AttackResult:
    """What an attack returns: adversarial inputs, per-example robustness (True = still correct), and info."""

    x_adv: Tensor
    robust: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.robust.numel() else float("nan")


@dataclass
class StepContext:
    """What a `StepMethod`'s `training_step(batch, ctx)` gets: the networks, where training is, the
    threat model, `attack(x, y, objective)` running PGD with the method's AttackSpec on any objective,
    `count(...)` to report the forward/backward passes the step made (they appear as the run's cost), and the
    method's own trainable `networks` (from `build_networks`; the engine steps their optimizers after the
    step's `total.backward()`, so a loss that reaches them trains them)."""

    student: Any
    teachers: dict[str, Any]
    progress: Progress
    eps: float
    norm: str
    attack: Any
    count: Any = None  # count(student_forward=, ..., network_forward=, network_backward=) for cost
    networks: dict[str, Any] = field(default_factory=dict)

    @property
    def teacher(self) -> Any:
        """The primary teacher (first role), or None."""
        return next(iter(self.teachers.values()), None)


class MethodBase:
    """What both method contracts share: the class attributes, typed params and the training attack, teacher roles
    and forward passes, state, own networks, the optimizer override and the cell key's `describe`. A plugin
    subclasses `Method` or `StepMethod`, never this."""

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"s_adv"})
    teacher_roles: ClassVar[tuple[str, ...]] = ()  # () = no teacher; ("robust",) = the protocol's teacher
    extra_augment: ClassVar[str | None] = None  # an `rkdbench.data.AUGMENTATIONS` name applied after the protocol's
    attack: ClassVar[AttackSpec | None] = AttackSpec()  # None: trains on clean inputs only
    Params: ClassVar[type] = Params
    # the tuning search space over `Params` fields (`rkdbench.config.space`), checked when the class is defined
    space: ClassVar[Mapping[str, Distribution]] = {}
    version: ClassVar[str] = "1"  # bump when the method's maths changes: it is part of the cell key

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.space:
            from .space import check_method_space  # here: it imports this module's Params checker

            check_method_space(cls)

    def __init__(self, **overrides: Any) -> None:
        self.params, self.attack = self.resolve_params(overrides)
        self.teacher_roles = tuple(self.configure_teacher_roles(self.params))
        self.needs = frozenset(self.configure_needs(self.params))
        self.state: dict[str, Tensor] = {}
        allowed = FORWARD_PASSES | {f"{role}:{p}" for role in self.teacher_roles[1:] for p in TEACHER_PASSES}
        unknown = set(self.needs) - allowed
        if unknown:
            raise ValueError(
                f"method {self.name!r} needs unknown forward passes {sorted(unknown)}; allowed: {sorted(allowed)}"
            )

    @classmethod
    def resolve_params(cls, overrides: dict[str, Any]) -> tuple[Any, AttackSpec | None]:
        """The typed params and the effective training attack for these overrides, or a ConfigError naming the
        parameter, the value and what is allowed (names, types, and the choices of every `Literal` field). Building
        nothing else, it is also how a suite checks its method parameters when it loads."""
        overrides = dict(overrides)
        attack_overrides = {k: overrides.pop(k) for k in list(overrides) if k in ATTACK_OVERRIDES}
        params = build_params(
            cls.Params,
            overrides,
            owner=f"method {cls.name!r}",
            also_allowed=tuple(ATTACK_OVERRIDES) if cls.attack else (),
        )
        return params, cls._attack_with(attack_overrides)

    @classmethod
    def _attack_with(cls, overrides: dict[str, Any]) -> AttackSpec | None:
        spec = cls.attack
        if not overrides:
            return spec
        if spec is None:
            raise ConfigError(f"method {cls.name!r} has no training attack; {sorted(overrides)} cannot be set")
        hints = typing.get_type_hints(AttackSpec)
        fields = {
            ATTACK_OVERRIDES[k]: check_param(
                v, getattr(spec, ATTACK_OVERRIDES[k]), hints[ATTACK_OVERRIDES[k]], f"method {cls.name!r} {k}"
            )
            for k, v in overrides.items()
        }
        return dataclasses.replace(spec, **fields)

    def configure_needs(self, params: Any) -> frozenset[str]:
        """The forward passes the loss reads for these params (default: the class's `needs`)."""
        return type(self).needs

    def configure_teacher_roles(self, params: Any) -> tuple[str, ...]:
        """The teacher roles for these params (default: the class's `teacher_roles`); the first is the
        primary teacher (`t_nat`/`t_adv`), the others are read as `ROLE:t_nat` / `ROLE:t_adv`."""
        return type(self).teacher_roles

    @property
    def uses_teacher(self) -> bool:
        return bool(self.teacher_roles)

    def on_step_end(self, losses: Losses, progress: Progress) -> None:
        """Hook for adaptive state (MTARD's weights); default: nothing."""

    def build_networks(self, student: Any) -> dict[str, Any]:
        """Trainable networks the method owns besides the student (name -> `nn.Module`), built once per cell
        (the student is given so that a peer can copy its architecture). The engine moves them to the device,
        gives each an optimizer (`configure_optimizer`) and the protocol's scheduler, steps them after every
        backward, checkpoints weights, buffers, optimizer and scheduler with the cell, and passes them to
        `training_step` as `ctx.networks`. Default: none."""
        return {}

    def configure_optimizer(self, train: dict[str, Any], network: str = "student") -> dict[str, Any]:
        """The optimizer settings for the student (`network = "student"`) or one of the method's own networks:
        `train` holds the protocol's `[train]` fields, typed and with their defaults (optimizer, lr, momentum,
        nesterov, weight_decay, ...); return it changed or as is. Every change must come from a method parameter,
        so that it is part of the cell key."""
        return train

    def describe(self) -> dict[str, Any]:
        """Params and the effective training attack as a flat dict (logged to MLflow, part of the cell key)."""
        described = dataclasses.asdict(self.params)
        if self.attack is not None:
            described.update({name: getattr(self.attack, field) for name, field in ATTACK_OVERRIDES.items()})
        return described


class Method(MethodBase, abc.ABC):
    """The declarative contract: the engine computes the forward passes in `needs`, runs the training attack on
    `attack_objective` (required when `attack` is not None) and steps on `loss`."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        if self.attack is not None and type(self).attack_objective is Method.attack_objective:
            raise TypeError(f"method {self.name!r} has a training attack but no attack_objective")

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        """Per-example value the training attack maximizes."""
        raise NotImplementedError

    @abc.abstractmethod
    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses | Tensor:
        """The outer loss on the outputs in `needs`."""

    def student_forwards(self, progress: Progress) -> Any:
        """The official order of the student's train-mode forwards in this step, BatchNorm-only passes included
        (a `rkdbench.StudentForwards`); None: S(x) then S(x'), only the passes in `needs`."""
        return None


def as_losses(value: Losses | Tensor) -> Losses:
    return value if isinstance(value, Losses) else Losses(total=value)
