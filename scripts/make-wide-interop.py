#!/usr/bin/env python3
"""Models wide enough for llama.cpp's k-quants (rows of 256 values), for scripts/interop.sh.

The committed fixtures are 128 (RWKV-6/7) and 64 (RWKV-5) wide: every k-quant and iq4_nl matrix
of theirs falls back to a legacy type, so llama.cpp never runs a k-quant of ours on them. These
are the fixtures' builders (fixtures/generate.py, same init formulas and seeds) at n_embd 256,
written as bf16 safetensors, with the official package's logits of exactly those weights (cpu
fp32, the `.upcast` convention of the fixtures). Not committed: made at interop time.

    .venv/bin/python scripts/make-wide-interop.py OUT_DIR    # OUT_DIR/{rwkv7,rwkv6}-wide.safetensors + logits
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import generate  # noqa: E402


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    from safetensors.torch import save_file
    for arch, base, build in [("v7", generate.V7, generate.build_v7), ("v6", generate.V6, generate.build_v6)]:
        p = dict(base, n_embd=256, ffn=base["ffn"] * 2, name=base["name"].replace("tiny", "wide"))
        sd = {k: v.to(torch.bfloat16).contiguous() for k, v in build(p).items()}
        st = os.path.join(out, p["name"] + ".safetensors")
        save_file(sd, st, metadata={"format": "pt"})
        pth = os.path.join(out, p["name"] + "-upcast.pth")   # the same values in fp32, for the package
        torch.save({k: v.float() for k, v in sd.items()}, pth)
        r = generate.official(arch, pth, os.path.join(out, p["name"] + "-bf16.upcast.logits.safetensors"),
                              generate.TOKENS_MAIN, label=os.path.basename(st))
        os.remove(pth)
        print(f"{st}: {len(sd)} tensors, official logits max |rnn - seq| {r.get('max_abs_diff_rnn_vs_seq', 0):.2e}")


if __name__ == "__main__":
    main()
