#!/usr/bin/env bash
# libFuzzer on the readers (Fuzz/rwkv-fuzz/Fuzz.swift), built with -sanitize=fuzzer,address in
# its own scratch path: pickle, zip, safetensors, gguf, detect, each for SECONDS (default 60),
# seeded from the committed fixtures (and, for gguf, our f16 and q8_0 conversions of the tiny
# RWKV-7 model: seeds only, never expected values). A crash, a sanitizer report or a memory flood
# fails the run; the input is kept in .build/fuzz/crashes/<target>/ (make it a regression file
# in fixtures/make_bad.py).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(pickle zip safetensors gguf detect)
out=.build/fuzz
RWKV_FUZZ=1 swift build --scratch-path "$out" --product rwkv-fuzz -Xswiftc -sanitize=fuzzer,address 2>&1 \
    | grep -E "error|Compiling|Build" | grep -v warning || true
fuzzer=$out/debug/rwkv-fuzz
[ -x "$fuzzer" ] || { echo "fuzz: build failed"; exit 1; }

# Seeds (files under 300 KB): a corpus directory per target.
rm -rf "$out/corpus"; mkdir -p "$out/corpus"/{pickle,zip,safetensors,gguf,detect}
small() { find fixtures -type f -name "$1" -size -300k; }
for f in $(small '*.pth') $(small '*.pt'); do cp "$f" "$out/corpus/zip/$(echo "$f" | tr / _)"; done
for f in $(small '*.safetensors'); do cp "$f" "$out/corpus/safetensors/$(echo "$f" | tr / _)"; done
for f in $(small '*.gguf'); do cp "$f" "$out/corpus/gguf/$(echo "$f" | tr / _)"; done
if swift build --product rwkv-convert >/dev/null 2>&1; then
    for t in f16 q8_0; do
        .build/debug/rwkv-convert safetensors-to-native fixtures/models/rwkv7-tiny.safetensors "$out/corpus/gguf/tiny-$t.gguf" --type "$t" >/dev/null
    done
fi
cp "$out"/corpus/{zip,safetensors,gguf}/* "$out/corpus/detect/" 2>/dev/null
# data.pkl of every seed archive (Python's zipfile only reads them out; no venv needed).
python3 - "$out/corpus/zip" "$out/corpus/pickle" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1:]
for name in os.listdir(src):
    try:
        with zipfile.ZipFile(os.path.join(src, name)) as z:
            for entry in z.namelist():
                if entry.endswith("data.pkl"):
                    open(os.path.join(dst, name + ".pkl"), "wb").write(z.read(entry))
    except Exception:
        pass
PY

fail=0
for t in "${targets[@]}"; do
    mkdir -p "$out/crashes/$t" "$out/work/$t"
    log="$out/fuzz-$t.log"
    RWKV_FUZZ_TARGET=$t ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=Fuzz/lsan.supp "$fuzzer" "$out/work/$t" "$out/corpus/$t" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=400000 \
        -artifact_prefix="$out/crashes/$t/" -print_final_stats=1 >"$log" 2>&1
    code=$?
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    rss=$(grep -m1 'stat::peak_rss_mb' "$log" | awk '{print $2}')
    if [ $code -ne 0 ]; then
        echo "fuzz $t: FAILED (exit $code) after ${runs:-?} runs; input in $out/crashes/$t/, log $log"
        grep -m3 -E "ERROR|Fatal error|crashed|==[0-9]+==" "$log"
        fail=1
    else
        echo "fuzz $t: ${runs:-?} runs in ${seconds} s, peak RSS ${rss:-?} MB, no crash"
    fi
done
exit $fail
