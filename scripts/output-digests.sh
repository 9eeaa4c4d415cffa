#!/usr/bin/env bash
# SHA-256 of every output the programs make from the fixtures: conversions of every model in a
# float, a legacy, a k-quant type and a preset, the exports, and every upgrade. Run before and
# after a refactor that must not change output bytes, and compare:
#   scripts/output-digests.sh [BIN] > before.txt   ...   scripts/output-digests.sh [BIN] | diff before.txt -
# (The upgrades' bytes depend on the OpenBLAS kernels: compare on one machine.) Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/debug}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
digest() { sha256sum "$1" | cut -c1-64; }
export OPENBLAS_NUM_THREADS=1
for m in fixtures/models/*.pth fixtures/models/*.safetensors fixtures/hf/rwkv7-tiny fixtures/hf/rwkv6-tiny-bin fixtures/hf/rwkv5.2-tiny-sharded; do
    name=$(basename "$m")
    for t in f16 q8_0 q4_k Q4_K_M; do
        if "$bin/rwkv-convert" to-gguf "$m" "$out/x.gguf" --type $t >/dev/null 2>&1; then
            echo "$(digest "$out/x.gguf") $name to-gguf $t"
        else echo "refused $name to-gguf $t"; fi
        rm -f "$out/x.gguf"
    done
    if "$bin/rwkv-convert" to-pth "$m" "$out/x.pth" >/dev/null 2>&1; then echo "$(digest "$out/x.pth") $name to-pth"; rm -f "$out/x.pth"
    else echo "refused $name to-pth"; fi
    if "$bin/rwkv-convert" to-hf "$m" "$out/hf" >/dev/null 2>&1; then
        echo "$(cat "$out"/hf/* | sha256sum | cut -c1-64) $name to-hf"; rm -rf "$out/hf"
    else echo "refused $name to-hf"; rm -rf "$out/hf"; fi
done
for m in fixtures/models/rwkv6-tiny-bf16.pth fixtures/models/rwkv6-trained-bf16.pth fixtures/hf/rwkv6-tiny-bin; do
    for r in paper preserve stand-in; do
        if [ $r = stand-in ]; then "$bin/rwkv-upgrade" v6-to-v7 "$m" "$out/u.pth" --no-calibrate >/dev/null
        else "$bin/rwkv-upgrade" v6-to-v7 "$m" "$out/u.pth" --recipe $r >/dev/null; fi
        echo "$(digest "$out/u.pth") $(basename "$m") v6-to-v7 $r"; rm -f "$out/u.pth"
    done
done
for m in fixtures/models/rwkv5.2-tiny-bf16.pth fixtures/models/rwkv5.1-tiny-fp32.pth; do
    "$bin/rwkv-upgrade" v5-to-v6 "$m" "$out/u.pth" >/dev/null; echo "$(digest "$out/u.pth") $(basename "$m") v5-to-v6"; rm -f "$out/u.pth"
    "$bin/rwkv-upgrade" v5-to-v7 "$m" "$out/u.pth" >/dev/null; echo "$(digest "$out/u.pth") $(basename "$m") v5-to-v7"; rm -f "$out/u.pth"
done
