#!/usr/bin/env python3
"""Writes a real-shaped RWKV-7 checkpoint for the conversion benchmark: the shapes of the official
0.1B World model (12 layers x 768, head 64, vocab 65536, FFN 3072, LoRA ranks decay 64, iclr 64,
value-residual 32, gate 128), BlinkDL names, bf16, random values (about 380 MB). The weights are
noise: it measures speed and memory, not quality.

    .venv/bin/python scripts/make-bench-checkpoint.py bench/out/rwkv7-0.1b-bench   # writes .safetensors and .pth
    .venv/bin/python scripts/make-bench-checkpoint.py --world-tiny /tmp/x      # 1 x 64, vocab 65536 (16 MB):
                                                                              # for the World tokenizer interop check
"""
import sys

import torch
from safetensors.torch import save_file

L, C, N, V, F = 12, 768, 64, 65536, 3072
DW, DA, DV, DG = 64, 64, 32, 128
if "--world-tiny" in sys.argv:
    sys.argv.remove("--world-tiny")
    L, C, F, DW, DA, DV, DG = 1, 64, 256, 32, 32, 32, 32
H = C // N


def tensors():
    g = torch.Generator().manual_seed(2024)

    def r(*shape, scale=0.02):
        return (torch.randn(*shape, generator=g) * scale).to(torch.bfloat16)

    t = {"emb.weight": r(V, C)}
    for i in range(L):
        b = f"blocks.{i}."
        if i == 0:
            t[b + "ln0.weight"], t[b + "ln0.bias"] = r(C, scale=1.0), r(C)
        for n in ["ln1", "ln2"]:
            t[b + n + ".weight"], t[b + n + ".bias"] = r(C, scale=1.0), r(C)
        for n in ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a"]:
            t[b + "att." + n] = r(1, 1, C, scale=0.5)
        dv = DV
        for n, d in [("w", DW), ("a", DA), ("v", dv), ("g", DG)]:
            t[b + f"att.{n}1"], t[b + f"att.{n}2"] = r(C, d), r(d, C)
        t[b + "att.r_k"] = r(H, N)
        for n in ["receptance", "key", "value", "output"]:
            t[b + f"att.{n}.weight"] = r(C, C)
        t[b + "att.ln_x.weight"], t[b + "att.ln_x.bias"] = r(C, scale=1.0), r(C)
        t[b + "ffn.x_k"] = r(1, 1, C, scale=0.5)
        t[b + "ffn.key.weight"], t[b + "ffn.value.weight"] = r(F, C), r(C, F)
    t["ln_out.weight"], t["ln_out.bias"] = r(C, scale=1.0), r(C)
    t["head.weight"] = r(V, C)
    return t


if __name__ == "__main__":
    stem = sys.argv[1] if len(sys.argv) > 1 else "bench/out/rwkv7-0.1b-bench"
    t = tensors()
    save_file(t, stem + ".safetensors")
    torch.save(t, stem + ".pth")
    print(stem + ".safetensors", stem + ".pth", sum(v.numel() for v in t.values()), "parameters")
