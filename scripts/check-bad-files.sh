#!/usr/bin/env bash
# Every file in fixtures/bad/ run through all three programs as a user runs them:
#   inspect, the conversion for its format, rwkv-verify and rwkv-upgrade must each refuse it with
#   exit status 2 and exactly one line on stderr that names the file and holds no control
#   character, within the time limit, within the memory bound, leaving no file behind.
#   (Files named nonfinite-* have a good header: inspect may accept them; the others must not.)
# Memory bound (peak RSS, GNU time): inspect (text and --json), headers only, file size + 64 MB; the conversions,
#   rwkv-verify and rwkv-upgrade, which may also hold the model's weights as floats, 2 × file
#   size + 96 MB. Then the command-line layer: argument errors, an output that is a FIFO, a 255-byte output name, a file name that is not UTF-8, and Ctrl-C / Ctrl-\ cleanup.
# Expected messages are checked by the Swift tests; this checks the programs.
set -uo pipefail
bin=${1:-.build/debug}
[ -d "$bin" ] || bin=$(dirname "$bin")   # (older callers passed the rwkv-convert binary)
cd "$(dirname "$0")/.."
shopt -s nullglob
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "check-bad-files: needs GNU time at $TIME (make setup installs it)"; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail=0; n=0; runs=0; worst_ratio=""

# check LABEL FILE EXPECT_EXIT LIMIT_KB TIMEOUT -- command...
check() {
    local label=$1 file=$2 want=$3 limit_kb=$4 secs=$5; shift 6
    rm -rf "$scratch/out"; mkdir "$scratch/out"
    "$TIME" -f '%M' -o "$scratch/rss" timeout "$secs" "$@" >/dev/null 2>"$scratch/err"
    local code=$? rss; rss=$(tail -1 "$scratch/rss" 2>/dev/null); runs=$((runs + 1))
    local lines; lines=$(grep -c '' "$scratch/err")
    local problems=""
    if [ "$want" = any ]; then
        [ "$code" -eq 0 ] || [ "$code" -eq 2 ] || problems+=" exit $code;"
    elif [ "$code" -ne "$want" ]; then problems+=" exit $code (want $want);"; fi
    if [ "$code" -eq 2 ]; then
        [ "$lines" -eq 1 ] || problems+=" $lines stderr lines;"
        grep -qF -- "$file" "$scratch/err" || problems+=" file not named;"
        if LC_ALL=C tr -d '\n' < "$scratch/err" | LC_ALL=C grep -q '[[:cntrl:]]'; then problems+=" control characters on stderr;"; fi
    fi
    [ -n "$(ls -A "$scratch/out")" ] && problems+=" left behind: $(ls -A "$scratch/out" | tr '\n' ' ');"
    [[ "$rss" =~ ^[0-9]+$ ]] && [ "$rss" -gt "$limit_kb" ] && problems+=" peak RSS ${rss} KB > ${limit_kb} KB;"
    if [ -n "$problems" ]; then
        echo "FAIL $label $file:$problems $(head -c 300 "$scratch/err" | cat -v)"; fail=1
    fi
}

# All four programs on one bad file.
check_file() {
    local f=$1
    n=$((n + 1))
    size_kb=0; [ -f "$f" ] && size_kb=$(( $(stat -c %s "$f") / 1024 ))
    header_kb=$((size_kb + 64 * 1024)); model_kb=$((2 * size_kb + 96 * 1024))
    case "$(basename "$f")" in nonfinite-*) want_inspect=any ;; *) want_inspect=2 ;; esac
    case "$f" in *.safetensors) conv=safetensors-to-native ;; *) conv=pth-to-native ;; esac
    check inspect "$f" "$want_inspect" "$header_kb" 10 -- "$bin/rwkv-convert" inspect "$f"
    check "inspect --json" "$f" "$want_inspect" "$header_kb" 10 -- "$bin/rwkv-convert" inspect --json "$f"
    check "$conv" "$f" 2 "$model_kb" 30 -- "$bin/rwkv-convert" "$conv" "$f" "$scratch/out/o.gguf"
    check rwkv-verify "$f" 2 "$model_kb" 30 -- "$bin/rwkv-verify" "$f" --against "$f" --random 4
    check rwkv-upgrade "$f" 2 "$model_kb" 30 -- "$bin/rwkv-upgrade" v6-to-v7 "$f" "$scratch/out/o.pth"
}

