"""`rkdbench new-plugin`: write a pip-installable method plugin package from the templates below.

The package (`pyproject.toml` with one `rkdbench` entry point, `src/<module>/method.py`, tests against
hand-computed values and through rkdbench's pytest plugin (activated in `tests/conftest.py`), a README and a digits
suite) holds a working RSLAD-like distillation method written only against the public API (`from rkdbench import
...`), so that a new author starts from code that trains, is tested and reaches the leaderboard, and only has to
change the formula. `method.py` has no relative imports because `--plugins-dir src/<module>` loads it as a loose
file; `__init__.py` registers nothing for the same reason.
"""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path
from string import Template

from ..errors import UserError

__all__ = ["PluginNames", "plugin_names", "scaffold_plugin", "new_plugin"]

# Stricter than PEP 508: the module name (hyphens -> underscores) must also be a Python identifier.
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_RESERVED_MODULES = {"rkdbench", "rkdbench_plugins", "tests", "test", "src"}


class PluginNames:
    """The substitutions: distribution `name`, import `module`, registry `method`, class `cls`."""

    def __init__(self, name: str, method: str) -> None:
        self.name = name
        self.module = name.replace("-", "_")
        self.method = method
        self.cls = "".join(part.capitalize() for part in re.split(r"[-_]", method))

    def mapping(self) -> dict[str, str]:
        return {"name": self.name, "module": self.module, "method": self.method, "cls": self.cls}


def _suggest(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    cleaned = re.sub(r"^[0-9-]+", "", cleaned)
    return cleaned or "my-method"


def plugin_names(name: str, method: str | None = None) -> PluginNames:
    """Validate NAME (and the method's registry name) and derive the module and class names."""
    if not _NAME.match(name):
        raise UserError(
            f"{name!r} is not a valid plugin name (lowercase letters, digits, single '-' or '_', starting "
            f"with a letter); try {_suggest(name)!r}"
        )
    module = name.replace("-", "_")
    if keyword.iskeyword(module) or module in _RESERVED_MODULES or module in sys.stdlib_module_names:
        raise UserError(f"plugin name {name!r} would shadow the module {module!r}; try {'rkd-' + name!r}")
    method = method or name
    if not _NAME.match(method):
        raise UserError(
            f"{method!r} is not a valid method name (lowercase letters, digits, single '-' or '_', "
            f"starting with a letter); try --method {_suggest(method)}"
        )
    return PluginNames(name, method)


def scaffold_plugin(parent: Path, names: PluginNames) -> list[Path]:
    """Write the package into `parent/<name>/` (refused if it exists); returns the files written."""
    root = parent / names.name
    if root.exists():
        raise UserError(f"{root} already exists; pick another name or --dir, or delete it first")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        "suite.toml": SUITE,
        f"src/{names.module}/__init__.py": INIT,
        f"src/{names.module}/method.py": METHOD,
        "tests/conftest.py": CONFTEST,
        "tests/test_method.py": TEST,
    }
    written = []
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(names.mapping()), encoding="utf-8")
        written.append(path)
    return written


def new_plugin(parent: Path, name: str, method: str | None = None) -> str:
    """`rkdbench new-plugin`: validate the names, refuse a method name already registered, write the package into
    `parent/<name>/`, and return what to do next."""
    from ..plugins import list_components

    names = plugin_names(name, method)
    # A taken name would make the new plugin "broken" (duplicate) at its first load: refuse it now instead.
    if names.method in list_components("method"):
        raise UserError(f"method name {names.method!r} is already registered; choose another with --method")
    root = parent / names.name
    scaffold_plugin(parent, names)
    return (
        f"wrote {root}/ (method {names.method!r} in src/{names.module}/method.py)\n"
        f"next: cd {root} && pip install -e . && pytest && rkdbench run suite.toml --build-teachers"
    )


# Templates use string.Template ($name, ${module}, ...) because the generated code is full of braces.

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$name"
version = "0.1.0"
description = "The ${method} robust-KD method as an rkdbench plugin"
requires-python = ">=3.10"
dependencies = ["rkdbench"]

# rkdbench imports this module at start-up and calls its `register_methods` hook.
[project.entry-points.rkdbench]
"method-${method}" = "${module}.method"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["src"]   # `pytest` works before `pip install -e .`
"""

INIT = '''\
"""The `${name}` rkdbench plugin: the `${method}` method lives in `${module}.method`.

