#!/usr/bin/env python3
"""A random RWKV-6 of realistic width (official keys and shapes, bf16) for timing and measuring
rwkv-upgrade beyond the tiny fixture:  upgrade-synthetic-v6.py OUT.pth [LAYERS] [N_EMBD] [VOCAB]
(defaults 2, 2048, 256: a byte vocabulary, so --calibrate and the byte-token quality script apply)."""
import sys

import torch

L = int(sys.argv[2]) if len(sys.argv) > 2 else 2
C = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
V = int(sys.argv[4]) if len(sys.argv) > 4 else 256
N = 64
H, F, Dm, Dd = C // N, int(C * 3.5), 32, 64
g = torch.Generator().manual_seed(0)


def r(*shape, std=0.02):
    return torch.randn(*shape, generator=g) * std


def u(*shape):
    return torch.rand(*shape, generator=g)


sd = {"emb.weight": r(V, C, std=0.5)}
for i in range(L):
    b, a, f = f"blocks.{i}.", f"blocks.{i}.att.", f"blocks.{i}.ffn."
    norms = (["ln0"] if i == 0 else []) + ["ln1", "ln2"]
    for n in norms:
        sd[b + n + ".weight"], sd[b + n + ".bias"] = 1 + r(C, std=0.1), r(C, std=0.1)
    for n in "xwkvrg":
        sd[a + "time_maa_" + n] = u(1, 1, C)
    sd[a + "time_maa_w1"], sd[a + "time_maa_w2"] = r(C, 5 * Dm, std=0.1), r(5, Dm, C, std=0.1)
    sd[a + "time_decay"] = -6 + 5 * u(1, 1, C)
    sd[a + "time_decay_w1"], sd[a + "time_decay_w2"] = r(C, Dd, std=0.1), r(Dd, C, std=0.1)
    sd[a + "time_faaaa"] = r(H, N, std=0.3) + 0.5
    for n in ("receptance", "key", "value", "output", "gate"):
        sd[a + n + ".weight"] = r(C, C, std=C ** -0.5)
    sd[a + "ln_x.weight"], sd[a + "ln_x.bias"] = 1 + r(C, std=0.1), r(C, std=0.05)
    sd[f + "time_maa_k"], sd[f + "time_maa_r"] = u(1, 1, C), u(1, 1, C)
    sd[f + "key.weight"], sd[f + "receptance.weight"] = r(F, C, std=C ** -0.5), r(C, C, std=C ** -0.5)
    sd[f + "value.weight"] = r(C, F, std=F ** -0.5)
sd["ln_out.weight"], sd["ln_out.bias"] = 1 + r(C, std=0.1), r(C, std=0.1)
sd["head.weight"] = r(V, C, std=C ** -0.5)
torch.save({k: v.bfloat16() for k, v in sd.items()}, sys.argv[1])
