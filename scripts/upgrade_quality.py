#!/usr/bin/env python3
"""How close is an upgraded RWKV-7 to the RWKV-6 it came from? (interop check, not part of make test)

    upgrade_quality.py report --v6 V6.pth --tokens HELDOUT.safetensors|FILE.txt \
        --model NAME=V7.pth [--model ...] [--fresh] [--json OUT.json]
    upgrade_quality.py logits {v6|v7} MODEL.pth OUT.safetensors TOKENS   (internal: one model, fresh process)
    upgrade_quality.py ablate --v6 V6.pth --tokens T --model NAME=V7.pth  (which mismatch costs what)

Logits come from the official `rwkv` package, cpu fp32, RNN mode (token by token): RWKV-6 with the
plain package, RWKV-7 with RWKV_V7_ON=1 loading our .pth (which also proves the official code loads
the file). Each model runs in its own process because RWKV_V7_ON switches the package's class at
import time. Reported per model over the token sequence:
    KL(v6 || v7)  mean over positions of sum_v p6 log(p6/p7)      (nats; 0 = identical predictions)
    top-1         fraction of positions where both models' argmax agree
    loss          mean negative log-likelihood of the next token (positions 0..T-2 predict 1..T-1)
Every .pth is also opened with torch.load(weights_only=True) and torch.load(mmap=True).
`ablate` runs the exact RWKV-6 forward pass (torch, fp64, as docs/verify.md states it) with one part at a time taken
from the upgraded RWKV-7 instead (its static lerps with its receptance/key/value, its gate, its
decay, its state order and bonus, its channel mix) and reports KL(v6 || that hybrid): how much each
remaining mismatch costs alone.
--fresh adds a freshly initialised RWKV-7 of the same shape (RWKV-LM's RWKV-7 trainer init as of
the paper) as the baseline an upgrade must beat.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import torch

torch.set_num_threads(1)
HERE = os.path.abspath(__file__)


# ---------------------------------------------------------------------------------------------
# one model's logits (runs in a fresh process)

def logits_main(arch, model_path, out_path, tokens_csv):
    tokens = [int(t) for t in tokens_csv.split(",")]
    if arch == "v7":
        assert os.environ.get("RWKV_V7_ON") == "1"
    from rwkv.model import RWKV  # import after the environment is set
    if arch == "v7":
        model = RWKV(model=model_path[:-4], strategy="cpu fp32")   # RWKV_x070 appends ".pth"
    else:
        model = RWKV(model=model_path, strategy="cpu fp32", verbose=False)
        assert model.version == 6.0, model.version
    rows, state = [], None
    for t in tokens:
        out, state = model.forward([t], state)
        rows.append(out.detach().float().clone())
    from safetensors.torch import save_file
    save_file({"logits": torch.stack(rows).contiguous()}, out_path)


def official_logits(arch, model_path, tokens):
    env = dict(os.environ, RWKV_JIT_ON="1", RWKV_CUDA_ON="0")
    env.pop("RWKV_V7_ON", None)
    if arch == "v7":
        env["RWKV_V7_ON"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.safetensors")
        r = subprocess.run([sys.executable, HERE, "logits", arch, model_path, out, ",".join(map(str, tokens))],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"official rwkv package failed on {model_path}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        from safetensors.torch import load_file
        return load_file(out)["logits"].double()


# ---------------------------------------------------------------------------------------------
# ablation: RWKV-6 with single parts replaced by the upgraded RWKV-7's

def hybrid_logits(w6, w7, tokens, use):
    import torch.nn.functional as F
    L = 1 + max(int(k.split(".")[1]) for k in w6 if k.startswith("blocks."))
    C = w6["emb.weight"].shape[1]
    H = w6["blocks.0.att.time_faaaa"].shape[0]
    N = C // H
    ln = lambda x, p: F.layer_norm(x, (C,), w6[p + ".weight"], w6[p + ".bias"], 1e-5)
    zeros = lambda *s: torch.zeros(*s, dtype=torch.float64)
    att_prev, ffn_prev, S = [zeros(C) for _ in range(L)], [zeros(C) for _ in range(L)], [zeros(H, N, N) for _ in range(L)]
    outs = []
    for t in tokens:
        x = ln(w6["emb.weight"][t], "blocks.0.ln0")
        for i in range(L):
            b, a, f = f"blocks.{i}.", f"blocks.{i}.att.", f"blocks.{i}.ffn."
            xx = ln(x, b + "ln1")
            sx = att_prev[i] - xx
            att_prev[i] = xx
            m = torch.tanh((xx + sx * w6[a + "time_maa_x"].flatten()) @ w6[a + "time_maa_w1"]).view(5, 1, -1)
            mw, mk, mv, mr, mg = torch.bmm(m, w6[a + "time_maa_w2"]).view(5, -1).unbind(0)
            if "lerp" in use:
                mix = lambda n, d: xx + sx * w7[a + "x_" + n].flatten()
            else:
                mix = lambda n, d: xx + sx * (w6[a + "time_maa_" + n].flatten() + d)
            # "lerp": RWKV-7's static lerps with the receptance/key/value that read them
            # (refitted by --calibrate); otherwise RWKV-6's LoRA lerps and matrices.
            proj = w7 if "lerp" in use else w6
            r = mix("r", mr) @ proj[a + "receptance.weight"].T
            k = mix("k", mk) @ proj[a + "key.weight"].T
            v = mix("v", mv) @ proj[a + "value.weight"].T
            if "gate" in use:
                g = torch.sigmoid((xx + sx * w7[a + "x_g"].flatten()) @ w7[a + "g1"]) @ w7[a + "g2"]
            else:
                g = F.silu(mix("g", mg) @ w6[a + "gate.weight"].T)
            if "decay" in use:
                z = w7[a + "w0"].flatten() + torch.tanh((xx + sx * w7[a + "x_w"].flatten()) @ w7[a + "w1"]) @ w7[a + "w2"]
                dec = torch.exp(-math.exp(-0.5) * torch.sigmoid(z))
            else:
                dec = torch.exp(-torch.exp(w6[a + "time_decay"].flatten() + torch.tanh(mix("w", mw) @ w6[a + "time_decay_w1"]) @ w6[a + "time_decay_w2"]))
            kv = k.view(H, N, 1) @ v.view(H, 1, N)
            lnx = lambda y: F.group_norm(y.view(1, C), H, w6[a + "ln_x.weight"], w6[a + "ln_x.bias"], 64e-5).flatten()
            if "state" in use:   # RWKV-7's order (decay, add, read) and its bonus r_k outside GroupNorm
                S[i] = kv + dec.view(H, N, 1) * S[i]
                y = lnx((r.view(H, 1, N) @ S[i]).flatten())
                y = y + ((r * k * w7[a + "r_k"].flatten()).view(H, N).sum(-1, keepdim=True) * v.view(H, N)).flatten()
            else:
                y = lnx((r.view(H, 1, N) @ (w6[a + "time_faaaa"].view(H, N, 1) * kv + S[i])).flatten())
                S[i] = kv + dec.view(H, N, 1) * S[i]
            x = x + (y * g) @ w6[a + "output.weight"].T
            xx = ln(x, b + "ln2")
            sx = ffn_prev[i] - xx
            ffn_prev[i] = xx
            if "channel mix" in use:
                x = x + (torch.relu((xx + sx * w7[f + "x_k"].flatten()) @ w7[f + "key.weight"].T) ** 2) @ w7[f + "value.weight"].T
            else:
                kk = torch.relu((xx + sx * w6[f + "time_maa_k"].flatten()) @ w6[f + "key.weight"].T) ** 2
                x = x + torch.sigmoid((xx + sx * w6[f + "time_maa_r"].flatten()) @ w6[f + "receptance.weight"].T) * (kk @ w6[f + "value.weight"].T)
        outs.append(ln(x, "ln_out") @ w6["head.weight"].T)
    return torch.stack(outs)


def ablate_main(args):
    tokens = read_tokens(args.tokens)
    load = lambda p: {k: v.double() for k, v in torch.load(p, map_location="cpu", weights_only=True).items()}
    w6 = load(args.v6)
    ref = hybrid_logits(w6, w6, tokens, set())
    parts = ["lerp", "gate", "decay", "state", "channel mix"]
    print(f"{'model'.ljust(22)}" + "".join(p.rjust(13) for p in parts) + "   (KL(v6 || v6 with one part from the RWKV-7), nats)")
    for name, path in (m.split("=", 1) for m in args.model):
        w7 = load(path)
        kls = [metrics(ref, hybrid_logits(w6, w7, tokens, {p}), tokens)["kl"] for p in parts]
        print(name.ljust(22) + "".join(f"{k:13.4f}" for k in kls))


# ---------------------------------------------------------------------------------------------
# a fresh RWKV-7 (RWKV-LM RWKV-v7/train_temp/src/model.py init at commit f8214aa, April 2025)

def fresh_rwkv7(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    C = shapes["emb.weight"][1]
    V = shapes["emb.weight"][0]
    L = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("blocks."))
    H, N = shapes["blocks.0.att.r_k"]

    def ortho(rows, cols, gain):
        a = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=torch.float64)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        q = q if rows >= cols else q.T
        return (q * gain).float()

    sd = {}
    ddd = torch.arange(C, dtype=torch.float64) / C
    for name, shape in shapes.items():
        parts = name.split(".")
        if name == "emb.weight":
            sd[name] = (torch.rand(shape, generator=g, dtype=torch.float64) * 2e-4 - 1e-4).float()
        elif name == "head.weight":
            sd[name] = ortho(*shape, 0.5 * math.sqrt(V / C) if V > C else 0.5)
        elif name.endswith("ln_x.weight"):
            sd[name] = torch.full(shape, ((1 + int(parts[1])) / L) ** 0.7)
        elif ".ln" in name or name.startswith("ln_out"):
            sd[name] = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
        else:
            i = int(parts[1])
            r1 = 1 - i / L
            leaf = ".".join(parts[2:])
            lerp = {"att.x_r": 0.2, "att.x_w": 0.9, "att.x_k": 0.9, "att.x_v": 0.4, "att.x_a": 0.9, "att.x_g": 0.2}
            if leaf in lerp:
                v = 1 - ddd ** (lerp[leaf] * r1)
                if leaf == "att.x_k":
                    v = 1 - (ddd ** (0.9 * r1) + 0.4 * i / (L - 1))
                if leaf == "att.x_v":
                    v = 1 - (ddd ** (0.4 * r1) + 0.6 * i / (L - 1))
                sd[name] = v.float().view(shape)
            elif leaf == "ffn.x_k":
                sd[name] = (1 - ddd ** (r1 ** 4)).float().view(shape)
            elif leaf == "att.w0":
                n = torch.arange(C, dtype=torch.float64)
                sd[name] = (-7 + 5 * (n / (C - 1)) ** (0.85 + (i / (L - 1)) ** 0.5) + 0.5).float().view(shape)
            elif leaf in ("att.w1", "att.a1", "att.v1", "att.g1", "att.output.weight", "ffn.value.weight", "att.a0", "att.r_k"):
                sd[name] = torch.zeros(shape)
            elif leaf in ("att.w2", "att.a2", "att.v2", "att.g2"):
                sd[name] = ortho(*shape, 0.1)
            elif leaf == "att.v0" or leaf == "att.k_a":
                sd[name] = torch.ones(shape)
            elif leaf == "att.k_k":
                sd[name] = torch.full(shape, 0.85)
            elif leaf == "att.key.weight":
                sd[name] = ortho(*shape, 0.1)
            elif leaf in ("att.receptance.weight", "att.value.weight", "ffn.key.weight"):
                sd[name] = ortho(*shape, 1.0)
            else:
                raise KeyError(name)
    return {k: v.to(torch.bfloat16) for k, v in sd.items()}


# ---------------------------------------------------------------------------------------------

def metrics(ref, out, tokens):
    lp6 = torch.log_softmax(ref, -1)
    lp7 = torch.log_softmax(out, -1)
    kl = (lp6.exp() * (lp6 - lp7)).sum(-1)
    top1 = (ref.argmax(-1) == out.argmax(-1)).double().mean().item()
    nxt = torch.tensor(tokens[1:])
    loss = -lp7[:-1].gather(1, nxt.view(-1, 1)).mean().item()
    return {"kl": kl.mean().item(), "kl_max": kl.max().item(), "top1": top1, "loss": loss}


def check_loads(path):
    """torch.load must accept the file the ways the trainer and the inference package open it."""
    a = torch.load(path, map_location="cpu", weights_only=True)
    b = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return {k: tuple(v.shape) for k, v in a.items()}, {str(v.dtype) for v in a.values()}


def read_tokens(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return [int(t) for t in load_file(path)["tokens"]]
    with open(path, "rb") as f:
        return list(f.read())   # byte vocabulary: token id == byte value


def report_main(args):
    tokens = read_tokens(args.tokens)
    ref = official_logits("v6", args.v6, tokens)
    rows = [{"model": "rwkv6 (reference)", **metrics(ref, ref, tokens)}]
    models = [m.split("=", 1) for m in args.model]
    tmp = tempfile.TemporaryDirectory()
    if args.fresh:
        shapes, _ = check_loads(models[0][1])
        path = os.path.join(tmp.name, "fresh.pth")
        torch.save(fresh_rwkv7(shapes), path)
        models.append(("fresh RWKV-7 init", path))
    for name, path in models:
        shapes, dtypes = check_loads(path)
        out = official_logits("v7", path, tokens)
        rows.append({"model": name, **metrics(ref, out, tokens), "tensors": len(shapes), "dtypes": sorted(dtypes)})
    width = max(len(r["model"]) for r in rows)
    print(f"{'model'.ljust(width)}  KL(v6||v7)  max KL   top-1   loss   ({len(tokens)} tokens)")
    for r in rows:
        print(f"{r['model'].ljust(width)}  {r['kl']:10.4f}  {r['kl_max']:7.3f}  {r['top1']:5.3f}  {r['loss']:6.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tokens": len(tokens), "rows": rows}, f, indent=1)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "logits":
        return logits_main(*sys.argv[2:6])
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("--v6", required=True)
    r.add_argument("--tokens", required=True)
    r.add_argument("--model", action="append", default=[], help="NAME=PATH.pth of an RWKV-7 to compare")
    r.add_argument("--fresh", action="store_true")
    r.add_argument("--json")
    a = sub.add_parser("ablate")
    a.add_argument("--v6", required=True)
    a.add_argument("--tokens", required=True)
    a.add_argument("--model", action="append", default=[])
    args = p.parse_args()
    if args.cmd == "ablate":
        ablate_main(args)
    else:
        report_main(args)


if __name__ == "__main__":
    main()
