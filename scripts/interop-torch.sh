#!/usr/bin/env bash
# Checks that .pth files written by TorchWriter load in torch exactly like the originals:
# torch.load(weights_only=True), torch.load(mmap=True), and torch's offset calculation that
# relies on miniz's exact layout (calculate_storage_offsets). Not part of `make test`: needs the
# venv (scripts/venv.sh or /work/main/.venv). With --big it also round-trips a >4 GB checkpoint
# made by torch.save (zip64 sizes and offsets; needs ~14 GB of free disk and ~10 GB of memory)
# and compares our file with torch's byte for byte, apart from the serialization id.
#
#   scripts/interop-torch.sh [--big]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
out=$(mktemp -d /tmp/rwkv-interop-torch.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$out"' EXIT

big=""
if [ "${1:-}" = "--big" ]; then
    big="$out/big-torch.pth"
    "$PY" - "$big" <<'EOF'
import collections, sys, torch
# 2.2 G bf16 elements (4.4 GB) in one storage: its size and the next record's offset pass 4 GB.
g = torch.Generator().manual_seed(3)
t = torch.empty(2_200_000_000, dtype=torch.bfloat16)
t[:1000] = torch.randn(1000, generator=g).to(torch.bfloat16)
t[-1000:] = torch.randn(1000, generator=g).to(torch.bfloat16)
# An OrderedDict, as TorchWriter writes, so the two files can be compared byte for byte.
torch.save(collections.OrderedDict(huge=t, after=torch.arange(5, dtype=torch.float32)), sys.argv[1])
EOF
fi

swift build --build-tests >/dev/null
# The Swift side writes the files (TorchInteropTests); its failure is a failure here too.
status=0
RWKV_INTEROP_DIR="$out" RWKV_INTEROP_BIG="$big" swift test --skip-build --filter TorchInteropTests > "$out/swift-test.log" 2>&1 || status=1
sed -nE '/^(✘|✔) (Test|Suite)|error/p' "$out/swift-test.log"   # a summary; the status is kept above
grep -qE "Test run with [1-9][0-9]* tests? .*passed" "$out/swift-test.log" || status=1   # none run is a failure
[ $status = 0 ] || { echo "interop-torch: TorchInteropTests failed (log above)"; exit 1; }

"$PY" - "$out" "$big" <<'EOF'
import os, sys, zipfile, collections
import torch
from torch.utils.serialization import config

out, big = sys.argv[1], sys.argv[2]
ok = True
checked = 0

def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.contiguous(), b)

for name in sorted(os.listdir(out)):
    if not name.endswith(".pth") or name.startswith("big-"):
        continue
    original = os.path.join("fixtures", name.replace("-", "/", 1))
    want = {k: v for k, v in torch.load(original, weights_only=True).items() if isinstance(v, torch.Tensor)}
    path = os.path.join(out, name)
    for label, kwargs in [("weights_only", {}), ("mmap", {"mmap": True})]:
        got = torch.load(path, weights_only=True, **kwargs)
        good = isinstance(got, collections.OrderedDict) and list(got) == list(want) and all(same(want[k], got[k]) for k in want)
        ok &= good
        checked += 1
        print(f"{'ok  ' if good else 'FAIL'} {name}: torch.load({label}) matches {original}")
    # torch's mmap loader can compute storage offsets itself, trusting miniz's exact layout.
    config.load.calculate_storage_offsets = True
    os.environ["TORCH_SERIALIZATION_DEBUG"] = "1"
    try:
        got = torch.load(path, weights_only=True, mmap=True)
        good = all(same(want[k], got[k]) for k in want)
    except Exception as e:
        good = False
        print("   ", e)
    finally:
        config.load.calculate_storage_offsets = False
        del os.environ["TORCH_SERIALIZATION_DEBUG"]
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} {name}: miniz offset calculation agrees")

def serialization_id_bytes(path):
    """Byte offsets torch fills differently: the serialization id and its two CRC-32 copies."""
    with zipfile.ZipFile(path) as z:
        info = [i for i in z.infolist() if i.filename.endswith(".data/serialization_id")][0]
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        f.seek(-65536, 2)
        tail_start = f.tell()
        tail = f.read()
    data = info.header_offset + 30 + name_len + extra_len
    central_crc = tail_start + tail.rindex(info.filename.encode()) - 46 + 16
    return set(range(data, data + 40)) | set(range(data + 44, data + 48)) | set(range(central_crc, central_crc + 4))

if big:
    import numpy as np
    ours = os.path.join(out, "big", os.path.basename(big))
    assert os.path.exists(ours) and os.path.abspath(ours) != os.path.abspath(big)
    good = os.path.getsize(big) == os.path.getsize(ours)
    differing = set()
    with open(big, "rb") as fa, open(ours, "rb") as fb:
        offset = 0
        while good:
            a, b = fa.read(64 << 20), fb.read(64 << 20)
            if not a:
                break
            if a != b:
                differing |= {offset + int(i) for i in np.nonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))[0]}
            offset += len(a)
    unexpected = sorted(differing - (serialization_id_bytes(big) | serialization_id_bytes(ours)))
    good = good and not unexpected
    ok &= good
    if unexpected:
        print("    bytes that differ:", unexpected[:20])
    print(f"{'ok  ' if good else 'FAIL'} big checkpoint ({os.path.getsize(big) / 1e9:.1f} GB, zip64): same bytes as torch.save apart from the serialization id")
    got = torch.load(ours, weights_only=True, mmap=True)
    want = torch.load(big, weights_only=True, mmap=True)
    good = all(same(want[k], got[k]) for k in want)
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} big checkpoint: torch.load(mmap=True) matches")

# Nothing written means nothing checked: a failure, not a pass.
if checked == 0:
    ok = False
    print("FAIL no .pth written by TorchInteropTests: nothing was checked")
print(f"interop-torch: {checked} loads checked,", "all passed" if ok else "FAILURES")
sys.exit(0 if ok else 1)
EOF
