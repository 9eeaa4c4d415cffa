#!/usr/bin/env python3
"""Checks every quantized matrix of a GGUF that rwkv-convert made from a .safetensors checkpoint
against ggml's own quantizer: the source values are quantized again with ggml_quantize_chunk (from
scripts/build-ggml.sh's .ggml/libggml-quants.so, or --lib, e.g. the libggml-base.so that
llama-cpp-python ships) and the bytes must be identical. Also checks that gguf-py reads the file.

    scripts/build-ggml.sh
    .venv/bin/python scripts/check-kquants.py MODEL.safetensors OUT.gguf [--lib LIB]

Exit 0 when every quantized tensor matches, 1 otherwise. (Without an importance matrix: the
converter does not take one yet.)
"""
import argparse
import ctypes
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
from gguf import GGUFReader

ap = argparse.ArgumentParser()
ap.add_argument("source")
ap.add_argument("gguf")
ap.add_argument("--lib")
args = ap.parse_args()
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
lib = args.lib or subprocess.run([os.path.join(root, "scripts", "build-ggml.sh")], check=True,
                                 capture_output=True, text=True).stdout.split()[-1]
g = ctypes.CDLL(lib)
g.ggml_quantize_chunk.restype = ctypes.c_size_t
g.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                  ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
g.ggml_row_size.restype = ctypes.c_size_t
g.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
g.ggml_is_quantized.restype = ctypes.c_bool
g.ggml_is_quantized.argtypes = [ctypes.c_int]

with open(args.source, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    base = 8 + n


def source(name):
    m = header[name]
    a, b = m["data_offsets"]
    with open(args.source, "rb") as f:
        f.seek(base + a)
        raw = f.read(b - a)
    if m["dtype"] == "BF16":
        x = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif m["dtype"] == "F16":
        x = np.frombuffer(raw, np.float16).astype(np.float32)
    else:
        x = np.frombuffer(raw, np.float32)
    return np.ascontiguousarray(x.reshape(m["shape"]))


NAMES = {"token_embd": "emb", "output": "head"}
PARTS = {"time_mix_receptance": "att.receptance", "time_mix_key": "att.key", "time_mix_value": "att.value",
         "time_mix_gate": "att.gate", "time_mix_output": "att.output", "channel_mix_key": "ffn.key",
         "channel_mix_value": "ffn.value", "channel_mix_receptance": "ffn.receptance"}


def source_name(gguf_name):
    stem = gguf_name[:-len(".weight")]
    if stem in NAMES:
        return NAMES[stem] + ".weight"
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    return f"blocks.{m.group(1)}.{PARTS[m.group(2)]}.weight"


reader = GGUFReader(args.gguf)
checked = bad = 0
for t in reader.tensors:
    qtype = int(t.tensor_type)
    if not g.ggml_is_quantized(qtype):
        continue
    x = source(source_name(t.name))
    rows, n = x.shape
    out = np.zeros(g.ggml_row_size(qtype, n) * rows, np.uint8)
    g.ggml_quantize_chunk(qtype, x.ctypes.data, out.ctypes.data, 0, rows, n, None)
    same = np.array_equal(np.ascontiguousarray(t.data).view(np.uint8).reshape(-1), out)
    checked += 1
    bad += not same
    print(f"{t.name:36s} {t.tensor_type.name:7s} {rows} x {n}: {'identical' if same else 'DIFFERENT'}")
print(f"{checked} quantized tensors, {bad} differ from ggml ({lib})")
sys.exit(1 if bad or not checked else 0)
