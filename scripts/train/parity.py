#!/usr/bin/env python3
"""The trainable torch RWKV (scripts/train/rwkv_torch.py) against the official `rwkv` package.

    python scripts/train/parity.py [MODEL.pth ...] [--tokens 84,104,...] [--tol 1e-4]

For each checkpoint (default: the committed fixtures fixtures/models/rwkv5.2-tiny-{fp32,bf16}.pth,
rwkv{6,7}-tiny-fp32.pth and, when present, the trained fixtures) the official package (rwkv==0.8.32,
cpu fp32, RNN mode, run by fixtures/official_logits.py in its own process; an RWKV-5.2 file must be
detected as 5.2) and our sequence-mode forward pass compute logits on the same tokens (a bf16 file
is upcast to fp32 first, for both); the largest absolute difference must be <= --tol (1e-4: fp32 rounding of two different summation orders over a few layers is
~5e-6 on these models; 1e-4 still catches any wrong formula, which moves logits by >= 4.6e-2, see
fixtures/README.md "Every tensor matters").
Also checked: the model's state_dict has exactly the file's keys, order and shapes, and a
save/load round trip through save_pth keeps every value (fp32). Exit 1 on any failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import rwkv_torch  # noqa: E402

DEFAULT_TEXT = "The café's RWKV-7 runs\nGeese swam across the lake at dawn — ½ miles."


def official_logits(arch, path, tokens):
    """Logits [T, V] from the official package (a fresh process: RWKV_V7_ON is read at import).
    An RWKV-5.2 file runs in the package's v4/v5/v6 class, which must detect version 5.2."""
    env = dict(os.environ, RWKV_JIT_ON="1", RWKV_CUDA_ON="0", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("RWKV_V7_ON", None)
    if arch == "v7":
        env["RWKV_V7_ON"] = "1"
    from safetensors.torch import load_file
    with tempfile.TemporaryDirectory() as td:
        if not path.endswith(".pth"):
            raise SystemExit(f"{path}: a .pth is needed")
        src = path
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if any(t.dtype != torch.float32 for t in sd.values()):
            # the same values in fp32: the official RWKV-6 loader would otherwise compute LN0(emb)
            # in the file's dtype (fixtures/README.md), and we compare fp32 computations
            src = os.path.join(td, "fp32.pth")
            torch.save({k: t.float() for k, t in sd.items()}, src)
        out = os.path.join(td, "logits.safetensors")
        extra = ["--version=5.2"] if arch == "v5" else []
        res = subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "official_logits.py"), arch, src, out,
                              ",".join(map(str, tokens))] + extra, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stdout[-2000:] + res.stderr[-2000:])
            raise SystemExit(f"{path}: the official package failed")
        return load_file(out)["logits"]


def check(path, tokens, tol):
    ok = True
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = rwkv_torch.load_pth(path)
    ours_sd = model.state_dict()
    if list(ours_sd) != list(sd):
        print(f"FAIL {path}: key order differs from the file's")
        ok = False
    bad = [k for k in sd if tuple(sd[k].shape) != tuple(ours_sd[k].shape)]
    if bad:
        print(f"FAIL {path}: shapes differ: {bad[:5]}")
        ok = False
    with torch.no_grad():
        ours = model(torch.tensor([tokens]))[0].float()
    ref = official_logits(model.arch, path, tokens)
    d = float((ours - ref).abs().max())
    print(f"{'ok  ' if d <= tol else 'FAIL'} {os.path.relpath(path, ROOT)}: {model.arch} L={model.cfg['n_layer']} "
          f"C={model.cfg['n_embd']} T={len(tokens)}: max|ours - official| = {d:.2e} (tol {tol:g}, "
          f"max|logit| {float(ref.abs().max()):.2f})")
    ok &= d <= tol
    with tempfile.TemporaryDirectory() as td:
        p2 = os.path.join(td, "x.pth")
        rwkv_torch.save_pth(model, p2, dtype=torch.float32)
        back = torch.load(p2, map_location="cpu", weights_only=True)
        same = list(back) == list(sd) and all(torch.equal(back[k], sd[k].float()) for k in sd)
        if not same:
            print(f"FAIL {path}: save_pth/load round trip changed the file's keys or values")
        ok &= same
    return ok, d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--tokens", default=None, help="comma-separated byte tokens (default: a 71-byte text)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--json", default=None, help="write the measured differences here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = args.models or [os.path.join(ROOT, "fixtures", "models", f) for f in
                             ("rwkv5.2-tiny-fp32.pth", "rwkv5.2-tiny-bf16.pth", "rwkv6-tiny-fp32.pth",
                              "rwkv7-tiny-fp32.pth", "rwkv6-trained-bf16.pth", "rwkv7-trained-bf16.pth")]
    models = [m for m in models if os.path.exists(m) or args.models]
    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else list(DEFAULT_TEXT.encode("utf-8"))
    results, all_ok = {}, True
    for m in models:
        ok, d = check(m, tokens, args.tol)
        results[os.path.basename(m)] = d
        all_ok &= ok
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    print("parity:", "all within tolerance" if all_ok else "FAILED")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
