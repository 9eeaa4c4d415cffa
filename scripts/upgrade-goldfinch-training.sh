#!/bin/sh
# Continued training after `rwkv-upgrade v6-to-goldfinch` (GoldFinch: the Finch's layers + a GOLD layer
# on top, configs/goldfinch_upgrade.yaml of recursal/GoldFinch-paper). Needs the venv (scripts/venv.sh)
# and the corpus (scripts/train/corpus.py, run here if .corpus/ is missing); not part of `make test`.
#
#   scripts/upgrade-goldfinch-training.sh [V6.pth] [OUT]     (default: fixtures/models/rwkv6-trained-bf16.pth)
#
# Upgrades the RWKV-6 with `rwkv-upgrade v6-to-goldfinch IN OUT --recipe R` for R = preserve and
# goldfinch (OUT/goldfinch-R.pth, the tool's output beside it in OUT/goldfinch-R.upgrade.txt), then
# scripts/train/goldfinch_experiment.py checks each file's layout against the recipe, measures
# KL(RWKV-6 ‖ GoldFinch), top-1 and held-out loss before training, runs the gradient check on the
# preserve file (which new parameters have a gradient at optimizer steps 1, 2, 3), trains both and the
# RWKV-6 itself (control) on the same batches with train.py (the torch GoldFinch of
# scripts/train/goldfinch_torch.py), and writes OUT/{results.json, table.md}.
#
# Settings (environment): STEPS (200), LR (5e-4; the RWKV-6 -> RWKV-7 comparison's settings otherwise:
# lr-final 1e-5, 20 warm-up steps, batch 16 x 128), JOBS (2 trainings at once, 1 thread each),
# CONTROL (1: also train the RWKV-6; 0: not), all under nice -n 10. UPGRADE: the rwkv-upgrade binary
# (default .build/debug/rwkv-upgrade; nothing is built here), or UPGRADE=python for the Python
# statement of the recipes (goldfinch_torch.upgrade_from_v6) when the tool is not built.
# A 3 x 128 RWKV-6 (-> 4 layers) takes about 6 minutes on the 2 cores for 200 steps.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
V6=${1:-fixtures/models/rwkv6-trained-bf16.pth}
OUT=${2:-$(mktemp -d /tmp/rwkv-goldfinch-training.XXXXXX)}
STEPS=${STEPS:-200}
LR=${LR:-5e-4}
JOBS=${JOBS:-2}
CONTROL=${CONTROL:-1}
UPGRADE=${UPGRADE:-.build/debug/rwkv-upgrade}
"$PYTHON" -c 'import torch, safetensors' || {
    echo "upgrade-goldfinch-training: the venv needs fixtures/requirements.txt" >&2; exit 1; }
[ -f .corpus/train.txt ] || "$PYTHON" scripts/train/corpus.py >/dev/null
mkdir -p "$OUT"
for R in preserve goldfinch; do
    if [ "$UPGRADE" = python ]; then
        "$PYTHON" -c 'import sys, torch; sys.path.insert(0, "scripts/train"); import goldfinch_torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
torch.save(goldfinch_torch.upgrade_from_v6(sd, sys.argv[3]), sys.argv[2])
print("Python stand-in (goldfinch_torch.upgrade_from_v6), recipe", sys.argv[3])' "$V6" "$OUT/goldfinch-$R.pth" "$R" \
            > "$OUT/goldfinch-$R.upgrade.txt"
    else
        [ -x "$UPGRADE" ] || { echo "upgrade-goldfinch-training: $UPGRADE missing (swift build, or UPGRADE=python)" >&2; exit 1; }
        OPENBLAS_NUM_THREADS=1 "$UPGRADE" v6-to-goldfinch "$V6" "$OUT/goldfinch-$R.pth" --recipe "$R" \
            > "$OUT/goldfinch-$R.upgrade.txt"
    fi
done
NOCONTROL=""
[ "$CONTROL" = 1 ] || NOCONTROL=--no-control
nice -n 10 "$PYTHON" scripts/train/goldfinch_experiment.py --v6 "$V6" --out "$OUT" --steps "$STEPS" --lr "$LR" \
    --jobs "$JOBS" $NOCONTROL --start "preserve=$OUT/goldfinch-preserve.pth" --start "goldfinch=$OUT/goldfinch-goldfinch.pth"
echo "upgrade-goldfinch-training: outputs in $OUT"