for f in fixtures/bad/*; do
    case "$f" in *.md|*.json) continue ;; esac
    check_file "$f"
done
# Files too large to commit, written now by Python's standard library (fixtures/make_large_bad.py).
mkdir -p "$scratch/large"
python3 fixtures/make_large_bad.py "$scratch/large" || { echo "check-bad-files: fixtures/make_large_bad.py failed"; fail=1; }
for f in "$scratch"/large/*; do check_file "$f"; done
message=$("$bin/rwkv-convert" inspect "$scratch/large/st-json-int-array.safetensors" 2>&1 >/dev/null)
case "$message" in
    *"header is not valid JSON: an array holds more than 64 values"*) ;;
    *) echo "FAIL st-json-int-array.safetensors: not refused for its 4,000,000-value array: $message"; fail=1 ;;
esac
[ "$n" -ge 80 ] || { echo "check-bad-files: only $n files in fixtures/bad (expected at least 80)"; fail=1; }
# The counts README.md and fixtures/README.md state are the tree's (they drifted once).
committed=$(ls fixtures/bad | grep -cvE '\.(md|json)$'); large=$(ls "$scratch/large" | wc -l)
for doc in README.md fixtures/README.md; do
    stated=$(tr '\n' ' ' < "$doc" | grep -oE '[0-9]+ malformed or hostile inputs' | head -1 | cut -d' ' -f1)
    [ "$stated" = "$committed" ] || { echo "FAIL $doc says $stated malformed inputs, fixtures/bad holds $committed"; fail=1; }
done
stated=$(tr '\n' ' ' < README.md | grep -oE 'and [0-9]+ too large to commit' | head -1 | cut -d' ' -f2)
[ "$stated" = "$large" ] || { echo "FAIL README.md says $stated generated inputs, make_large_bad.py writes $large"; fail=1; }

# The command-line layer (issue 9, classes 6, 7, 8).
model=fixtures/models/rwkv7-tiny.safetensors
expect() {   # expect LABEL WANT_EXIT -- command...: exit status and, for 2, one clean line
    local label=$1 want=$2; shift 3
    "$@" >/dev/null 2>"$scratch/err"; local code=$?
    local lines; lines=$(grep -c '' "$scratch/err")
    if [ "$code" -ne "$want" ] || { [ "$want" -eq 2 ] && [ "$lines" -ne 1 ]; }; then
        echo "FAIL $label: exit $code (want $want), $lines stderr line(s): $(head -c 300 "$scratch/err" | cat -v)"; fail=1
    fi
}
expect "--type q9_k" 2 -- "$bin/rwkv-convert" safetensors-to-native "$model" "$scratch/x.gguf" --type q9_k
expect "--threads 0" 2 -- "$bin/rwkv-convert" safetensors-to-native "$model" "$scratch/x.gguf" --threads 0
expect "--recipe x" 2 -- "$bin/rwkv-upgrade" v6-to-v7 "$model" "$scratch/x.pth" --recipe x
v6=fixtures/models/rwkv6-tiny-bf16.pth
expect "--calibrate with --no-calibrate" 2 -- "$bin/rwkv-upgrade" v6-to-v7 "$v6" "$scratch/x.pth" --calibrate README.md --no-calibrate
expect "rwkv-upgrade --ablate (experiments only)" 2 -- "$bin/rwkv-upgrade" v6-to-v7 "$v6" "$scratch/x.pth" --ablate decay
# An option that does not apply to the mode is an error, not silently ignored.
for opt in "--tolerance 0.5" "--mode-tolerance 1" "--mode rnn"; do
    expect "rwkv-verify --text with $opt" 2 -- "$bin/rwkv-verify" "$model" --text fixtures/text/english.txt $opt
done
for opt in "--chunk 64" "--chunks 2" "--vocab README.md"; do
    expect "rwkv-verify --against with $opt" 2 -- "$bin/rwkv-verify" "$model" --against "$model" $opt
done
expect "rwkv-upgrade --threads 0" 2 -- "$bin/rwkv-upgrade" v6-to-v7 "$v6" "$scratch/x.pth" --threads 0
expect "upgrade-lab --ablate x" 2 -- "$bin/upgrade-lab" "$v6" "$scratch/x.pth" --ablate x
expect "paper --calibrate" 2 -- "$bin/rwkv-upgrade" v6-to-v7 "$v6" "$scratch/x.pth" --recipe paper --calibrate README.md
expect "--no-calibrate" 0 -- "$bin/rwkv-upgrade" v6-to-v7 "$v6" "$scratch/x.pth" --no-calibrate
rm -f "$scratch/x.pth"
expect "rwkv-verify --bogus" 2 -- "$bin/rwkv-verify" "$model" --bogus
expect "--help" 0 -- "$bin/rwkv-convert" --help
# (Not /dev/null itself: a build with the bug, run as root, would replace the system's /dev/null.
# Tests/RWKVFormatsTests/OutputFileTests.swift checks it without ever committing an output.)
mkfifo "$scratch/fifo"
expect "output FIFO" 2 -- "$bin/rwkv-convert" safetensors-to-native "$model" "$scratch/fifo"
[ -p "$scratch/fifo" ] || { echo "FAIL the FIFO output was replaced"; fail=1; }
long="$scratch/$(printf 'n%.0s' $(seq 250)).gguf"
expect "255-byte output name" 0 -- "$bin/rwkv-convert" safetensors-to-native "$model" "$long"
latin1="$scratch/$(printf 'caf\xe9').safetensors"
cp "$model" "$latin1"
expect "non-UTF-8 input name" 0 -- "$bin/rwkv-convert" inspect "$latin1"
rm -f "$long" "$latin1" "$scratch/fifo" "$scratch/x.gguf"
# Ctrl-C and Ctrl-\ during an upgrade (the preserve recipe takes seconds): no temporary file left.
for sig in INT QUIT; do
    mkdir -p "$scratch/sig"
    "$bin/rwkv-upgrade" v6-to-v7 fixtures/models/rwkv6-tiny-bf16.pth "$scratch/sig/up.pth" --recipe preserve >/dev/null 2>&1 &
    pid=$!; sleep 1; kill -s "$sig" "$pid"; wait "$pid" 2>/dev/null; code=$?
    left=$(ls -A "$scratch/sig")
    if [ "$code" -lt 128 ] || [ -n "$left" ]; then echo "FAIL SIG$sig: exit $code, left behind: $left"; fail=1; fi
    rm -rf "$scratch/sig"
done

# SIGKILL mid-write (no handler can run) of an upgrade and of a conversion: the output is an
# unnamed O_TMPFILE until complete, so nothing is left. Killed once the process holds a file open
# in the output folder.
for prog in upgrade convert; do
    mkdir -p "$scratch/kill"
    if [ $prog = upgrade ]; then
        "$bin/rwkv-upgrade" v6-to-v7 fixtures/models/rwkv6-tiny-bf16.pth "$scratch/kill/up.pth" --recipe preserve >/dev/null 2>&1 &
    else   # a 2 x 4096 RWKV-7 of zeros (the tiny fixture's tensor list widened; sparse, 800 MB) to q8_0
        "$bin/rwkv-convert" inspect --json fixtures/models/rwkv7-tiny.safetensors > "$scratch/tiny.json"
        python3 - "$scratch/tiny.json" "$scratch/wide.safetensors" <<'PY'
import json, struct, sys
tensors, offset, header = json.load(open(sys.argv[1]))["tensors"], 0, {}
wide = {128: 4096, 512: 16384}
for t in tensors:
    shape = [64 if t["shape"] == [2, 64] and i == 0 else wide.get(d, d) for i, d in enumerate(t["shape"])]
    n = 2
    for d in shape: n *= d
    header[t["name"]] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
    offset += n
h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h); f.truncate(8 + len(h) + offset)
PY
        "$bin/rwkv-convert" to-gguf "$scratch/wide.safetensors" "$scratch/kill/wide.gguf" --type q8_0 >/dev/null 2>&1 &
    fi
    pid=$!; seen=""
    for _ in $(seq 200); do
        for fd in /proc/$pid/fd/*; do
            case "$(readlink "$fd" 2>/dev/null)" in "$scratch/kill/"*) seen=$(readlink "$fd"); break 2 ;; esac
        done
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    left=$(ls -A "$scratch/kill")
    if [ -z "$seen" ]; then echo "FAIL SIGKILL ($prog): the output was never seen open"; fail=1
    elif [ -n "$left" ]; then echo "FAIL SIGKILL ($prog) while writing $seen: left behind: $left"; fail=1
    else echo "SIGKILL ($prog) while writing $seen: nothing left"; fi
    rm -rf "$scratch/kill" "$scratch/wide.safetensors"
done

echo "check-bad-files: $n files, $runs runs, $([ $fail = 0 ] && echo 'all refused cleanly within the memory bound' || echo 'FAILURES')"
exit $fail
