#!/usr/bin/env python3
"""Interop check for `rwkv-upgrade v6-to-goldfinch`: the GoldFinch repository's own model code
loads what we write strictly and computes the Finch with the preserve recipe.

    .venv/bin/python scripts/interop-goldfinch.py GOLDFINCH_CHECKOUT [RWKV6.pth ...] [--upgrade .build/debug/rwkv-upgrade]

GOLDFINCH_CHECKOUT: an exported checkout of github.com/recursal/GoldFinch-paper (not part of this
repository; fixtures/make_goldfinch.py imports it the same way: its CUDA kernel replaced by a torch
loop, lightning stubbed). For each RWKV-6 (default fixtures/models/rwkv6-trained-bf16.pth and
rwkv6-tiny-fp32.pth) and each recipe (preserve, goldfinch):
  1. `rwkv-upgrade v6-to-goldfinch IN OUT.pth --recipe R` (fp32 for an fp32 input);
  2. the repository's Transformer, built as configs/goldfinch_upgrade.yaml builds it (tmix x060,
     tmix2 gold, inv_other_layer_ratio 6) for OUT's depth and width, takes OUT's state dict with
     load_state_dict(strict=True); its layer kinds must be the Finch's blocks then GOLD;
  3. its sequence-mode logits on 64 bytes of fixtures/text/english.txt against the same code run
     as a plain Finch on IN (the repository's Transformer with tmix x060 and no tmix2, strict load):
     preserve must agree to mean KL <= 1e-9 with equal top-1; goldfinch's KL is reported. Reported
     besides: KL against the official `rwkv` package's RWKV-6 (0.8.32, cpu fp32, fresh process) on
     IN (scripts/train/official.py, the file upcast to fp32).
  4. preserve only: three Adam steps on the repository's model (the Finch frozen, every new tensor
     trainable, next-token cross-entropy on the same text). The first backward reaches only the zero
     output projections (GOLD att.output, ffn.value); the second everything behind them except the
     second factors of LoRAs whose first factor is still zero and the lerps that only feed those
     LoRAs; the third, after two optimizer steps, every new tensor. Checked: nonzero gradients at the
     first backward are exactly the output projections, and at the third all new tensors.
Prints what was checked; exits 1 on any failure or if nothing was checked.
"""
import argparse
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
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "fixtures"))
os.environ.setdefault("RWKV_JIT_ON", "0")


def kl(reference, model):
    p = F.log_softmax(reference.double(), -1)
    q = F.log_softmax(model.double(), -1)
    return (p.exp() * (p - q)).sum(-1)


def gradient_steps(net, upgraded, tokens, finch, steps=3):
    """Adam on the tensors the upgrade added (the Finch's frozen); per backward, the names whose
    gradient is nonzero, and the set of new names."""
    new = {n for n in upgraded if n not in finch}
    params = dict(net.named_parameters())
    for n, p in params.items():
        p.requires_grad_(n in new)
    opt = torch.optim.Adam([params[n] for n in sorted(new)], lr=1e-3)
    x, y = torch.tensor([tokens[:-1]]), torch.tensor(tokens[1:])
    seen = []
    for _ in range(steps):
        opt.zero_grad()
        logits, _ = net(x, None)
        F.cross_entropy(logits[0].float(), y).backward()
        seen.append({n for n in new if params[n].grad is not None and params[n].grad.abs().max() > 0})
        opt.step()
    return seen, new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkout")
    ap.add_argument("models", nargs="*", default=[os.path.join(ROOT, "fixtures/models/rwkv6-trained-bf16.pth"),
                                                  os.path.join(ROOT, "fixtures/models/rwkv6-tiny-fp32.pth")])
    ap.add_argument("--upgrade", default=os.path.join(ROOT, ".build/debug/rwkv-upgrade"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import make_goldfinch as mg
    R = mg.load_repo(args.checkout)
    with open(os.path.join(ROOT, "fixtures/text/english.txt"), "rb") as f:
        tokens = list(f.read(64))
    failures, checked = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            package = official.logits(model, torch.tensor([tokens]))[0]
            fp32 = "fp32" in os.path.basename(model)
            finch = {k: v.float() for k, v in torch.load(model, weights_only=True).items()}
            pf = dict(config="Transformer_Config", tmix="x060", tmix2="", inv_other_layer_ratio=6,
                      n_layer=1 + max(int(k.split(".")[1]) for k in finch if k.startswith("blocks.")),
                      n_embd=finch["emb.weight"].shape[1], head_size=finch["blocks.0.att.time_faaaa"].shape[1],
                      vocab=finch["emb.weight"].shape[0], ctx_len=1024)
            plain = mg.make_model(R, pf)
            plain.load_state_dict(finch, strict=True)
            with torch.no_grad():
                reference = plain(torch.tensor([tokens]), None)[0][0].float()
            for recipe in ("preserve", "goldfinch"):
                out = os.path.join(tmp, f"{recipe}.pth")
                subprocess.run([args.upgrade, "v6-to-goldfinch", model, out, "--recipe", recipe]
                               + (["--dtype", "fp32"] if fp32 else []), check=True, capture_output=True)
                sd = torch.load(out, weights_only=True)
                L = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
                C = sd["emb.weight"].shape[1]
                N = sd["blocks.0.att.time_faaaa"].shape[1]
                p = dict(config="Transformer_Config", tmix="x060", tmix2="gold", inv_other_layer_ratio=6,
                         n_layer=L, n_embd=C, head_size=N, vocab=sd["emb.weight"].shape[0], ctx_len=1024)
                net = mg.make_model(R, p)
                missing = net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
                kinds = mg.layer_kinds(net)
                with torch.no_grad():
                    logits, _ = net(torch.tensor([tokens]), None)
                d = kl(reference, logits[0].float())
                top1 = bool((reference.argmax(-1) == logits[0].argmax(-1)).all())
                line = (f"{os.path.basename(model)} {recipe:9s}: strict load OK ({L} layers: {','.join(kinds)}); "
                        f"KL(Finch || GoldFinch) mean {d.mean():.3e} max {d.max():.3e}, top-1 equal {top1}; "
                        f"vs the rwkv package's Finch: mean {kl(package, logits[0].float()).mean():.3e}")
                ok = kinds[:-1].count("x060") >= 1 and kinds[-1] == "gold" and not missing.missing_keys and not missing.unexpected_keys
                if recipe == "preserve":
                    ok = ok and d.mean() <= 1e-9 and top1
                    seen, new = gradient_steps(net, sd, tokens, finch)
                    outputs = {n for n in new if n.endswith("att.output.weight") or n.endswith("ffn.value.weight")}
                    line += (f"; gradients: backward 1 {len(seen[0])}/{len(new)} (exactly the output projections: {seen[0] == outputs}), "
                             f"2: {len(seen[1])}/{len(new)}, 3: {len(seen[2])}/{len(new)}")
                    ok = ok and seen[0] == outputs and seen[2] == new
                if not ok:
                    failures.append(line)
                print(line, flush=True)
                checked += 1
    if failures or checked == 0:
        print("FAILED:\n  " + "\n  ".join(failures) if failures else "nothing was checked")
        sys.exit(1)
    print(f"all {checked} GoldFinch upgrade checks passed")


if __name__ == "__main__":
    main()
