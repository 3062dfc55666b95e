"""Method documentation pages generated from the code itself: the module's docstring (formula, source,
deviations), the citation, which contract it implements (`Method` or `StepMethod`), the official defaults of
`Params`, the tuning space, the training attack, the forward passes and the teacher roles. `docs/methods/<name>.md` is
this text; a test keeps the two identical.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

from ..contracts.step_method import StepMethod

__all__ = ["render_method_page", "write_method_pages"]


def _table(rows: list[tuple[str, str]], header: tuple[str, str] = ("field", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def render_method_page(name: str) -> str:
    """The Markdown page of a registered method."""
    from ..plugins import get_registry

    component = get_registry().get("method", name)
    cls = component.obj
    method = cls()
    module_doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
    params = (
        [(f.name, f"`{getattr(method.params, f.name)!r}`") for f in dataclasses.fields(method.params)]
        if dataclasses.is_dataclass(method.params)
        else []
    )
    spec = method.attack
    attack = (
        "none (trains on clean inputs)"
        if spec is None
        else (
            f"PGD, {spec.steps} steps of {spec.step_size:.4g} x eps, `{spec.init}` start, student BatchNorm in "
            f"`{spec.bn}` mode, objective reads {', '.join(f'`{p}`' for p in sorted(spec.needs))}"
        )
    )
    facts = [
        ("registry name", f"`{name}`"),
        ("plugin", f"`{component.plugin}` ({component.dist})"),
        ("citation", cls.citation or "—"),
        ("forward passes in the loss", ", ".join(f"`{p}`" for p in sorted(method.needs))),
        ("teacher roles", ", ".join(f"`{r}`" for r in method.teacher_roles) or "none"),
        ("training attack", attack),
        ("extra augmentation", f"`{cls.extra_augment}`" if cls.extra_augment else "none"),
        (
            "contract",
            "`StepMethod` (its own `training_step`)"
            if issubclass(cls, StepMethod)
            else "`Method` (declarative: `attack_objective` and `loss`)",
        ),
    ]
    parts = [f"# `{name}`", "", module_doc, "", "## Contract", "", _table(facts), ""]
    if params:
        parts += [
            "## Parameters and their defaults",
            "",
            f"Override with `--set method.{name}.<name>=<value>` or `[suite.method_params.{name}]`; every "
            "method also takes `attack_bn`, `attack_init`, `attack_steps`, `attack_step_size`.",
            "",
            _table(params),
            "",
        ]
    return "\n".join([*parts, *_space_section(cls, method.params)])


def _space_section(cls: type, params: object) -> list[str]:
    """The method's tuning space (`Method.space`) with each parameter's default, trial 0 of every study."""
    from ..config.space import describe_space

    if not cls.space:
        return [
            "## Tuning space",
            "",
            "The method declares no `space`: `rkdbench tune` searches only the protocol's shared `[tune.space]`.",
            "",
        ]
    rows = [
        (f"`{name}`", f"`{dist}` (default `{getattr(params, name)!r}`)") for name, dist in describe_space(cls.space)
    ]
    return [
        "## Tuning space",
        "",
        "`rkdbench tune` searches these parameters besides the protocol's shared `[tune.space]`; trial 0 is the "
        "official recipe (the defaults).",
        "",
        _table(rows, ("parameter", "distribution")),
        "",
    ]


def write_method_pages(out_dir: Path) -> list[Path]:
    from ..plugins import get_registry

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in get_registry().names("method"):
        path = out_dir / f"{name}.md"
        path.write_text(render_method_page(name))
        paths.append(path)
    return paths
