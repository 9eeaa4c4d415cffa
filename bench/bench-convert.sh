#!/usr/bin/env bash
# Conversion speed and memory on a real-shaped RWKV-7 (the 0.1B World shapes: 12 x 768, vocab
# 65536, bf16, ~380 MB, random weights from scripts/make-bench-checkpoint.py), against copying the
# same file with cp in the same run. Targets: f16 within 3x the copy's time, q8_0 within 5x, peak
# RSS under 2x the largest tensor + 100 MB. Needs the release build (make build) and, once, the
# venv to generate the checkpoint (scripts/venv.sh). Everything goes to bench/out/ (git-ignored).
# Note: cp copies in the kernel (copy_file_range) and does not flush to disk; neither does the
# converter by default (it writes a temporary file and renames it into place). With --sync it
# flushes before the rename: those runs are set against "dd conv=fsync", a copy that flushes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/rwkv-convert
OUT=bench/out
STEM=$OUT/rwkv7-0.1b-bench
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo /work/main/.venv/bin/python )}
[ -x "$BIN" ] || { echo "bench-convert: $BIN missing; run: swift build -c release" >&2; exit 1; }
mkdir -p "$OUT"
[ -f "$STEM.safetensors" ] && [ -f "$STEM.pth" ] || "$PY" scripts/make-bench-checkpoint.py "$STEM" >/dev/null
IN=$STEM.safetensors
# The largest tensor is emb.weight / head.weight: 65536 x 768 bf16.
LARGEST=$((65536 * 768 * 2))
RUNS=${RUNS:-3}

cat "$IN" "$STEM.pth" > /dev/null   # warm the page cache so every run reads from memory

# best of $RUNS: "seconds peak_kb". $1 is the output, removed before each run (outside the timing)
# so no run pays for deleting the previous one's file.
measure() {
    local out=$1 best_s="" best_kb=""
    shift
    for _ in $(seq "$RUNS"); do
        rm -f "$out"
        sync -f "$OUT" 2>/dev/null || true
        /usr/bin/time -f "%e %M" -o "$OUT/time.txt" "$@" > /dev/null
        read -r s kb < "$OUT/time.txt"
        if [ -z "$best_s" ] || awk "BEGIN{exit !($s < $best_s)}"; then best_s=$s; fi
        if [ -z "$best_kb" ] || [ "$kb" -gt "$best_kb" ]; then best_kb=$kb; fi
    done
    echo "$best_s $best_kb"
}

read -r cp_s cp_kb < <(measure "$OUT/copy.bin" cp "$IN" "$OUT/copy.bin")
# A copy that also flushes to disk, as the converter does before renaming its output into place.
read -r cps_s cps_kb < <(measure "$OUT/copy.bin" dd if="$IN" of="$OUT/copy.bin" bs=4M conv=fsync status=none)
read -r f16_s f16_kb < <(measure "$OUT/bench-f16.gguf" "$BIN" safetensors-to-native "$IN" "$OUT/bench-f16.gguf" --type f16)
read -r q8_s q8_kb < <(measure "$OUT/bench-q8_0.gguf" "$BIN" safetensors-to-native "$IN" "$OUT/bench-q8_0.gguf" --type q8_0)
read -r pf16_s pf16_kb < <(measure "$OUT/bench-f16.gguf" "$BIN" pth-to-native "$STEM.pth" "$OUT/bench-f16.gguf" --type f16)
read -r pq8_s pq8_kb < <(measure "$OUT/bench-q8_0.gguf" "$BIN" pth-to-native "$STEM.pth" "$OUT/bench-q8_0.gguf" --type q8_0)
read -r f16s_s f16s_kb < <(measure "$OUT/bench-f16.gguf" "$BIN" safetensors-to-native "$IN" "$OUT/bench-f16.gguf" --type f16 --sync)
read -r q8s_s q8s_kb < <(measure "$OUT/bench-q8_0.gguf" "$BIN" safetensors-to-native "$IN" "$OUT/bench-q8_0.gguf" --type q8_0 --sync)
rm -f "$OUT/copy.bin"

limit_kb=$(( (2 * LARGEST + 100 * 1000 * 1000) / 1024 ))
printf 'input: %s (%d MB), largest tensor %d MB, best of %d runs, load average %s\n' "$IN" \
    $(( $(stat -c %s "$IN") / 1000000 )) $((LARGEST / 1000000)) "$RUNS" "$(cut -d' ' -f1 /proc/loadavg)"
ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
printf '%-24s %8s %10s %8s %12s\n' "" "seconds" "peak RSS" "x cp" "x dd+fsync"
printf '%-24s %8.2f %7d MB %8s %12s\n' "cp" "$cp_s" $((cp_kb / 1024)) "1.00" ""
printf '%-24s %8.2f %7d MB %8s %12s\n' "dd conv=fsync" "$cps_s" $((cps_kb / 1024)) "$(ratio "$cps_s" "$cp_s")" "1.00"
row() { printf '%-24s %8.2f %7d MB %8s %12s   %s\n' "$1" "$2" $(($3 / 1024)) "$(ratio "$2" "$cp_s")" "$(ratio "$2" "$cps_s")" "${4:-}"; }
row "safetensors f16" "$f16_s" "$f16_kb" "(target: <= 3 x cp)"
row "safetensors q8_0" "$q8_s" "$q8_kb" "(target: <= 5 x cp)"
row "pth f16" "$pf16_s" "$pf16_kb" "(target: <= 3 x cp)"
row "pth q8_0" "$pq8_s" "$pq8_kb" "(target: <= 5 x cp)"
row "safetensors f16 --sync" "$f16s_s" "$f16s_kb"
row "safetensors q8_0 --sync" "$q8s_s" "$q8s_kb"
within() { [ "$1" -le "$limit_kb" ] && echo within || echo OVER; }
printf 'peak RSS limit (2 x largest tensor + 100 MB): %d MB; safetensors f16 %s, q8_0 %s; pth f16 %s, q8_0 %s\n' $((limit_kb / 1024)) \
    "$(within "$f16_kb")" "$(within "$q8_kb")" "$(within "$pf16_kb")" "$(within "$pq8_kb")"
met() { awk "BEGIN{print ($1 <= $2 * $cp_s) ? \"met\" : \"NOT met\"}"; }
printf 'time targets (f16 <= 3 x cp, q8_0 <= 5 x cp): safetensors f16 %s, q8_0 %s; pth f16 %s, q8_0 %s\n' \
    "$(met "$f16_s" 3)" "$(met "$q8_s" 5)" "$(met "$pf16_s" 3)" "$(met "$pq8_s" 5)"
