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
# real Ray head and `rkdbench server` on PostgreSQL). The editable install points at this clone: it is redone for
# another clone or another pyproject.toml, or when an extra is asked for that the last install did not have (the
# stamp holds the extras installed, so the demo after the tests installs nothing).
STAMP="$VENV/.rkdbench-install-$( (pwd; cat pyproject.toml) | sha256sum | cut -c1-16)"
INSTALLED="$(cat "$STAMP" 2>/dev/null || true)"
REQUESTED="${RKDBENCH_EXTRAS:-}"
EXTRAS="$(printf '%s\n' ${INSTALLED//,/ } ${REQUESTED//,/ } | sed '/^$/d' | sort -u | paste -sd, -)"
if [ ! -e "$STAMP" ] || [ "$EXTRAS" != "$INSTALLED" ]; then
  say "installing rkdbench (editable) with MLflow, pandas, scikit-learn and AutoAttack${EXTRAS:+, extras $EXTRAS}: about 1-2 minutes"
  "$VENV/bin/python" "${PIP[@]}" -e ".${EXTRAS:+[$EXTRAS]}" >&2
  rm -f "$VENV"/.rkdbench-install-* && printf '%s' "$EXTRAS" >"$STAMP"
fi
say "ready: $VENV"
echo "$VENV"
