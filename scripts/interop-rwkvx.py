#!/usr/bin/env python3
"""Interop check for `rwkv-upgrade v7-to-x`: the RWKV-X package (rwkv-x==0.2.7,
fixtures/rwkvx-requirements.txt) loads what we write, the preserve recipe computes the RWKV-7
exactly, and its new blocks can learn.

    .venv/bin/python scripts/interop-rwkvx.py [--upgrade .build/debug/rwkv-upgrade] [RWKV7.pth]

For the RWKV-7 (default fixtures/models/rwkv7-trained-bf16.pth: trained, head size 64, which the
package requires) and each of --recipe preserve (1 and 3 attention blocks) and --recipe rwkv-x:
  1. `rwkv-upgrade v7-to-x IN OUT.pth` in a temporary folder;
  2. the package builds RWKV_X(OUT, 'cpu fp32', memory_keep_tokens=8): it loads the attention
     blocks with load_state_dict(strict=True) and reads every RWKV-7 tensor by name;
  3. its logits on fixtures/text/english.txt's first 64 bytes, as a 48-token prefill and 16
     decodes, against the official `rwkv` package's RWKV-7 (0.8.32, RWKV_V7_ON=1, fresh process)
     on IN: preserve must give mean KL <= 1e-9 and equal top-1 tokens; rwkv-x's KL is reported.
  4. preserve only: two Adam steps on the package's own modules (the RWKV-7 frozen, the attention
     blocks trainable, next-token cross-entropy on the same text): at step 1 exactly the zero
     output projections (att.output, ffn.value) have a nonzero gradient, at step 2 every
     parameter of every attention block has one.
Prints what was checked; exits 1 on any failure or if nothing was checked.
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "train"))
import official  # noqa: E402
MEMORY_TOKENS = 8
CALLS = [48] + [1] * 16


def text_tokens(n=64):
    with open(os.path.join(ROOT, "fixtures/text/english.txt"), "rb") as f:
        return list(f.read(n))


def package_model(path):
    from rwkv_x.model import RWKV_X, RWKV_X_Memory_Config
    with contextlib.redirect_stdout(io.StringIO()):
        return RWKV_X(path, "cpu fp32", RWKV_X_Memory_Config(memory_keep_tokens=MEMORY_TOKENS))


def package_logits(model, tokens):
    rows, state, start = [], None, 0
    for n in CALLS:
        chunk = tokens[start:start + n]
        out, state = model.forward(chunk, state, full_output=True) if n > 1 else model.forward(chunk, state)
        rows.append(out.float().view(n, -1))
        start += n
    return torch.cat(rows)


def kl(reference, model):
    p = F.log_softmax(reference.double(), -1)
    q = F.log_softmax(model.double(), -1)
    return (p.exp() * (p - q)).sum(-1)


def two_steps(model, tokens):
    """Adam on the attention blocks only, through the package's own prefill path with gradients on.
    Returns, per step, the names of parameters whose gradient is nonzero."""
    from rwkv_x.model import RWKVBlock
    for p in model.parameters():
        p.requires_grad_(False)
    params = {n: p for n, p in model.attn.named_parameters()}
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    C = model.config.n_embd
    seen = []
    for _ in range(2):
        opt.zero_grad()
        z = model.rwkv.z
        rwkv_state = []
        for _ in range(model.config.n_rwkv_layer):
            rwkv_state += [torch.zeros(C), torch.zeros(C // 64, 64, 64), torch.zeros(C)]
        attn_state = [{"k_cache": torch.zeros(1, 0, C), "v_cache": torch.zeros(1, 0, C), "ffn_x_prev": torch.zeros(C)}
                      for _ in range(model.config.n_attn_layer)]
        x = z["emb.weight"][tokens[:-1]]
        v_first = torch.empty_like(x)
        a = 0
        for block in model.get_block_exe_order():
            if isinstance(block, RWKVBlock):
                x, rwkv_state, v_first, _ = block.prefill(x, rwkv_state, v_first)
            else:
                x, attn_state[a] = block.prefill(x, attn_state[a])
                a += 1
        logits = F.layer_norm(x, (C,), weight=z["ln_out.weight"], bias=z["ln_out.bias"]) @ z["head.weight"]
        loss = F.cross_entropy(logits, torch.tensor(tokens[1:]))
        loss.backward()
        seen.append({n for n, p in params.items() if p.grad is not None and p.grad.abs().max() > 0})
        opt.step()
    return seen, set(params)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=os.path.join(ROOT, "fixtures/models/rwkv7-trained-bf16.pth"))
    ap.add_argument("--upgrade", default=os.path.join(ROOT, ".build/debug/rwkv-upgrade"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tokens = text_tokens()
    reference = official.logits(args.model, torch.tensor([tokens]))[0]
    failures, checked = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, blocks in [("preserve", 1), ("preserve", 3), ("rwkv-x", 1), ("rwkv-x", 3)]:
            out = os.path.join(tmp, f"x-{recipe}-{blocks}.pth")
            subprocess.run([args.upgrade, "v7-to-x", args.model, out, "--recipe", recipe, "--blocks", str(blocks)],
                           check=True, capture_output=True)
            model = package_model(out)   # strict load of the attention blocks, every RWKV-7 tensor by name
            logits = package_logits(model, tokens)
            d = kl(reference, logits)
            top1 = bool((reference.argmax(-1) == logits.argmax(-1)).all())
            line = f"{recipe:8s} blocks={blocks}: package loads it; KL(RWKV-7 || RWKV-X) mean {d.mean():.3e} max {d.max():.3e}, top-1 equal {top1}"
            if recipe == "preserve":
                ok = d.mean() <= 1e-9 and top1
                if not ok:
                    failures.append(line)
                seen, names = two_steps(model, tokens)
                zero_out = {n for n in names if n.endswith("att.output.weight") or n.endswith("ffn.value.weight")}
                step1_ok, step2_ok = seen[0] == zero_out, seen[1] == names
                line += f"; gradients: step 1 {len(seen[0])}/{len(names)} (the output projections: {step1_ok}), step 2 {len(seen[1])}/{len(names)}"
                if not (step1_ok and step2_ok):
                    failures.append(line + f" missing at step 2: {sorted(names - seen[1])}")
            print(line, flush=True)
            checked += 1
    if failures or checked == 0:
        print("FAILED:\n  " + "\n  ".join(failures) if failures else "nothing was checked")
        sys.exit(1)
    print(f"all {checked} RWKV-X checks passed")


if __name__ == "__main__":
    main()
