#!/usr/bin/env bash
# Builds ggml's quantizers from the llama.cpp vendored in llama-cpp-python (pinned below) into a
# shared library for fixtures/quant/make_kquant_vectors.py, which calls it through ctypes.
#
#   scripts/build-ggml.sh            -> prints the path of .ggml/libggml-quants.so
#
# The sdist comes from PyPI through pip (checked against its SHA-256); only ggml's base library is
# compiled (ggml.c, ggml-quants.c and what they link against: no CPU backend, no llama.cpp), with
# gcc -O2 and no -march, so nothing is fused into FMA instructions (as in a baseline x86-64 build).
# Everything goes to .ggml/ (git-ignored); nothing fetched is committed.
set -euo pipefail
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
GGML_VERSION=0.25.3   # ggml/CMakeLists.txt of that sdist
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/.ggml"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
LIB="$OUT/libggml-quants.so"
if [ -f "$LIB" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$VERSION $SHA256" ]; then echo "$LIB"; exit 0; fi

mkdir -p "$OUT/dl" "$OUT/obj" "$OUT/gen"
SDIST="$OUT/dl/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    # --no-binary for this package only: its build dependencies (cmake, ...) may come as wheels.
    "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$OUT/dl" >&2
fi
echo "$SHA256  $SDIST" | sha256sum --check --quiet >&2
rm -rf "$OUT/src"
mkdir -p "$OUT/src"
tar -xzf "$SDIST" -C "$OUT/src" --strip-components=4 "llama_cpp_python-$VERSION/vendor/llama.cpp/ggml/include" \
    "llama_cpp_python-$VERSION/vendor/llama.cpp/ggml/src"
S="$OUT/src"
printf '#pragma once\n#define GGML_VERSION "%s"\n#define GGML_COMMIT "llama-cpp-python-%s"\n' "$GGML_VERSION" "$VERSION" > "$OUT/gen/ggml-version.h"
FLAGS=(-O2 -fPIC -DNDEBUG -D_GNU_SOURCE -I"$S/include" -I"$S/src" -I"$OUT/gen")
cd "$OUT/obj"
rm -f ./*.o
gcc "${FLAGS[@]}" -std=gnu11 -w -c "$S/src/ggml.c" "$S/src/ggml-quants.c" "$S/src/ggml-alloc.c"
g++ "${FLAGS[@]}" -std=c++17 -w -c "$S/src/ggml-threading.cpp" "$S/src/ggml-backend.cpp" "$S/src/ggml-backend-meta.cpp"
g++ -shared ./*.o -o "$LIB" -Wl,--no-undefined -lm -lpthread
echo "$VERSION $SHA256" > "$OUT/stamp"
echo "$LIB"
