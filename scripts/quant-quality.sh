#!/usr/bin/env bash
# What each llama.cpp preset costs on trained models and real text (docs/quantization.md, "Which
# preset"): for the trained fixtures (fixtures/models/rwkv{6,7}-trained-bf16.pth), every preset
# without and with an importance matrix (ours, from the training split), file size, bits per
# weight, and rwkv-verify --text against the f32 GGUF on the held-out split: perplexity, its
# ratio, mean and 99th-percentile KL divergence, top-1 agreement.
#
#   scripts/quant-quality.sh [CHUNKS]      # CHUNKS of 512 held-out bytes (default 8)
#
# Needs the KJV corpus (python scripts/train/corpus.py --out .corpus: Debian's bible-kjv-text,
# no venv needed beyond python3). Builds and uses the release binaries. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-8}
[ -f .corpus/heldout.txt ] || python3 scripts/train/corpus.py --out .corpus >/dev/null
# One --product per call: several build only the last.
swift build -c release --product rwkv-convert >/dev/null
swift build -c release --product rwkv-verify >/dev/null
B=.build/release
OUT=$(mktemp -d /tmp/rwkv-quant-quality.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
# Calibration: the first 32 KB of the training split (never the held-out text).
head -c 32768 .corpus/train.txt > "$OUT/calibration.txt"
PRESETS="Q8_0 Q6_K Q5_K_M Q5_0 Q4_K_M Q4_0 IQ4_NL Q3_K_M Q2_K"
printf '| model | preset | imatrix | bytes | bits/weight | PPL | PPL ratio | mean KL | KL p99 | top-1 |\n|---|---|---|---|---|---|---|---|---|---|\n'
for arch in rwkv7 rwkv6; do
    model=fixtures/models/$arch-trained-bf16.pth
    $B/rwkv-convert pth-to-native "$model" "$OUT/$arch-f32.gguf" --type f32 >/dev/null
    $B/rwkv-convert imatrix "$OUT/$arch-f32.gguf" --text "$OUT/calibration.txt" -o "$OUT/$arch.imatrix.gguf" --chunk 512 >/dev/null
    ref=$($B/rwkv-verify "$OUT/$arch-f32.gguf" --text .corpus/heldout.txt --chunks "$CHUNKS" --json)
    printf '| %s | f32 | | %s | 32.00 | %.4f | 1 | 0 | 0 | 100 %% |\n' "$arch" "$(stat -c %s "$OUT/$arch-f32.gguf")" \
        "$(echo "$ref" | python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])')"
    for p in $PRESETS; do
        for im in no yes; do
            args=(); [ $im = yes ] && args=(--imatrix "$OUT/$arch.imatrix.gguf")
            $B/rwkv-convert pth-to-native "$model" "$OUT/q.gguf" --type "$p" "${args[@]}" >/dev/null
            bpw=$($B/rwkv-convert inspect "$OUT/q.gguf" --json | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["bitsPerWeight"])')
            $B/rwkv-verify "$OUT/q.gguf" --against "$OUT/$arch-f32.gguf" --text .corpus/heldout.txt --chunks "$CHUNKS" --json \
                | python3 -c '
import json, sys
r = json.load(sys.stdin)
arch, p, im, size, bpw = sys.argv[1:6]
print("| %s | %s | %s | %s | %s | %.4f | %.4f | %.5f | %.4f | %.1f %% |" % (arch, p, im, size, bpw, r["perplexity"],
      r["perplexityRatio"], r["meanKLD"], r["kld"]["p99"], 100 * r["sameTop"]))' "$arch" "$p" "$im" "$(stat -c %s "$OUT/q.gguf")" "$bpw"
        done
    done
done
