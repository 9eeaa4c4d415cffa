#!/usr/bin/env bash
# Interoperability of rwkv-convert's GGUF files with gguf-py and llama.cpp (not part of make test).
# Converts the fixture models (RWKV-7, RWKV-6 and RWKV-5.2, the last as an rwkv6 file) in every type, then:
#   - scripts/interop.py: gguf-py reads every tensor; stored bytes equal gguf-py's own encoding of
#     the source values; llama.cpp (llama-cpp-python) loads every file and its logits on the
#     fixture tokens are compared with the official package's;
#   - GGUFInteropTests (Swift, opt-in): our reader's values equal gguf.quants.dequantize's;
#   - rwkv-verify (our forward pass) on the same files and tokens, for comparison;
#   - scripts/train/parity.py: the trainable torch RWKV-6/7 against the official package (fixtures);
#     parity_goldfinch.py: the trainable torch GoldFinch against its repository's logits (fixtures).
# Needs the venv (scripts/venv.sh) plus llama-cpp-python (scripts/interop-requirements.txt:
# compiles llama.cpp, slow). Writes to $OUT (default: a new folder in /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo /work/main/.venv/bin/python )}
OUT=${OUT:-$(mktemp -d /tmp/rwkv-interop.XXXXXX)}
mkdir -p "$OUT"
parity=0
"$PY" scripts/train/parity.py || parity=1
"$PY" scripts/train/parity_goldfinch.py || parity=1   # the trainable torch GoldFinch against its repository's logits
"$PY" -c 'import gguf, llama_cpp' || {
    echo "interop: the venv needs gguf and llama-cpp-python: $PY -m pip install -r scripts/interop-requirements.txt" >&2; exit 1; }
swift build --product rwkv-convert >/dev/null
swift build --product rwkv-verify >/dev/null
export RWKV_VERIFY=.build/debug/rwkv-verify   # our forward pass on the same files, for comparison
MODELS="rwkv7-tiny rwkv6-tiny rwkv5.2-tiny"   # RWKV-5.2 is written as the rwkv6 file that equals it
for m in $MODELS; do
    for t in f32 f16 bf16 q8_0 q5_1 q5_0 q4_1 q4_0; do
        .build/debug/rwkv-convert safetensors-to-native "fixtures/models/$m.safetensors" "$OUT/$m.$t.gguf" --type "$t" >/dev/null
    done
done
# 256-wide RWKV-7 and RWKV-6 (the fixtures' builders, official logits made now) in every type,
# k-quants and iq4_nl included: the fixtures are too narrow for them.
"$PY" scripts/make-wide-interop.py "$OUT" >/dev/null
for m in rwkv7-wide rwkv6-wide; do
    for t in f32 f16 bf16 q8_0 q6_k q5_k q5_1 q5_0 q4_k q4_1 q4_0 iq4_nl q3_k q2_k; do
        .build/debug/rwkv-convert safetensors-to-native "$OUT/$m.safetensors" "$OUT/$m.$t.gguf" --type "$t" >/dev/null
    done
done
MODELS="$MODELS rwkv7-wide rwkv6-wide"
status=$parity
"$PY" scripts/interop.py "$OUT" $MODELS || status=1
# A World-vocabulary model (65536 rows): llama.cpp must tokenize like the official package.
# (In its own folder: the Swift check below compares every .gguf in $OUT.)
mkdir -p "$OUT/world"
"$PY" scripts/make-bench-checkpoint.py --world-tiny "$OUT/world/world-tiny" >/dev/null
.build/debug/rwkv-convert safetensors-to-native "$OUT/world/world-tiny.safetensors" "$OUT/world/world-tiny.gguf" --type q8_0 >/dev/null
"$PY" scripts/interop.py --tokenizer "$OUT/world/world-tiny.gguf" 2>/dev/null || status=1
swift build --build-tests >/dev/null
RWKV_INTEROP_DIR="$OUT" swift test --skip-build --filter GGUFInteropTests > "$OUT/gguf-interop-tests.log" 2>&1 || status=1
sed -nE '/GGUFInteropTests:|✘|Test run/p' "$OUT/gguf-interop-tests.log"
grep -qE "Test run with [1-9][0-9]* tests? .*passed" "$OUT/gguf-interop-tests.log" || { echo "interop: GGUFInteropTests failed or ran no test"; status=1; }
# rwkv-convert to-hf: transformers (rwkv7-hf model code, fixtures/hf-requirements.txt) loads the
# folder and runs it like the official package.
if "$PY" -c 'import rwkv7_hf' 2>/dev/null; then
    .build/debug/rwkv-convert to-hf fixtures/models/rwkv7-tiny-bf16.pth "$OUT/rwkv7-tiny-hf" >/dev/null
    "$PY" scripts/interop-hf.py "$OUT/rwkv7-tiny-hf" 2>/dev/null || status=1
else
    echo "interop: skipping the to-hf check (pip install -r scripts/interop-requirements.txt)" >&2
    [ -z "${REQUIRE_ALL:-}" ] || status=1
fi
# Presets: our one-step files against llama-quantize's from our f32 GGUF (scripts/check-presets.py),
# when llama-quantize is built (scripts/build-llama-quantize.sh) or named by LLAMA_QUANTIZE.
LQ=${LLAMA_QUANTIZE:-.llama/build/bin/llama-quantize}
if [ -x "$LQ" ]; then
    # With and without an importance matrix (the fixture's, in llama.cpp's legacy layout).
    "$PY" scripts/check-presets.py --llama-quantize "$LQ" fixtures/models/rwkv7-tiny-bf16.pth fixtures/models/rwkv6-trained-bf16.pth \
        --imatrix fixtures/models/rwkv7-tiny-bf16.pth=fixtures/expected/text/rwkv7-tiny-fp32.imatrix.dat | tail -1 || status=1
else
    echo "interop: skipping the preset check (scripts/build-llama-quantize.sh, or LLAMA_QUANTIZE=...)" >&2
    [ -z "${REQUIRE_ALL:-}" ] || status=1
fi
# rwkv-upgrade v5-to-v6: RWKV-LM's RWKV-6 trainer loads the output strictly and the official
# package runs it exactly as the RWKV-5 (scripts/interop-rwkv5.py), given a checkout of RWKV-LM.
if [ -n "${RWKV_LM:-}" ]; then
    swift build -c release --product rwkv-upgrade >/dev/null
    "$PY" scripts/interop-rwkv5.py "$RWKV_LM" --upgrade .build/release/rwkv-upgrade || status=1
else
    echo "interop: skipping the RWKV-LM strict-load check of v5-to-v6 (RWKV_LM=PATH/TO/RWKV-LM)" >&2
fi
echo "interop outputs in $OUT"
exit $status
