#!/usr/bin/env bash
# rwkv-upgrade v6-to-v7 at the widths people hold (Finch 1.6B: C = 2048; 7B and 14B: C = 4096):
# seconds per block and peak RSS of the default recipe (preserve, calibrated on the built-in
# text) and of `--recipe paper`, the baseline measured in the same run, on random RWKV-6 models
# of 2 and 8 blocks; the ratio default/paper; and where the default's time goes (the --json
# report's stage seconds; "rest" is reading, copying and writing).
#
#   bench/bench-upgrade.sh                 (make bench runs it; needs `make build` and the venv)
#   SIZES="2x2048 8x2048 2x4096 8x4096" bench/bench-upgrade.sh     (the default: the first three)
#   THREADS=1 bench/bench-upgrade.sh       (--threads; default: OpenBLAS's choice)
#
# The models are made by scripts/upgrade-synthetic-v6.py (torch, so the venv: make venv) into
# bench/out/ (git-ignored; 2 x 2048 is 224 MB, 8 x 4096 3.4 GB); their values are random, so
# this measures time and memory, not quality (docs/upgrade.md measures quality on trained models).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/rwkv-upgrade
OUT=bench/out
VENV=${VENV:-.venv}
SIZES=${SIZES:-"2x2048 8x2048 2x4096"}
THREADS_FLAG=${THREADS:+--threads $THREADS}
[ -x "$BIN" ] || { echo "bench-upgrade: $BIN is missing; run 'make build' first"; exit 1; }
[ -x "$VENV/bin/python" ] || { echo "bench-upgrade: skipped, the models are made with torch: run 'make venv' first"; exit 0; }
[ -x /usr/bin/time ] || { echo "bench-upgrade: needs GNU time (make setup)"; exit 1; }
mkdir -p "$OUT"
printf '%-8s %-8s %10s %10s %10s  %s\n' size recipe "s/block" "total s" "peak MB" "stages (s)"
for size in $SIZES; do
    layers=${size%x*} width=${size#*x}
    model=$OUT/rwkv6-synthetic-$size.pth
    [ -f "$model" ] || "$VENV/bin/python" scripts/upgrade-synthetic-v6.py "$model" "$layers" "$width" 256 >/dev/null
    paper_s=""
    for recipe in paper preserve; do
        /usr/bin/time -f '%e %M' -o "$OUT/time.txt" "$BIN" v6-to-v7 "$model" "$OUT/upgraded.pth" --recipe "$recipe" --json \
            $THREADS_FLAG > "$OUT/report.json"
        read -r secs kb < "$OUT/time.txt"
        stages=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); total = float(sys.argv[2]); st = r.get("stageSeconds", {})
rest = total - sum(st.values())
print(" ".join(f"{k} {v:.1f}" for k, v in sorted(st.items(), key=lambda kv: -kv[1])) + f" rest {rest:.1f}" if st else "")
' "$OUT/report.json" "$secs")
        per=$(python3 -c "print(f'{$secs / $layers:.1f}')")
        printf '%-8s %-8s %10s %10s %10s  %s\n' "$size" "$recipe" "$per" "$secs" "$((kb / 1024))" "$stages"
        [ "$recipe" = paper ] && paper_s=$secs
        rm -f "$OUT/upgraded.pth"
    done
    python3 -c "print(f'{\"$size\":8s} default / paper: {$secs / $paper_s:.1f}x the time')"
done
