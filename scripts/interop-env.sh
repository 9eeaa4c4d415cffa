#!/usr/bin/env bash
# The interop stage's environment (make interop), built from the package registries only and
# cached between runs in one folder outside the clone:
#   - a venv with fixtures/requirements.txt and scripts/interop-requirements.txt (pinned);
#   - llama.cpp as llama-cpp-python 0.3.36 vendors it, from that version's PyPI sdist (SHA-256
#     checked), built once into the venv folder as shared libraries (which llama-cpp-python loads
#     through LLAMA_CPP_LIB_PATH) and llama-quantize: one build serves both.
# The folder's name is a hash of the requirement files and this script, so a change rebuilds it.
# Prints `export` lines for the checks (eval "$(scripts/interop-env.sh)"); progress goes to stderr.
#
#   INTEROP_CACHE=DIR   where the folders live (default ${XDG_CACHE_HOME:-~/.cache}/rwkv-tools)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
KEY=$(cat fixtures/requirements.txt scripts/interop-requirements.txt scripts/interop-env.sh | sha256sum | cut -c1-16)
CACHE=${INTEROP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rwkv-tools}
VENV="$CACHE/interop-$KEY"
LLAMA="$VENV/llama.cpp"
step() { echo "interop-env: $* ($(date +%H:%M:%S))" >&2; }
if [ ! -f "$VENV/.ready" ]; then
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    step "venv in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    step "fixtures/requirements.txt (torch, rwkv, gguf, safetensors, numpy)"
    "$VENV/bin/python" -m pip install --quiet -r fixtures/requirements.txt >&2
    step "scripts/interop-requirements.txt (llama-cpp-python without its own llama.cpp build)"
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$VENV/bin/python" -m pip install --quiet -r scripts/interop-requirements.txt >&2
    step "llama.cpp $VERSION (vendored by llama-cpp-python): shared libraries and llama-quantize"
    mkdir -p "$LLAMA/dl" "$LLAMA/src"
    "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$LLAMA/dl" >&2
    echo "$SHA256  $LLAMA/dl/llama_cpp_python-$VERSION.tar.gz" | sha256sum --check --quiet >&2
    tar -xzf "$LLAMA/dl/llama_cpp_python-$VERSION.tar.gz" -C "$LLAMA/src" --strip-components=3 "llama_cpp_python-$VERSION/vendor/llama.cpp"
    "$VENV/bin/cmake" -S "$LLAMA/src" -B "$LLAMA/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=ON \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF >/dev/null
    "$VENV/bin/cmake" --build "$LLAMA/build" --target llama llama-quantize -j "${JOBS:-2}" >/dev/null
    rm -rf "$LLAMA/src" "$LLAMA/dl"
    touch "$VENV/.ready"
    step "ready"
fi
echo "export PYTHON='$VENV/bin/python' LLAMA_CPP_LIB_PATH='$LLAMA/build/bin' LLAMA_QUANTIZE='$LLAMA/build/bin/llama-quantize'"
