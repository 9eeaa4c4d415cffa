#!/usr/bin/env python3
"""Interop check: the trainer-shaped torch models load our upgrades strictly, and the official
`rwkv` package runs them and agrees with them.

    .venv/bin/python scripts/interop-trainer.py [--upgrade .build/debug/rwkv-upgrade]

scripts/train/rwkv_torch.py is a trainable RWKV-5.2/6/7 with RWKV-LM's parameter names, shapes and
registration order (its logits equal the official package's: scripts/train/parity.py). For each
upgrade below, on the committed fixtures:
  1. `rwkv-upgrade ...` writes OUT.pth in a temporary folder;
  2. the torch model of OUT's architecture takes it with load_state_dict(strict=True) (every key,
     every shape, nothing extra);
  3. the official package (scripts/train/official.py: rwkv 0.8.32, cpu fp32, the file upcast to
     fp32, fresh process) runs OUT on 24 tokens, and its logits agree with the torch model's within
     1e-4.
Upgrades: v6-to-v7 with --recipe preserve (built-in calibration text) and paper, from the trained
3 × 128 RWKV-6; v5-to-v6 and v5-to-v7 from the RWKV-5.2 fixture. Besides, v6-to-goldfinch (both
recipes) loads strictly into the trainer-shaped GoldFinch (scripts/train/goldfinch_torch.py, equal
to the GoldFinch repository's code: parity_goldfinch.py), which then computes the Finch (preserve:
KL ≤ 1e-9 against the official package's RWKV-6). Prints one line per upgrade; exits 1 on any
failure or if nothing was checked.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "train"))
import official  # noqa: E402
import goldfinch_torch  # noqa: E402
import rwkv_torch  # noqa: E402

TOKENS = list("The café's RWKV-7 runs\n".encode("utf-8"))
UPGRADES = [
    ("v6-to-v7", "models/rwkv6-trained-bf16.pth", ["--recipe", "preserve"], "v7"),
    ("v6-to-v7", "models/rwkv6-trained-bf16.pth", ["--recipe", "paper"], "v7"),
    ("v5-to-v6", "models/rwkv5.2-tiny-bf16.pth", [], "v6"),
    ("v5-to-v7", "models/rwkv5.2-tiny-bf16.pth", ["--recipe", "paper"], "v7"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upgrade", default=os.path.join(ROOT, ".build/debug/rwkv-upgrade"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    failures, checked = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (command, source, options, arch) in enumerate(UPGRADES):
            out = os.path.join(tmp, f"{i}.pth")
            subprocess.run([args.upgrade, command, os.path.join(ROOT, "fixtures", source), out] + options,
                           check=True, capture_output=True)
            model = rwkv_torch.load_pth(out)   # strict: raises on any missing, extra or mis-shaped key
            assert model.arch == arch, (model.arch, arch)
            with torch.no_grad():
                ours = model(torch.tensor([TOKENS]))[0].float()
            theirs = official.logits(out, torch.tensor([TOKENS]))[0]
            diff = float((ours - theirs).abs().max())
            ok = diff <= 1e-4 and torch.isfinite(ours).all()
            line = (f"{command} {' '.join(options) or '(exact)':18s} {source}: trainer-shaped {arch} loads it strictly; "
                    f"official package runs it; max |Δlogit| {diff:.2e}")
            print(line, flush=True)
            if not ok:
                failures.append(line)
            checked += 1
        for recipe in ("preserve", "goldfinch"):
            source = os.path.join(ROOT, "fixtures/models/rwkv6-trained-bf16.pth")
            out = os.path.join(tmp, f"goldfinch-{recipe}.pth")
            subprocess.run([args.upgrade, "v6-to-goldfinch", source, out, "--recipe", recipe], check=True, capture_output=True)
            model = goldfinch_torch.load_pth(out)   # strict
            with torch.no_grad():
                ours = model(torch.tensor([TOKENS]))[0].float()
            finch = official.logits(source, torch.tensor([TOKENS]))[0]
            p, q = torch.log_softmax(finch.double(), -1), torch.log_softmax(ours.double(), -1)
            kl = float((p.exp() * (p - q)).sum(-1).mean())
            ok = torch.isfinite(ours).all() and (recipe != "preserve" or kl <= 1e-9)
            line = f"v6-to-goldfinch --recipe {recipe:9s}: trainer-shaped GoldFinch loads it strictly; KL(Finch || it) {kl:.2e}"
            print(line, flush=True)
            if not ok:
                failures.append(line)
            checked += 1
    if failures or checked == 0:
        print("FAILED:\n  " + "\n  ".join(failures) if failures else "nothing was checked")
        sys.exit(1)
    print(f"all {checked} trainer checks passed")


if __name__ == "__main__":
    main()
