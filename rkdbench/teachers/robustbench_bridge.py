"""Fetching zoo teachers through the optional `robustbench` package, without running its broken `__init__`.

`import robustbench` fails with current setuptools (`pkg_resources`) and pyautoattack (`autoattack.state`),
but `robustbench.utils` and `robustbench.model_zoo` work. A stub module whose `__path__` is the installed
package directory lets Python import those submodules directly. Only the download is used: the file lands in
RobustBench's own layout under the model dir and rkdbench then loads it with its own architectures
(`weights_only=True`, strict keys) and records its sha256 on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .card import TeacherCard
from .model_dir import layout_paths

__all__ = ["robustbench_module", "fetch_teacher"]

INSTALL_HINT = "pip install 'rkdbench[robustbench]'"


def robustbench_module(name: str) -> Any:
    """Import `robustbench.<name>` through a stub parent package (the real `__init__` is never run)."""
    if "robustbench" not in sys.modules:
        spec = importlib.util.find_spec("robustbench")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"fetching a teacher needs the optional robustbench package: {INSTALL_HINT}")
        stub = types.ModuleType("robustbench")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["robustbench"] = stub
    try:
        return importlib.import_module(f"robustbench.{name}")
    except ImportError as exc:
        raise ConfigError(f"robustbench.{name} cannot be imported ({exc}); {INSTALL_HINT}") from None


def fetch_teacher(card: TeacherCard, model_dir: str | Path) -> list[Path]:
    """Download the teacher's checkpoint(s) into `<model_dir>/<dataset>/<threat>/` with RobustBench's own
    download function; files already there are kept (never re-downloaded)."""
    dataset, threat, name = card.name.split("/", 2)
    zoo = robustbench_module("model_zoo")
    enums = robustbench_module("model_zoo.enums")
    utils = robustbench_module("utils")
    try:
        entry = zoo.model_dicts[enums.BenchmarkDataset(dataset)][enums.ThreatModel(threat)][name]
    except (KeyError, ValueError):
        raise ConfigError(f"teacher {card.name!r} is not in the installed robustbench's model zoo") from None
    ids = entry["gdrive_id"] if isinstance(entry["gdrive_id"], list) else [entry["gdrive_id"]]
    paths = layout_paths(card, model_dir)
    if len(ids) != len(paths):
        raise ConfigError(
            f"teacher {card.name!r}: robustbench lists {len(ids)} checkpoint(s), the card expects "
            f"{len(paths)} (ensemble = {card.ensemble})"
        )
    for gdrive_id, path in zip(ids, paths):
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            utils.download_gdrive_new(gdrive_id, path)
    return paths
