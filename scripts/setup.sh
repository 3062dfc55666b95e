#!/usr/bin/env bash
# Create (or reuse) the virtual environment outside the clone and install rkdbench into it (editable).
# The venv lives in $RKDBENCH_VENV (default ~/.cache/rkdbench/venv) so re-runs are fast; a fresh machine
# gets a full install (~7 minutes, mostly torch). Prints the venv path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RKDBENCH_VENV:-$HOME/.cache/rkdbench/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
# torch first, pinned to the builds this machine serves from disk; users with CUDA bring their own torch.
"$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1 >&2
# ray and server: the scale-out tests drive a real Ray head and `rkdbench server` on PostgreSQL
"$VENV/bin/python" -m pip install -q -e ".[test,ray,server]" >&2
echo "$VENV"
