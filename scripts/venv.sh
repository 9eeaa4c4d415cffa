#!/usr/bin/env bash
# Create ./.venv in the repository root and install the pinned Python tools
# that make the fixtures (fixtures/requirements.txt). Python is never needed
# to build or run the Swift package itself.
#
#   scripts/venv.sh            # create (or update) ./.venv
#   PYTHON=python3.11 scripts/venv.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --upgrade pip >/dev/null
.venv/bin/python -m pip install -r fixtures/requirements.txt
.venv/bin/python -c 'import torch, numpy, rwkv, safetensors, gguf; print("venv ok: torch", torch.__version__, "numpy", numpy.__version__)'
