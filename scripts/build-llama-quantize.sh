#!/usr/bin/env bash
# Builds llama.cpp's llama-quantize (and libllama) from the llama.cpp vendored in
# llama-cpp-python 0.3.36 (the version the interop checks use), from its PyPI sdist (SHA-256
# checked), for the interop check of our presets (scripts/check-presets.sh) and the quantization
# bench. CPU backend without -march (GGML_NATIVE=OFF), static, into .llama/ (git-ignored).
#
#   scripts/build-llama-quantize.sh      -> prints the path of llama-quantize
#
# Needs cmake (pip installs it into the venv: `pip install cmake==3.31.6`) and g++. About 20-40
# minutes on 2 cores.
set -euo pipefail
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/.llama"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
BIN="$OUT/build/bin/llama-quantize"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$OUT/dl"
SDIST="$OUT/dl/llama_cpp_python-$VERSION.tar.gz"
[ -f "$SDIST" ] || "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$OUT/dl" >&2
echo "$SHA256  $SDIST" | sha256sum --check --quiet >&2
CMAKE="$(dirname "$PY")/cmake"
[ -x "$CMAKE" ] || { "$PY" -m pip install --quiet cmake==3.31.6 >&2; }
rm -rf "$OUT/src" && mkdir -p "$OUT/src"
tar -xzf "$SDIST" -C "$OUT/src" --strip-components=3 "llama_cpp_python-$VERSION/vendor/llama.cpp"
"$CMAKE" -S "$OUT/src" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF >&2
"$CMAKE" --build "$OUT/build" --target llama-quantize -j "${JOBS:-2}" >&2
echo "$BIN"
