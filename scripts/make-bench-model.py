#!/usr/bin/env python3
"""Write a benchmark RWKV-7 model of real shape with random weights.

    python3 scripts/make-bench-model.py OUT.safetensors [--pth OUT.pth] [--seed N] [--layers 12] [--embd 768] [--vocab 65536]

The shape is RWKV-7 World 0.1B (12 layers x 768, head 64, vocab 65536, FFN 3072, LoRA ranks
w 64 / a 64 / v 32 / g 128), stored bf16 like the official checkpoints. Values are random with the
magnitudes a trained model has (matrices with RMS ~ 1/sqrt(fan-in), LayerNorm weights ~ 1, lerps in [0, 1],
decay w0 in [-6, 0] ...), so no activation saturates or underflows and timings are representative.
It is a timing model: its logits mean nothing.

The .safetensors file needs only the Python standard library (so `make bench` can time our side
without the venv). `--pth` additionally writes the same tensors as a torch .pth for the official
`rwkv` package (the baseline), which needs torch: run it with the venv's python.
Deterministic: the same seed gives the same bytes.
"""
import argparse
import json
import math
import os
import random
import struct
import sys


def bf16_bytes(values):
    """Round-to-nearest-even float -> bf16 little-endian bytes (small vectors only)."""
    out = bytearray()
    for v in values:
        bits = struct.unpack("<I", struct.pack("<f", v))[0]
        bits += 0x7FFF + ((bits >> 16) & 1)
        out += struct.pack("<H", (bits >> 16) & 0xFFFF)
    return bytes(out)


def random_matrix(rng, count, std):
    """`count` bf16 values with random sign and magnitudes uniform in one octave whose RMS is
    within a factor sqrt(2) of `std`, made from random bytes at C speed: each value's sign and
    mantissa stay random, its exponent bits are overwritten with a fixed exponent."""
    data = bytearray(rng.randbytes(2 * count))
    # |x| = (1 + m) 2^k with m uniform in [0, 1) has RMS sqrt(7/3) 2^k.
    k = round(math.log2(std / math.sqrt(7 / 3))) + 127   # biased exponent
    high = bytes((b & 0x80) | (k >> 1) for b in range(256))          # sign | exponent bits 7..1
    low = bytes(((k & 1) << 7) | (b & 0x7F) for b in range(256))     # exponent bit 0 | mantissa
    data[1::2] = data[1::2].translate(high)
    data[0::2] = data[0::2].translate(low)
    return bytes(data)


def build(args):
    rng = random.Random(args.seed)
    L, C, V = args.layers, args.embd, args.vocab
    N = 64
    H = C // N
    F = 4 * C
    Dw, Da, Dv, Dg = 64, 64, 32, 128
    tensors = []   # (name, shape, bytes)

    def vec(name, shape, fn):
        n = 1
        for d in shape:
            n *= d
        tensors.append((name, shape, bf16_bytes(fn(i % C) for i in range(n))))

    def mat(name, shape, std):
        tensors.append((name, shape, random_matrix(rng, shape[0] * shape[1], std)))

    def ln(prefix):
        vec(prefix + ".weight", [C], lambda i: 1.0 + rng.gauss(0, 0.1))
        vec(prefix + ".bias", [C], lambda i: rng.gauss(0, 0.05))

    mat("emb.weight", [V, C], 0.5)
    for l in range(L):
        b, a, f = f"blocks.{l}.", f"blocks.{l}.att.", f"blocks.{l}.ffn."
        if l == 0:
            ln(b + "ln0")
        ln(b + "ln1")
        ln(b + "ln2")
        r10 = 1.0 - l / L
        for nm, p in [("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7), ("x_a", 0.9), ("x_g", 0.2)]:
            vec(a + nm, [1, 1, C], lambda i, p=p: 1.0 - (i / C) ** (p * r10))
        vec(a + "w0", [1, 1, C], lambda i: -6 + 6 * (i / (C - 1)) ** 1.5 + 0.5)
        vec(a + "a0", [1, 1, C], lambda i: rng.gauss(0, 0.3))
        vec(a + "v0", [1, 1, C], lambda i: 1.0 + rng.gauss(0, 0.3))
        vec(a + "k_k", [1, 1, C], lambda i: 0.85 + rng.gauss(0, 0.1))
        vec(a + "k_a", [1, 1, C], lambda i: 1.0 + rng.gauss(0, 0.1))
        mat(a + "w1", [C, Dw], 0.05)
        mat(a + "w2", [Dw, C], 0.1)
        mat(a + "a1", [C, Da], 0.05)
        mat(a + "a2", [Da, C], 0.1)
        mat(a + "v1", [C, Dv], 0.05)
        mat(a + "v2", [Dv, C], 0.1)
        mat(a + "g1", [C, Dg], 0.05)
        mat(a + "g2", [Dg, C], 0.1)
        vec(a + "r_k", [H, N], lambda i: rng.gauss(0, 0.3))
        for nm in ["receptance", "key", "value"]:
            mat(a + nm + ".weight", [C, C], C ** -0.5)
        mat(a + "output.weight", [C, C], 0.5 * C ** -0.5)
        vec(a + "ln_x.weight", [C], lambda i: 0.5 + rng.random() * 0.5)
        vec(a + "ln_x.bias", [C], lambda i: rng.gauss(0, 0.05))
        vec(f + "x_k", [1, 1, C], lambda i: 1.0 - (i / C) ** (r10 ** 4))
        mat(f + "key.weight", [F, C], C ** -0.5)
        mat(f + "value.weight", [C, F], 0.5 * F ** -0.5)
    ln("ln_out")
    mat("head.weight", [V, C], 2 * C ** -0.5)
    return tensors


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"note": "rwkv-tools benchmark model: random weights, real RWKV-7 0.1B shape"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(h)))
        out.write(h)
        for _, _, data in tensors:
            out.write(data)
    os.replace(tmp, path)


def write_pth(path, safetensors_path):
    import torch
    from safetensors.torch import load_file
    sd = load_file(safetensors_path)
    tmp = path + ".tmp"
    torch.save(sd, tmp)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--pth", help="also write the model as a torch .pth (needs torch)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--embd", type=int, default=768)
    p.add_argument("--vocab", type=int, default=65536)
    args = p.parse_args()
    if not os.path.exists(args.out):
        write_safetensors(args.out, build(args))
        print(f"wrote {args.out}", file=sys.stderr)
    if args.pth and not os.path.exists(args.pth):
        write_pth(args.pth, args.out)
        print(f"wrote {args.pth}", file=sys.stderr)


if __name__ == "__main__":
    main()
