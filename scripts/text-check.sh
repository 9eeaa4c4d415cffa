#!/usr/bin/env bash
# Text evaluation and importance matrices checked with published tools (not part of make test):
# gguf-py reads our imatrix files and finds the official package's sums in them, our --text NLLs
# equal the official package's, and (with llama-cpp-python) llama.cpp's on the same GGUF.
# Needs the venv (scripts/venv.sh). See scripts/text_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo /work/main/.venv/bin/python )}
OUT=${OUT:-$(mktemp -d /tmp/rwkv-text-check.XXXXXX)}
swift build --product rwkv-convert >/dev/null
swift build --product rwkv-verify >/dev/null
"$PY" scripts/text_check.py .build/debug "$OUT"
echo "outputs in $OUT"
