#!/usr/bin/env bash
# Create (or reuse) the virtual environment outside the clone and install rkdbench into it (editable).
# The venv lives in $RKDBENCH_VENV (default ~/.cache/rkdbench/venv), so re-runs take a second: the install is
# repeated only for another clone or a changed pyproject.toml. Progress goes to stderr, one line per step;
# pip stays quiet unless something fails. Prints the venv path on its last line (stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RKDBENCH_VENV:-$HOME/.cache/rkdbench/venv}"
say() { echo "setup: $*" >&2; }
# -qq: errors only (a failed install still says why and stops the script); pip's index-location notices and
# setuptools' editable-install notice are not for the person running the demo
PIP=(-m pip install -qq --disable-pip-version-check)
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" "${PIP[@]}" --upgrade pip >&2
fi
# torch first, pinned to the builds this machine serves from disk; users with CUDA bring their own torch.
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  say "installing PyTorch 2.14.1 and torchvision 0.29.1: about 2 minutes from a local package cache"
  "$VENV/bin/python" "${PIP[@]}" torch==2.14.1 torchvision==0.29.1 >&2
fi
# $RKDBENCH_EXTRAS: the demo needs none; scripts/test.sh asks for test,ray,server (the scale-out tests drive a
# real Ray head and `rkdbench server` on PostgreSQL). The editable install points at this clone: it is redone
# for another clone, another pyproject.toml or other extras.
EXTRAS="${RKDBENCH_EXTRAS:-}"
STAMP="$VENV/.rkdbench-install-$( (pwd; cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -c1-16)"
if [ ! -e "$STAMP" ]; then
  say "installing rkdbench (editable) with MLflow, pandas, scikit-learn and AutoAttack${EXTRAS:+, extras $EXTRAS}: about 1-2 minutes"
  "$VENV/bin/python" "${PIP[@]}" -e ".${EXTRAS:+[$EXTRAS]}" >&2
  rm -f "$VENV"/.rkdbench-install-* && touch "$STAMP"
fi
say "ready: $VENV"
echo "$VENV"
