"""A suite's cells: methods x students x teachers x seeds, validated against the registry, each carrying its
method object.

A cell's method object is built from one source, `build_method` (the method's name and the suite's overrides),
once per method of the suite, and carried by its cells (`Cell.built_method`): the cell key reads its resolved
params and version, and training, the dry run's cost and calibration read the same object through `method_of`.
Whatever runs training steps takes `fresh_method`, a copy, so the carried object stays as built (methods keep
state across steps, and a process may calibrate a cell before training it). A cell sent to another process
(`--workers`, Ray) travels without the object, because a `--plugins-dir` method's class exists there only once
that process has loaded its plugins: `method_of` builds it there, once per cell.
"""

from __future__ import annotations

from ..attacks.entries import check_attack_entries
from ..cell_values import NO_TEACHER
from ..config import Cell, Suite
from ..contracts.build import build_method
from ..errors import ConfigError
from ..plugins import get_registry

__all__ = ["Cell", "NO_TEACHER", "expand_cells"]


def _check_components(suite: Suite) -> list[str]:
    """Unknown datasets, attacks (with their options), teachers and students fail here; returns the teachers."""
    registry = get_registry()
    protocol = suite.protocol
    registry.get("dataset", protocol.header.dataset)
    check_attack_entries(protocol)
    teachers = suite.teachers or ([protocol.header.teacher] if protocol.header.teacher else [])
    for teacher in [*teachers, *suite.teacher_roles.values()]:
        registry.get("teacher", teacher)
    for student in suite.students:
        registry.get("architecture", student)
    return teachers


def expand_cells(suite: Suite) -> list[Cell]:
    """methods x students x teachers x seeds, each validated against the registry (unknown names, bad params)."""
    registry = get_registry()
    protocol = suite.protocol
    teachers = _check_components(suite)
    cells: list[Cell] = []
    for method_name in suite.methods:
        component = registry.get("method", method_name)
        overrides = suite.method_params.get(method_name, {})
        method = build_method(method_name, overrides)
        method_teachers = teachers if method.uses_teacher else [NO_TEACHER]
        if method.uses_teacher and not teachers:
            raise ConfigError(
                f"method {method_name!r} needs a teacher, but protocol {protocol.name!r} names none "
                f"and suite {suite.name!r} gives no `teachers`"
            )
        extra_roles = method.teacher_roles[1:]
        missing = [role for role in extra_roles if role not in suite.teacher_roles]
        if missing:
            raise ConfigError(
                f"{suite.source}: method {method_name!r} needs a {missing[0]!r} teacher; add it as "
                f'[suite.teacher_roles] {missing[0]} = "<teacher id>" (teachers: '
                f"{', '.join(registry.names('teacher'))})"
            )
        extra = {role: suite.teacher_roles[role] for role in extra_roles}
        for student in suite.students:
            for teacher in method_teachers:
                for seed in suite.seeds:
                    cells.append(
                        Cell(
                            protocol=protocol,
                            method=method_name,
                            method_params=method.describe(),
                            method_version=f"{component.dist}:{component.version}:{method.version}",
                            student=student,
                            teacher=teacher,
                            seed=seed,
                            suite=suite.name,
                            method_overrides=dict(overrides),
                            extra_teachers=extra,
                            built_method=method,
                        )
                    )
    return cells
