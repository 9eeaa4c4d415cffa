#!/usr/bin/env python3
"""Writes a large bf16 RWKV-7-shaped checkpoint with torch.save, as BlinkDL's files are laid out
(a flat dict of bf16 tensors), for measuring the .pth reader on realistic sizes.

    .venv/bin/python scripts/make-big-checkpoint.py [--layers 12] [--embd 2048] [--vocab 65536] [OUT]

Default: 12 layers x 2048, vocab 65536 (half the layers of the 1.5B model), 1.7 GB, written to
/tmp/rwkv7-big-L12-D2048.pth. The values are random (uniform, small); only shapes matter here.
Then, for example:

    /usr/bin/time -v .build/release/rwkv-convert inspect /tmp/rwkv7-big-L12-D2048.pth
"""
import argparse
import os

import torch


def rwkv7_shapes(L, C, V, head=64):
    """Every tensor of an RWKV-7 checkpoint (docs/formats-reading.md, the tensor schema), LoRA ranks as in the 1.5B model."""
    H, F = C // head, 4 * C
    Dw, Da, Dv, Dg = 96, 96, 64, 256
    shapes = {"emb.weight": (V, C)}
    for i in range(L):
        b = f"blocks.{i}."
        if i == 0:
            shapes[b + "ln0.weight"] = (C,)
            shapes[b + "ln0.bias"] = (C,)
        for n in ["ln1", "ln2"]:
            shapes[b + n + ".weight"] = (C,)
            shapes[b + n + ".bias"] = (C,)
        for n in ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a"]:
            shapes[b + "att." + n] = (1, 1, C)
        for n, r in [("w", Dw), ("a", Da), ("v", Dv), ("g", Dg)]:
            shapes[b + f"att.{n}1"] = (C, r)
            shapes[b + f"att.{n}2"] = (r, C)
        shapes[b + "att.r_k"] = (H, head)
        for n in ["receptance", "key", "value", "output"]:
            shapes[b + f"att.{n}.weight"] = (C, C)
        shapes[b + "att.ln_x.weight"] = (C,)
        shapes[b + "att.ln_x.bias"] = (C,)
        shapes[b + "ffn.x_k"] = (1, 1, C)
        shapes[b + "ffn.key.weight"] = (F, C)
        shapes[b + "ffn.value.weight"] = (C, F)
    shapes["ln_out.weight"] = (C,)
    shapes["ln_out.bias"] = (C,)
    shapes["head.weight"] = (V, C)
    return shapes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--embd", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("out", nargs="?")
    a = ap.parse_args()
    out = a.out or f"/tmp/rwkv7-big-L{a.layers}-D{a.embd}.pth"
    torch.manual_seed(0)
    sd = {k: torch.empty(s, dtype=torch.bfloat16).uniform_(-0.02, 0.02) for k, s in rwkv7_shapes(a.layers, a.embd, a.vocab).items()}
    torch.save(sd, out)
    n = sum(t.numel() for t in sd.values())
    print(f"{out}: {len(sd)} tensors, {n / 1e6:.0f} M parameters, {os.path.getsize(out) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
