"""What a new user sees first: the demo run from a clean clone leaves `git status` empty (its leaderboard goes
under the results folder), prints one unbroken line per event when stdout is not a terminal, a summary and a
compact leaderboard that fit in 100 columns, and the AA gap to the teacher measured when the teacher was built;
the compact table keeps to 100 columns whatever the names; a teacher evaluated otherwise gets no gap, and a
line saying why."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rkdbench.config import flatten, load_suite
from rkdbench.leaderboard import COSTS, Table
from rkdbench.leaderboard.formats import to_markdown
from rkdbench.leaderboard.shown import teacher_gap_note
from rkdbench.leaderboard.terminal import to_terminal
from rkdbench.teachers.accuracy import evaluation_key, teacher_accuracies

TEACHER = "digits/Linf/rkdbench-cnn-large"  # the harness teacher that tests/conftest.py builds

ROOT = Path(__file__).resolve().parents[2]
EPOCH_LINE = re.compile(
    r"^  \[\d+/\d+\] [\w\-\[\]=.,]+ epoch \d+/\d+: loss \d+\.\d{3}, val clean \d+\.\d%, "
    r"val PGD \d+\.\d% \(\d+\.\d+s\)$"
)
DONE_LINE = re.compile(r"^\[\d+/\d+\] done \S+ / \S+ / \S+ / seed \d+: clean \d+\.\d%, pgd20 \d+\.\d%, aa \d+\.\d%")


def _table(names: int, teacher_aa: float | None = 80.0) -> Table:
    long = "x" * names
    frame = pd.DataFrame(
        {
            "method_variant": ["rslad", f"ard[temperature=1]{long}"],
            "student": ["cnn-small", f"cnn-tiny{long}"],
            "teacher": ["digits/Linf/rkdbench-cnn-large", f"digits/Linf/other-teacher{long}"],
            "n": [3, 1],
            "clean_mean": [98.61, 97.0],
            "clean_std": [0.52, float("nan")],
            "pgd20_mean": [80.0, 71.11],
            "pgd20_std": [1.25, float("nan")],
            "aa_mean": [75.55, 70.0],
            "aa_std": [10.5, float("nan")],
            "teacher_aa": [teacher_aa, float("nan")],
            "p_vs_best": [float("nan"), 0.0312],
            "selection": "last",
            "train_seconds": float("nan"),
            "gpu_hours": float("nan"),
            "passes": float("nan"),
            "flags": "",
            "runs": [{"0": "a" * 32}, {"0": "b" * 32}],
            **{c: float("nan") for c in COSTS},
        }
    )
    frame["aa_gap_to_teacher"] = frame["aa_mean"] - frame["teacher_aa"]
    return Table(
        "digits-linf",
        "0123456789abcdef",
        "digits-linf@01234567",
        "last",
        frame,
        ["clean", "pgd20", "aa"],
        [],
        "aa",
        "1",
        "aa",
        names={"clean": "clean", "pgd20": "PGD-20", "aa": "AutoAttack"},
    )


@pytest.mark.parametrize("names", [0, 40, 200])
def test_compact_leaderboard_fits_in_100_columns_with_any_names(names):
    text = to_terminal(_table(names), [Path("rkdbench-results/leaderboards/digits-linf/leaderboard.md")], 200)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100, "\n".join(line for line in lines if len(line) > 100)
    header = lines[1].split()
    assert header[:5] == ["rank", "method", "student", "teacher", "n"]
    assert header[5:] == ["clean", "PGD-20", "AutoAttack", "vs", "best"]
    assert "98.6±0.5" in lines[3] and "75.5±10.5" in lines[3] and "best" in lines[3]  # numbers never cut
    assert "p=0.031" in lines[4]
    if not names:  # the teacher by name (its dataset/threat are the table's), uncut when the names fit
        assert "rkdbench-cnn-large" in lines[3]
        assert re.search(r"ard\[temperature=1\] +cnn-tiny +other-teacher ", lines[4])
    assert "first 200 test points" in text and "leaderboard.md" in text
    assert "AA gap to teacher (rkdbench-cnn-large 80.0, same evaluation): rslad -4.5" in text.replace("\n", " ")
    assert "AA gap to teacher: empty for digits/Linf/other-teacher" in text.replace("\n", " ")
    bare = to_terminal(_table(names)).splitlines()  # no files written: the command that shows the full table
    assert max(map(len, bare)) <= 100 and "rkdbench leaderboard --format md" in bare[-1]


def test_the_full_table_says_why_the_teacher_gap_is_empty():
    assert teacher_gap_note(_table(5, teacher_aa=80.0)) is not None  # the second row's teacher was never measured
    table = _table(5, teacher_aa=float("nan"))
    assert "AA gap to teacher: empty for digits/Linf/other-teacherxxxxx, digits/Linf/rkdbench-cnn-large" in to_markdown(
        table
    )
    table.frame["teacher_aa"] = [80.0, 75.0]
    table.frame["aa_gap_to_teacher"] = table.frame["aa_mean"] - table.frame["teacher_aa"]
    assert teacher_gap_note(table) is None and "empty for" not in to_markdown(table)


def _quick_key(n: int):
    suite = load_suite("digits-quick", {"eval.n_examples": n, "train.epochs": 1})
    return suite.protocol, evaluation_key({f"protocol.{k}": v for k, v in flatten(suite.protocol.data).items()})


def test_the_teacher_build_records_its_evaluation_for_the_suites_gap(teacher_dir):
    """conftest builds the teacher evaluated on 10 points: a quick suite on those 10 points finds it, one on 12 not."""
    accuracies = teacher_accuracies(None, [TEACHER], teacher_dir)
    protocol, key = _quick_key(10)
    found = accuracies.find(TEACHER, protocol.hash, key, "aa")
    assert found is not None and 0.0 <= found <= 100.0
    protocol, key = _quick_key(12)
    assert accuracies.find(TEACHER, protocol.hash, key, "aa") is None


@pytest.mark.slow
def test_demo_from_a_clean_clone_leaves_it_untouched_and_prints_readable_lines(tmp_path, teacher_dir):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80", "RKDBENCH_MODEL_DIR": str(teacher_dir)}
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "rkdbench.cli",
            "demo",
            "--set",
            "train.epochs=1",
            "--set",
            "eval.n_examples=10",
            "--set",
            "train.val_pgd_steps=2",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout
    assert status == "", status
    assert list((clone / "rkdbench-results" / "leaderboards").glob("*/leaderboard.md"))
    lines = done.stdout.splitlines()
    epochs = [line for line in lines if " epoch " in line]
    assert len(epochs) == 3 and all(EPOCH_LINE.match(line) for line in epochs), epochs
    assert sum(bool(DONE_LINE.match(line)) for line in lines) == 3, lines
    summary = lines.index(next(line for line in lines if "suite digits-quick: 3 cells in" in line))
    assert all(len(line) <= 100 for line in lines[summary:]), [line for line in lines[summary:] if len(line) > 100]
    assert any("rslad / cnn-small / seed 0" in line for line in lines[summary:])  # never broken over lines
    text = done.stdout.replace("\n", " ")
    assert "Evaluated on the first 10 test points" in text
    assert re.search(r"AA gap to teacher \(rkdbench-cnn-large \d+\.\d, same evaluation\): .*ard [+-]\d", text), text
    assert "leaderboard.md" in text and "wrote leaderboards/" not in done.stderr
