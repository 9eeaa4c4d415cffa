#!/usr/bin/env bash
# The usual route to a Q4_K_M / Q6_K file is two steps: a converter writes an f16 GGUF, then
# llama.cpp's llama-quantize quantizes it. We do it in one step from the .pth. This bench times
# our one step (`rwkv-convert pth-to-native X.pth --type Q4_K_M`, all cores) against llama-quantize's
# step alone on our f16 GGUF of the same model (all cores), in the same run, on the real-shaped
# 12 x 768 RWKV-7 (bench/out, scripts/make-bench-checkpoint.py). Target: ours faster than that
# step alone. Needs the release build and llama-quantize (scripts/build-llama-quantize.sh, or
# LLAMA_QUANTIZE=path); skipped with a note when llama-quantize is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/rwkv-convert
OUT=bench/out
STEM=$OUT/rwkv7-0.1b-bench
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo /work/main/.venv/bin/python )}
LQ=${LLAMA_QUANTIZE:-.llama/build/bin/llama-quantize}
[ -x "$BIN" ] || { echo "bench-quantize: $BIN missing; run: swift build -c release" >&2; exit 1; }
if [ ! -x "$LQ" ]; then echo "bench-quantize: skipped (no llama-quantize; scripts/build-llama-quantize.sh or LLAMA_QUANTIZE=...)"; exit 0; fi
mkdir -p "$OUT"
[ -f "$STEM.pth" ] || "$PY" scripts/make-bench-checkpoint.py "$STEM" >/dev/null
RUNS=${RUNS:-3}
THREADS=$(nproc)
"$BIN" pth-to-native "$STEM.pth" "$OUT/q-f16.gguf" --type f16 >/dev/null
cat "$STEM.pth" "$OUT/q-f16.gguf" > /dev/null   # page cache

best() {   # best wall time of $RUNS runs of "$@"
    local b=""
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f "%e" -o "$OUT/time.txt" "$@" > /dev/null 2>&1
        local s; s=$(cat "$OUT/time.txt")
        if [ -z "$b" ] || awk "BEGIN{exit !($s < $b)}"; then b=$s; fi
    done
    echo "$b"
}
printf 'model: %s, %d threads, best of %d, load average %s\n' "$STEM.pth" "$THREADS" "$RUNS" "$(cut -d' ' -f1 /proc/loadavg)"
printf '%-10s %22s %26s %8s\n' "preset" "ours .pth -> preset (s)" "llama-quantize f16 -> (s)" "ratio"
for p in Q4_K_M Q6_K; do
    ours=$(best "$BIN" pth-to-native "$STEM.pth" "$OUT/q-ours.gguf" --type "$p" --threads "$THREADS")
    theirs=$(best "$LQ" "$OUT/q-f16.gguf" "$OUT/q-theirs.gguf" "$p" "$THREADS")
    printf '%-10s %22.2f %26.2f %8s\n' "$p" "$ours" "$theirs" "$(awk "BEGIN{printf \"%.2f\", $ours / $theirs}")"
done
rm -f "$OUT/q-f16.gguf" "$OUT/q-ours.gguf" "$OUT/q-theirs.gguf" "$OUT/time.txt"
