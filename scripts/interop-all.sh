#!/usr/bin/env bash
# make interop (and the interop stage of .ci/run): what README promises about other people's tools,
# checked with those tools, in the environment scripts/interop-env.sh builds from the registries:
#   scripts/interop.sh         llama.cpp runs every type of both architectures (RWKV-5 included) within
#                              derived bounds; gguf-py reads our GGUF and imatrix files; llama-quantize's
#                              preset files equal ours; transformers + rwkv7-hf loads our to-hf folder;
#                              the trainable torch models equal the official package (parity.py)
#   scripts/interop-torch.sh   torch.load(weights_only=True) and mmap=True load our .pth files
#   scripts/interop-trainer.py the trainer-shaped models load our upgrades strictly; the official
#                              package runs them and agrees
#   scripts/interop-rwkvx.py   the rwkv-x package loads our v7-to-x outputs; exactness; gradients
#   scripts/interop-goldfinch.py  with GOLDFINCH=CHECKOUT only (CI has no checkout)
# Every check counts what it checked and fails on zero; a check that cannot run fails here
# (REQUIRE_ALL=1). Prints each check's time and a summary; exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
env_lines=$(scripts/interop-env.sh) || { echo "interop: building the environment failed" >&2; exit 1; }
eval "$env_lines"
export PYTHON LLAMA_CPP_LIB_PATH LLAMA_QUANTIZE REQUIRE_ALL=1
ready=$(date +%s)
echo "interop: environment ready in $((ready - start)) s ($PYTHON)"
swift build --product rwkv-upgrade >/dev/null || { echo "interop: building rwkv-upgrade failed" >&2; exit 1; }
status=0
summary=()
run() {
    local name=$1; shift
    local s=$(date +%s) result=pass
    "$@" || { result=FAIL; status=1; }
    local took=$(( $(date +%s) - s ))
    summary+=("$(printf '%-5s %5d s  %s' "$result" "$took" "$name")")
    echo "interop: $name: $result ($took s)"
}
run "llama.cpp, gguf-py, llama-quantize presets, transformers to-hf, torch parity (scripts/interop.sh)" scripts/interop.sh
run "torch.load weights_only / mmap (scripts/interop-torch.sh)" scripts/interop-torch.sh
run "trainer-shaped models and the official package on our upgrades (scripts/interop-trainer.py)" "$PYTHON" scripts/interop-trainer.py
run "rwkv-x package on our v7-to-x outputs (scripts/interop-rwkvx.py)" "$PYTHON" scripts/interop-rwkvx.py
if [ -n "${GOLDFINCH:-}" ]; then
    run "GoldFinch repository code on our v6-to-goldfinch outputs (scripts/interop-goldfinch.py)" "$PYTHON" scripts/interop-goldfinch.py "$GOLDFINCH"
else
    echo "interop: GoldFinch repository check skipped (GOLDFINCH=PATH names a checkout of recursal/GoldFinch-paper; not in CI)"
fi
echo
echo "interop summary (environment $((ready - start)) s, checks $(( $(date +%s) - ready )) s):"
printf '  %s\n' "${summary[@]}"
[ $status = 0 ] && echo "interop: every check passed" || echo "interop: FAILED"
exit $status
