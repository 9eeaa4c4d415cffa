#!/usr/bin/env bash
# Every file in fixtures/bad/ must be refused by `rwkv-convert inspect` with a one-line error that
# names the file, exit status 2, within 10 s and without a crash. Expected messages are checked
# by the Swift tests; this checks the program as a user runs it.
set -uo pipefail
bin=${1:-.build/debug/rwkv-convert}
cd "$(dirname "$0")/.."
shopt -s nullglob
fail=0; n=0
for f in fixtures/bad/*; do
    case "$f" in *.md|*.json) continue ;; esac
    n=$((n + 1))
    err=$(timeout 10 "$bin" inspect "$f" 2>&1 >/dev/null); code=$?
    lines=$(printf '%s\n' "$err" | grep -c .)
    if [ "$code" -ne 2 ] || [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -qF "$f"; then
        echo "FAIL $f: exit $code, $lines line(s): $err"; fail=1
    fi
done
[ "$n" -ge 25 ] || { echo "check-bad-files: only $n files in fixtures/bad (expected at least 25)"; fail=1; }
echo "check-bad-files: $n files, $([ $fail = 0 ] && echo 'all refused cleanly' || echo 'FAILURES')"
exit $fail
