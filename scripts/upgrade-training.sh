#!/bin/sh
# Continued training from upgraded RWKV-6 (or RWKV-5.2) models (docs/upgrade.md, "Continued training").
# Needs the venv (scripts/venv.sh) plus scripts/train/requirements.txt (matplotlib); not part of `make test`.
#
#   scripts/upgrade-training.sh [V6.pth|V5.pth] [OUT]     (default: fixtures/models/rwkv6-trained-bf16.pth)
#
# An RWKV-5.2 input (told by its keys) is upgraded with `rwkv-upgrade v5-to-v7` instead and is the
# control (trained as an RWKV-5 by scripts/train/rwkv_torch.py); ABLATIONS=1 is RWKV-6 only.
#
# Upgrades the trained RWKV-6 with `rwkv-upgrade v6-to-v7` (release build): --recipe paper,
# preserve on the Gaussian stand-in (--no-calibrate) and preserve as a user gets it by default
# (calibrated on the built-in text); then scripts/train/upgrade_experiment.py adds a fresh RWKV-7
# init of the same shapes and the RWKV-6 itself (control), measures KL(v6 || v7) and top-1 before
# training with rwkv-verify, trains every start on the same batches in the same order, measures
# each saved checkpoint's held-out loss with rwkv-verify, and writes OUT/{results.json, table.md,
# curves.png}.
#
# Settings (environment): STEPS (300), LR (5e-4), JOBS (2 trainings at once, 1 thread each), all
# under nice -n 10. SHORT=1 trains paper and the default only, against the RWKV-6 (deep models,
# where each start costs minutes). ABLATIONS=1 trains, instead of the starts above, the default with one of the
# four mappings worth most put back (upgrade-lab --ablate ...) and with a0 = v0 = -3 (compare with the
# default's curve from the run without ABLATIONS: same file, same batches, same curve; docs/upgrade.md,
# "Which mapping matters"). A 3 x 128 start takes about 4 minutes of one core for 300 steps.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
V6=${1:-fixtures/models/rwkv6-trained-bf16.pth}
OUT=${2:-$(mktemp -d /tmp/rwkv-upgrade-training.XXXXXX)}
STEPS=${STEPS:-300}
LR=${LR:-5e-4}
JOBS=${JOBS:-2}
"$PYTHON" -c 'import torch, rwkv, matplotlib' || {
    echo "upgrade-training: the venv needs fixtures/requirements.txt and scripts/train/requirements.txt" >&2; exit 1; }
[ -f .corpus/train.txt ] || "$PYTHON" scripts/train/corpus.py >/dev/null
[ -n "${NO_BUILD:-}" ] || swift build -c release >/dev/null   # NO_BUILD=1: use the release build as it is
# v6 or v5 (5.2), from the tensor names (rwkv_torch.config_from_state_dict)
SRC=$("$PYTHON" -c 'import sys, torch; sys.path.insert(0, "scripts/train"); import rwkv_torch
print(rwkv_torch.config_from_state_dict(torch.load(sys.argv[1], map_location="cpu", weights_only=True))[0])' "$V6")
case "$SRC" in
    v6) UPGRADE=v6-to-v7 ;;
    v5) UPGRADE=v5-to-v7
        [ "${ABLATIONS:-0}" != 1 ] || { echo "upgrade-training: ABLATIONS=1 needs an RWKV-6 input" >&2; exit 1; } ;;
    *) echo "upgrade-training: $V6 is neither RWKV-6 nor RWKV-5.2" >&2; exit 1 ;;
esac
mkdir -p "$OUT"
set --
# upgrade NAME FILE [FLAGS...]: one start, its --json report beside it (experiment flags: upgrade-lab)
upgrade() {
    name=$1 file=$2; shift 2
    case "$*" in
        *--ablate*|*--off-bias*) OPENBLAS_NUM_THREADS=1 .build/release/upgrade-lab "$V6" "$OUT/$file.pth" --json "$@" > "$OUT/$file.json" ;;
        *) OPENBLAS_NUM_THREADS=1 .build/release/rwkv-upgrade "$UPGRADE" "$V6" "$OUT/$file.pth" --json "$@" > "$OUT/$file.json" ;;
    esac
    STARTS="$STARTS
$name=$OUT/$file.pth"
}
STARTS=""
EXTRA=""
if [ "${ABLATIONS:-0}" = 1 ]; then
    for m in gate switched-off ffn-fold refit; do upgrade "default --ablate $m" "ablate-$m" --ablate "$m"; done
    upgrade "default, a0 and v0 at -3" off-bias-3 --off-bias=-3
    EXTRA=--no-fresh
elif [ "${SHORT:-0}" = 1 ]; then   # paper and the default, against the source model
    upgrade "paper" paper --recipe paper
    upgrade "preserve (default)" default
    EXTRA=--no-fresh
else
    upgrade "paper" paper --recipe paper
    upgrade "preserve, stand-in" preserve-standin --no-calibrate
    upgrade "preserve (default)" default
fi
# one --start argument per line of $STARTS (names hold spaces, never "=")
OLDIFS=$IFS; IFS='
'
for s in $STARTS; do set -- "$@" --start "$s"; done
IFS=$OLDIFS
nice -n 10 "$PYTHON" scripts/train/upgrade_experiment.py --v6 "$V6" --out "$OUT" --steps "$STEPS" --lr "$LR" \
    --jobs "$JOBS" $EXTRA "$@"
echo "upgrade-training: outputs in $OUT"
