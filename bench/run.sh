#!/usr/bin/env bash
# Runs every benchmark script (bench/bench-*.sh) against the release build; each prints
# measured numbers and ratios against a baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
for b in bench/bench-*.sh; do
    echo "== $b"
    "$b"
done
