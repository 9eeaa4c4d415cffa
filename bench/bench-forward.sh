#!/usr/bin/env bash
# Forward-pass speed on a model of real shape: a 64-token prompt through RWKV-7 12 layers × 768,
# vocab 65536 (random bf16 weights, f32 compute), 2 threads. Times our RNN mode and sequence mode
# (rwkv-verify bench, release build) and, as the baseline, the official `rwkv` package (torch,
# cpu fp32, torch.set_num_threads(2)) on the same weights and prompt. With the official logits in
# hand it also checks that our logits agree with them on this model.
#
#   bench/bench-forward.sh            (make bench runs it; needs `make build` first)
#   REPEATS=5 bench/bench-forward.sh  (timed runs per mode; the fastest counts)
#   VENV=/path/to/venv bench/bench-forward.sh
#
# Without the venv (.venv, made by `make venv`) the baseline is skipped and only our two modes
# are timed. The model is generated once into bench/out/ (git-ignored, ~380 MB per file).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.build/release/rwkv-verify
OUT=bench/out
MODEL=$OUT/rwkv7-bench.safetensors
PTH=$OUT/rwkv7-bench.pth
LOGITS=$OUT/rwkv7-bench.official.logits.safetensors
VENV=${VENV:-.venv}
REPEATS=${REPEATS:-3}
THREADS=2
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

[ -x "$BIN" ] || { echo "bench-forward: $BIN is missing; run 'make build' (or 'swift build -c release') first"; exit 1; }
mkdir -p "$OUT"
if [ -x "$VENV/bin/python" ]; then PY="$VENV/bin/python"; else PY=""; fi
GEN_PY=${PY:-python3}
command -v "$GEN_PY" >/dev/null || { echo "bench-forward: python3 is needed to generate the benchmark model"; exit 1; }

# The prompt: 64 fixed pseudo-random token ids (Knuth's multiplicative hash of 0..63).
TOKENS=$(for i in $(seq 0 63); do echo $(( (i * 2654435761 + 12345) % 65536 )); done | paste -sd, -)

"$GEN_PY" scripts/make-bench-model.py "$MODEL"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ours=$("$BIN" bench "$MODEL" --tokens "$TOKENS" --repeats "$REPEATS" --json)
# Single-thread sequence mode too: on a busy machine a second thread can cost more than it gives
# (torch's OpenMP barriers especially), so this line shows the comparison without that effect.
ours1=$(OPENBLAS_NUM_THREADS=1 "$BIN" bench "$MODEL" --tokens "$TOKENS" --repeats "$REPEATS" --mode seq --json)

official=""
official1=""
agreement=""
if [ -n "$PY" ]; then
    "$PY" scripts/make-bench-model.py "$MODEL" --pth "$PTH"
    # The official RNN mode is slow (a TorchScript call per token): one timed run after the warm-up.
    official=$(BENCH_THREADS=$THREADS "$PY" bench/official_forward.py "$PTH" "$TOKENS" "$REPEATS" 1 "$LOGITS" 2>/dev/null | tail -n 1)
    official1=$(BENCH_THREADS=1 OMP_NUM_THREADS=1 "$PY" bench/official_forward.py "$PTH" "$TOKENS" "$REPEATS" 0 2>/dev/null | tail -n 1)
    agreement=$("$BIN" "$MODEL" --fixture "$LOGITS" --json || true)
else
    echo "bench-forward: no venv at $VENV (make venv): skipping the official-package baseline"
fi

echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

OURS="$ours" OURS1="$ours1" OFFICIAL="$official" OFFICIAL1="$official1" AGREEMENT="$agreement" python3 - <<'EOF'
import json, os, sys
ours, ours1 = json.loads(os.environ["OURS"]), json.loads(os.environ["OURS1"])
official = json.loads(os.environ["OFFICIAL"]) if os.environ["OFFICIAL"] else None
official1 = json.loads(os.environ["OFFICIAL1"]) if os.environ["OFFICIAL1"] else None
m = ours["model"]
print(f"forward pass: {ours['tokens']}-token prompt, RWKV-{m['version']} {m['layers']} layers x {m['embeddingSize']}, "
      f"vocab {m['vocabSize']}, 2 threads, best of {ours['repeats']}")
base = official["sequenceSeconds"] if official else ours["rnnSeconds"]
base_name = "official sequence" if official else "our rnn"
print(f"{'':28}{'seconds':>9}{'tokens/s':>11}   speed vs {base_name}")
rows = [("rwkv-verify rnn", ours["rnnSeconds"]), ("rwkv-verify sequence", ours["sequenceSeconds"])]
if official:
    rows += [("official rwkv rnn", official["rnnSeconds"]), ("official rwkv sequence", official["sequenceSeconds"])]
for name, s in rows:
    print(f"{name:28}{s:9.3f}{ours['tokens'] / s:11.1f}   {base / s:6.2f}x")
ok = True
ratio = ours["rnnSeconds"] / ours["sequenceSeconds"]
print(f"our sequence mode is {ratio:.1f}x faster than our rnn mode")
ok &= ratio > 1.2
if official:
    r = official["sequenceSeconds"] / ours["sequenceSeconds"]
    print(f"our sequence mode is {r:.1f}x the official package's sequence mode")
    ok &= r >= 1.0
line = f"1 thread, sequence mode: ours {ours1['sequenceSeconds']:.3f} s ({ours1['sequenceTokensPerSecond']:.1f} tokens/s)"
if official1:
    r1 = official1["sequenceSeconds"] / ours1["sequenceSeconds"]
    line += f", official {official1['sequenceSeconds']:.3f} s ({official1['sequenceTokensPerSecond']:.1f} tokens/s): {r1:.2f}x"
    ok &= r1 >= 1.0
print(line)
agreement = os.environ["AGREEMENT"]
if agreement:
    rep = json.loads(agreement)
    worst = max(float(c["summary"]["maxAbsDelta"]) for c in rep["checks"])
    print(f"logits vs the official package on this model (64 positions, rnn and sequence): max |dlogit| {worst:.2e} "
          f"-> {'within' if all(c['passed'] for c in rep['checks']) else 'OUTSIDE'} the 1e-4 tolerance")
    ok &= all(c["passed"] for c in rep["checks"])
print("bench-forward: " + ("ok" if ok else "REQUIREMENT NOT MET (sequence > rnn, sequence >= official at 2 and 1 threads, logits agree)"))
sys.exit(0 if ok else 1)
EOF
