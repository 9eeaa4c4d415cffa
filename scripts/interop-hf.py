#!/usr/bin/env python3
"""Interop check for `rwkv-convert to-hf`: transformers loads our RWKV-7 folder with the
rwkv7-hf model code (the package the fixtures' folders were made with) and its logits match the
official package's (fixtures/expected/rwkv7-tiny-bf16.logits.safetensors) on the same weights.

    .venv/bin/pip install -r fixtures/hf-requirements.txt
    .venv/bin/python scripts/interop-hf.py FOLDER [EXPECTED.safetensors]

Prints the max |Δlogit| and exits 1 above the tolerance (1e-3: the HF model runs the same fp32
maths in another order; measured below in docs/formats-reading.md).
"""
import sys

import torch
from safetensors.torch import load_file
from rwkv7_hf import RWKV7ForCausalLM

folder = sys.argv[1]
expected = load_file(sys.argv[2] if len(sys.argv) > 2 else "fixtures/expected/rwkv7-tiny-bf16.logits.safetensors")
model = RWKV7ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
tokens = expected["tokens"].long()
with torch.no_grad():
    logits = model(tokens[None]).logits[0].float()
diff = (logits - expected["logits"]).abs().max().item()
print(f"{folder}: transformers + rwkv7-hf loaded it; max |Δlogit| vs the official package {diff:.3g}")
sys.exit(0 if diff <= 1e-3 else 1)
