#!/bin/sh
# Measures how close `rwkv-upgrade v6-to-v7` stays to the RWKV-6 model it upgrades (interop check,
# needs the venv; not part of `make test`).
#
#   scripts/upgrade-quality.sh [V6.pth] [extra rwkv-upgrade options...]
#
# For each recipe (paper; preserve on the Gaussian stand-in, --no-calibrate; preserve as it runs by
# default, calibrated on its built-in text; preserve --calibrate on 4 KB of fixtures/README.md)
# the fixture RWKV-6 model is upgraded to a bf16 .pth; the
# official `rwkv` package then computes RWKV-6 logits (plain) and RWKV-7 logits (RWKV_V7_ON=1,
# loading our file) on the fixture's held-out token sequence and on a longer held-out text, and
# scripts/upgrade_quality.py reports KL(v6 || v7), top-1 agreement and next-token loss, with a
# freshly initialised RWKV-7 of the same shape as the baseline. Every output is also opened with
# torch.load(weights_only=True) and torch.load(mmap=True).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=/work/main/.venv/bin/python
V6=${1:-fixtures/models/rwkv6-tiny-fp32.pth}
[ $# -gt 0 ] && shift
HELDOUT=fixtures/expected/rwkv6-tiny-fp32.heldout.logits.safetensors

swift build -c release --product rwkv-upgrade >/dev/null
UPGRADE=.build/release/rwkv-upgrade
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

"$UPGRADE" v6-to-v7 "$V6" "$TMP/paper.pth" --recipe paper "$@" --json > "$TMP/paper.json"
"$UPGRADE" v6-to-v7 "$V6" "$TMP/preserve.pth" --no-calibrate "$@" --json > "$TMP/preserve.json"
"$UPGRADE" v6-to-v7 "$V6" "$TMP/default.pth" "$@" --json > "$TMP/default.json"
# preserve fitted on real activations: the RWKV-6 model run over 4 KB of fixtures/README.md
# (disjoint from both held-out texts below).
head -c 4096 fixtures/README.md > "$TMP/calibration.txt"
"$UPGRADE" v6-to-v7 "$V6" "$TMP/calibrated.pth" --recipe preserve --calibrate "$TMP/calibration.txt" "$@" --json > "$TMP/calibrated.json"

# A longer held-out text (byte tokens), disjoint from anything the recipes look at.
cat > "$TMP/long.txt" <<'EOF'
Upgrading a trained network to a new architecture is a bet that most of what it learned still
applies. Embeddings, projections and norms carry over unchanged; what the new architecture adds
starts switched off, so the first steps of training begin from the old model's behaviour instead
of from noise. How much survives is measured, not assumed: the same tokens go through both models
and their predictions are compared position by position, in nats of divergence, in agreement of
the most likely next token, and in the loss each model pays on the text that actually follows.
EOF

for tokens in "$HELDOUT" "$TMP/long.txt"; do
    echo "== $(basename "$tokens")"
    "$PYTHON" scripts/upgrade_quality.py report --v6 "$V6" --tokens "$tokens" \
        --model "paper=$TMP/paper.pth" --model "preserve --no-calibrate=$TMP/preserve.pth" \
        --model "preserve (built-in text)=$TMP/default.pth" --model "preserve --calibrate=$TMP/calibrated.pth" --fresh
done

echo "== what each remaining mismatch costs alone ($(basename "$HELDOUT"))"
"$PYTHON" scripts/upgrade_quality.py ablate --v6 "$V6" --tokens "$HELDOUT" \
    --model "paper=$TMP/paper.pth" --model "preserve --no-calibrate=$TMP/preserve.pth" \
    --model "preserve (built-in text)=$TMP/default.pth" --model "preserve --calibrate=$TMP/calibrated.pth"
