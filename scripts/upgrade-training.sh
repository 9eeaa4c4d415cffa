#!/bin/sh
# Continued training from upgraded RWKV-6 models (docs/upgrade.md, "Continued training"). Needs the
# venv (scripts/venv.sh) plus scripts/train/requirements.txt (matplotlib); not part of `make test`.
#
#   scripts/upgrade-training.sh [V6.pth] [OUT]     (default: fixtures/models/rwkv6-trained-bf16.pth)
#
# Upgrades the trained RWKV-6 with `rwkv-upgrade v6-to-v7` (release build): --recipe paper,
# --recipe preserve, and preserve --calibrate on the first 16 KB of the training split; then
# scripts/train/upgrade_experiment.py adds a fresh RWKV-7 init of the same shapes and the RWKV-6
# itself (control), measures KL(v6 || v7) and top-1 before training with the official package,
# trains every start on the same batches in the same order, and writes OUT/{results.json,
# table.md, curves.png}. Settings: STEPS (300), LR (5e-4), JOBS (2 trainings at once, 1 thread
# each), all under nice -n 10. Takes about 30-60 minutes on a busy 2-core machine.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=/work/main/.venv/bin/python
V6=${1:-fixtures/models/rwkv6-trained-bf16.pth}
OUT=${2:-$(mktemp -d /tmp/rwkv-upgrade-training.XXXXXX)}
STEPS=${STEPS:-300}
LR=${LR:-5e-4}
JOBS=${JOBS:-2}
"$PYTHON" -c 'import torch, rwkv, matplotlib' || {
    echo "upgrade-training: the venv needs fixtures/requirements.txt and scripts/train/requirements.txt" >&2; exit 1; }
[ -f .corpus/train.txt ] || "$PYTHON" scripts/train/corpus.py >/dev/null
swift build -c release --product rwkv-upgrade >/dev/null
UPGRADE=.build/release/rwkv-upgrade
mkdir -p "$OUT"
head -c 16384 .corpus/train.txt > "$OUT/calibration.txt"
for recipe in paper preserve; do
    "$UPGRADE" v6-to-v7 "$V6" "$OUT/$recipe.pth" --recipe "$recipe" --json > "$OUT/$recipe.json"
done
"$UPGRADE" v6-to-v7 "$V6" "$OUT/calibrated.pth" --recipe preserve --calibrate "$OUT/calibration.txt" \
    --json > "$OUT/calibrated.json"
nice -n 10 "$PYTHON" scripts/train/upgrade_experiment.py --v6 "$V6" --out "$OUT" --steps "$STEPS" --lr "$LR" \
    --jobs "$JOBS" --start "paper=$OUT/paper.pth" --start "preserve=$OUT/preserve.pth" \
    --start "preserve --calibrate=$OUT/calibrated.pth"
echo "upgrade-training: outputs in $OUT"
