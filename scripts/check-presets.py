#!/usr/bin/env python3
"""Interop check of our llama.cpp presets: for each model and preset, the file rwkv-convert
makes directly from the .pth must hold the same tensors (names, ggml types, shapes, bytes) as the
file llama.cpp's own `llama-quantize` makes from our f32 GGUF of the same .pth — with and,
given --imatrix, without an importance matrix (the same file passed to both).

    .venv/bin/python scripts/check-presets.py --llama-quantize PATH [--imatrix FILE] MODEL.pth...

llama-quantize comes from the llama.cpp vendored in llama-cpp-python 0.3.36
(scripts/build-llama-quantize.sh). Exits 1 on any difference. Reads files with gguf-py.
"""
import argparse
import os
import subprocess
import sys
import tempfile

from gguf import GGUFReader

PRESETS = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
           "IQ4_NL", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"]


def tensors(path):
    r = GGUFReader(path)
    return {t.name: (int(t.tensor_type), tuple(int(x) for x in t.shape), bytes(t.data.tobytes())) for t in r.tensors}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-quantize", required=True)
    ap.add_argument("--rwkv-convert", default=".build/debug/rwkv-convert")
    ap.add_argument("--imatrix", action="append", default=[], help="MODEL=IMATRIX, for that model")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    imatrix = dict(x.split("=", 1) for x in a.imatrix)
    failures = compared = 0
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models:
            base = os.path.basename(model).rsplit(".", 1)[0]
            f32 = os.path.join(tmp, base + "-f32.gguf")
            subprocess.run([a.rwkv_convert, "pth-to-native", model, f32, "--type", "f32"], check=True, capture_output=True)
            for preset in a.presets.split(","):
                for im in [None] + ([imatrix[model]] if model in imatrix else []):
                    ours, theirs = os.path.join(tmp, "ours.gguf"), os.path.join(tmp, "theirs.gguf")
                    extra = ["--imatrix", im] if im else []
                    subprocess.run([a.rwkv_convert, "pth-to-native", model, ours, "--type", preset] + extra,
                                   check=True, capture_output=True)
                    subprocess.run([a.llama_quantize] + extra + [f32, theirs, preset, "2"], check=True, capture_output=True)
                    o, t = tensors(ours), tensors(theirs)
                    bad = [n for n in t if n not in o or o[n] != t[n]] + [n for n in o if n not in t]
                    label = f"{base} {preset}{' imatrix' if im else ''}"
                    compared += 1
                    if bad:
                        failures += 1
                        n = bad[0]
                        why = "missing" if n not in o or n not in t else \
                            f"type {o[n][0]} vs {t[n][0]}" if o[n][0] != t[n][0] else \
                            f"shape {o[n][1]} vs {t[n][1]}" if o[n][1] != t[n][1] else "bytes differ"
                        print(f"DIFF {label}: {len(bad)} of {len(t)} tensors differ, e.g. {n} ({why})")
                    else:
                        types = sorted({v[0] for v in t.values()})
                        print(f"same {label}: {len(t)} tensors, ggml types {types}")
    print(f"presets: {compared} files compared with llama-quantize's, {failures} differ")
    sys.exit(1 if failures or compared == 0 else 0)


if __name__ == "__main__":
    main()