Deliberately empty: `rkdbench --plugins-dir src/${module}` loads every *.py file here as a loose plugin,
so nothing in this package may rely on relative imports.
"""

__version__ = "0.1.0"
'''

METHOD = '''\
"""`${method}`: <one line: what the method is> (<authors, venue, year>), as in <official code URL>.

Write here where the formula comes from (paper equation, file and line of the official code) and the
defaults you copied, so a reader can check the code against the source. The starting point is an
RSLAD-like distillation (Zi et al., ICCV 2021):

Attack: maximize KL(T(x) || S(x')) per example, Gauss start, 10 steps of eps/4, student BatchNorm in eval mode.
Loss:   adv_weight * KL(T(x) || S(x'))  +  nat_weight * KL(T(x) || S(x))      (batch-mean KL, i.e. the true KL)

where T(x) is the teacher's softmax on the clean input. Bump `version` whenever the maths changes: it is part
of every cell's key, so results of the old and new formula are never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

# Absolute imports only: this file is also loaded on its own by `rkdbench --plugins-dir`.
from rkdbench import AttackSpec, Losses, Method, Outputs, Progress, hookimpl, kl_div

__all__ = ["${cls}", "${cls}Params"]


@dataclass(frozen=True)
class ${cls}Params:
    """Hyperparameters; defaults should equal the official code's. Each is settable per run with
    `--set method.${method}.<field>=<value>` and becomes part of the cell key."""

    adv_weight: float = 5 / 6
    nat_weight: float = 1 / 6


class ${cls}(Method):
    name = "${method}"
    citation = "<authors, venue, year; official code URL>"
    version = "1"
    teacher_roles = ("robust",)  # the protocol's teacher; () for a method without one
    # Only the forward passes listed here are computed, so the loss must not read others.
    needs = frozenset({"s_adv", "s_nat", "t_nat"})
    # step_size is a fraction of eps, so the same spec serves every threat model.
    attack = AttackSpec(needs=frozenset({"s_adv", "t_nat"}), init="gauss", bn="eval", steps=10, step_size=0.25)
    Params = ${cls}Params

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        # Per example ("none"): PGD maximizes the sum, so each example gets its own gradient.
        return kl_div(out.require("s_adv"), F.softmax(out.require("t_nat"), dim=1), "none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        # Teacher logits come from inference_mode passes: the target is constant, no detach needed.
        target = F.softmax(out.require("t_nat"), dim=1)
        adv = kl_div(out.require("s_adv"), target, "batchmean")
        nat = kl_div(out.require("s_nat"), target, "batchmean")
        total = p.adv_weight * adv + p.nat_weight * nat
        # parts are logged to MLflow per epoch; detached so logging never holds the graph.
        return Losses(total=total, parts={"kl_adv": adv.detach(), "kl_nat": nat.detach()})


@hookimpl
def register_methods(register):
    register(${cls})
'''

CONFTEST = '''\
"""Activates rkdbench's pytest plugin: the `rkdbench_*` fixtures the tests use (see rkdbench's docs/plugins.md)."""

pytest_plugins = ["rkdbench.pytest_plugin"]
'''

TEST = '''\
"""The method's two functions on small fixed logits against values worked out by hand; its contract on random
logits, one engine training step and one tiny digits cell end to end (the `rkdbench_*` fixtures of rkdbench's pytest
plugin, activated in conftest.py); and its registration through the installed entry point."""

from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import torch

from rkdbench import Outputs, Progress, create, list_components
from ${module} import method as plugin
from ${module}.method import ${cls}

# Two classes keep the arithmetic by hand: a uniform teacher T = (1/2, 1/2) and a student S = (3/4, 1/4)
# (logits (ln 3, 0)) give KL(T || S) = 1/2 ln(2/3) + 1/2 ln(2) = 1/2 ln(4/3).
HALF_LN_4_3 = 0.5 * math.log(4 / 3)
LN3 = math.log(3)


def outputs() -> Outputs:
    return Outputs(
        t_nat=torch.zeros(2, 2),                          # uniform teacher for both examples
        s_adv=torch.tensor([[LN3, 0.0], [0.0, 0.0]]),     # KL 1/2 ln(4/3), then 0
        s_nat=torch.tensor([[0.0, LN3], [0.0, LN3]]),     # KL 1/2 ln(4/3) for both
    )


def test_attack_objective_is_the_per_example_kl():
    objective = ${cls}().attack_objective(outputs(), torch.tensor([0, 1]))
    assert objective.tolist() == pytest.approx([HALF_LN_4_3, 0.0], abs=1e-6)


def test_loss_weights_the_batch_mean_kls():
    losses = ${cls}().loss(outputs(), torch.tensor([0, 1]), Progress(epoch=0, epochs=1))
    adv, nat = HALF_LN_4_3 / 2, HALF_LN_4_3           # batch means over the two examples
    assert losses.parts["kl_adv"].item() == pytest.approx(adv, abs=1e-6)
    assert losses.parts["kl_nat"].item() == pytest.approx(nat, abs=1e-6)
    assert losses.total.item() == pytest.approx(5 / 6 * adv + 1 / 6 * nat, abs=1e-6)
    weighted = ${cls}(adv_weight=1.0, nat_weight=0.0).loss(outputs(), torch.tensor([0, 1]), Progress(0, 1))
    assert weighted.total.item() == pytest.approx(adv, abs=1e-6)


@pytest.fixture
def registered(rkdbench_register):
    """The plugin registered in-process for one test, as its entry point registers it once installed."""
    rkdbench_register(plugin)


def test_contract_on_random_logits(registered, rkdbench_contract):
    run = rkdbench_contract("${method}", nat_weight=0.0)  # built by name with overrides, as a cell builds it
    run.check()  # a per-example objective, a finite loss whose gradient reaches the student
    assert run.losses.total.item() == pytest.approx(5 / 6 * run.losses.parts["kl_adv"].item(), rel=1e-5)


def test_one_engine_training_step(registered, rkdbench_step):
    step = rkdbench_step("${method}")  # the engine's step on tiny networks and random inputs
    step.check()
    assert step.passes["teacher_forward"] > 0  # T(x) is in `needs`, so the teacher ran


def test_one_tiny_cell_end_to_end(registered, rkdbench_cell):
    metrics = rkdbench_cell("${method}")  # 1 epoch on digits, PGD-5 on 8 test points, a throwaway MLflow store
    assert 0.0 <= metrics["test.pgd_acc"] <= metrics["test.clean_acc"] <= 1.0
    assert {"train.kl_adv", "train.kl_nat"} <= set(metrics)  # the loss's parts are logged


def test_rkdbench_finds_the_installed_method():
    try:
        distribution("${name}")
    except PackageNotFoundError:
        pytest.skip("${name} is not pip-installed: its entry point is what registers the method (pip install -e .)")
    assert "${method}" in list_components("method")
    assert isinstance(create("method", "${method}", adv_weight=1.0), ${cls})
'''

README = """\
# ${name}

The `${method}` robust knowledge-distillation method as an rkdbench plugin. The
formula lives in `src/${module}/method.py`; its tests in `tests/test_method.py` (they use the fixtures of
rkdbench's pytest plugin, which `tests/conftest.py` activates).

```bash
pip install -e .                         # registers the entry point, so rkdbench finds `${method}`
pytest                                   # the tests (the registration test runs once installed)
rkdbench run suite.toml --build-teachers # ${method} next to pgd-at on the digits protocol
```

`suite.toml` runs `${method}` next to PGD-AT on the digits protocol (offline, CPU, minutes) with the evaluation
of the built-in `digits-all-quick` sweep (the first 200 test points, last and best-val checkpoints), so its rows
share that sweep's protocol and compare with its leaderboard; the first run builds the digits teacher once. Then read
the results:

```bash
rkdbench leaderboard                     # method x student x teacher, by AutoAttack accuracy
rkdbench ui                              # MLflow UI on 127.0.0.1:5000
```

A quicker smoke run: `rkdbench run suite.toml --set train.epochs=1 --set eval.n_examples=20`.

Without installing, load the module as a loose plugin (every `*.py` in the folder is loaded):

```bash
rkdbench --plugins-dir src/${module} plugins          # `${method}` is listed
rkdbench --plugins-dir src/${module} run suite.toml --build-teachers
```

Parameters are set per run with `--set method.${method}.adv_weight=1.0`; they are part of the cell key.
"""

SUITE = """\
# The digits suite (offline, CPU) with ${method} next to the PGD-AT baseline.
[suite]
name = "${name}-digits"
protocol = "digits-linf"
methods = ["${method}", "pgd-at"]
students = ["cnn-small"]
seeds = [0]

[suite.set]
"eval.n_examples" = 200
"""
