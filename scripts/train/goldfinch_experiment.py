#!/usr/bin/env python3
"""Continued training after `rwkv-upgrade v6-to-goldfinch`: the preserve and goldfinch recipes against the RWKV-6.

    python scripts/train/goldfinch_experiment.py --v6 V6.pth --start preserve=P.pth --start goldfinch=G.pth --out DIR
        [--steps 200] [--lr 5e-4] [--eval-at 0,25,50,100,200] [--jobs 2] [--no-control] [--grad-steps 3]

Called by scripts/upgrade-goldfinch-training.sh, which makes the two files (NAME = the recipe). Every
model runs in torch: the GoldFinch by scripts/train/goldfinch_torch.py (scripts/train/parity_goldfinch.py:
the repository's logits to <= 4.6e-6 and its gradients), the RWKV-6 by rwkv_torch.py (parity.py: the
official package's). Steps:
  1. the layout of each file against the recipe (goldfinch_torch.upgrade_from_v6 is the Python
     statement of it): the repository's keys and shapes, layer kinds x060 x L_old + gold on top
     (n_layer = the smallest L with int(L·5/6) = L_old), the RWKV-6's tensors unchanged, the new
     deterministic tensors (token-shift ramps, LoRA first factors 0, LayerNorms 1/0) equal to the
     constructor formulas, random ones within their init's range (U(±0.01) LoRA second factors,
     torch's kaiming-uniform Linear weights |w| <= 1/sqrt(fan_in)), and preserve's zero GOLD
     att.output / ffn.value. A wrong key, shape or kind stops the experiment; value findings are
     reported (results.json "layout").
  2. before training, on --kl-windows held-out windows of --ctx bytes (each from a zero state): mean
     KL(RWKV-6 ‖ GoldFinch) per token, top-1 agreement, and both held-out losses;
  3. the gradient check on the preserve file: --grad-steps optimizer steps exactly as train.py takes them
     (same optimizer groups, learning-rate schedule, L2Wrap, clipping, and the same first batches);
     per step, which NEW parameters (GOLD blocks, w_kv_cache_a/b) have a nonzero gradient. Expected:
     step 1 exactly the zero output projections (GOLD att.output.weight, ffn.value.weight), every
     other new gradient exactly 0 (everything else reaches the loss only through them);
  4. every start (and the RWKV-6 itself as the control, unless --no-control) trained by train.py
     with identical settings — those of scripts/upgrade-training.sh's RWKV-6 -> RWKV-7 comparison:
     AdamW (0.9, 0.99), weight decay 0.1 on matrices, time_decay at 2x, clipping 1.0, L2Wrap, lr 5e-4
     -> 1e-5 cosine after 20 warm-up steps, batch 16 x 128, --data-seed 1 (the same batches in the
     same order), all parameters trainable; held-out loss (64 windows) at each --eval-at step and
     at the end on --final-eval-windows windows (default all 1583);
  5. DIR/results.json and DIR/table.md.
"""
import argparse
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import corpus  # noqa: E402
import parallel_runs  # noqa: E402
import goldfinch_torch  # noqa: E402
import rwkv_torch  # noqa: E402
import train  # noqa: E402

CONTROL = "RWKV-6 (control)"


# ---------------------------------------------------------------------------------------------
# 1. layout


def tensor_class(key):
    """How the recipe makes a NEW tensor: "zero-out" (preserve zeroes it), "uniform" (U(±0.01)),
    "linear" (torch's nn.Linear default), or "formula" (deterministic constructor value)."""
    if key.startswith("blocks.") and key.endswith(goldfinch_torch.NEW_ZERO_IN_PRESERVE):
        return "zero-out"
    leaf = key.split(".")[-1]
    if leaf.startswith("time_") and leaf.endswith("_w2"):
        return "uniform"
    if key.endswith(".weight") and ".ln" not in key:
        return "linear"
    return "formula"


def check_layout(path, sd6, recipe):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    ref = goldfinch_torch.upgrade_from_v6(sd6, recipe)
    res = {"file": path, "recipe": recipe, "tensors": len(sd), "errors": [], "findings": []}
    if set(sd) != set(ref):
        res["errors"].append(f"keys: missing {sorted(set(ref) - set(sd))[:6]}, extra {sorted(set(sd) - set(ref))[:6]}")
        return res
    res["repository_key_order"] = list(sd) == list(ref)
    if not res["repository_key_order"]:
        res["findings"].append("keys are not in the repository's state_dict order (torch does not mind)")
    bad = [k for k in sd if tuple(sd[k].shape) != tuple(ref[k].shape)]
    if bad:
        res["errors"].append(f"shapes differ: {bad[:6]}")
        return res
    cfg = goldfinch_torch.config_from_state_dict(sd)
    res["layer_kinds"] = ",".join(cfg["kinds"])
    res["n_layer"] = cfg["n_layer"]
    if cfg["kinds"] != goldfinch_torch.config_from_state_dict(ref)["kinds"]:
        res["errors"].append(f"layer kinds {cfg['kinds']}")
    res["dtypes"] = sorted({str(t.dtype).replace("torch.", "") for t in sd.values()})
    changed = [k for k in sd6 if not torch.equal(sd[k].float(), sd6[k].float())]
    res["rwkv6_tensors_changed"] = changed
    if changed:
        res["findings"].append(f"{len(changed)} RWKV-6 tensors changed: {changed[:4]}")
    new = [k for k in ref if k not in sd6]
    res["new_tensors"] = len(new)
    dev = {}
    for k in new:
        # the recipe's value rounded to the file's element type (rwkv-upgrade writes bf16 by default)
        t, r, cls = sd[k].float(), ref[k].to(sd[k].dtype).float(), tensor_class(k)
        slack = 1e-6 if sd[k].dtype == torch.float32 else 2 ** -8
        if cls == "zero-out":
            if recipe == "preserve":
                if t.abs().max() != 0:
                    res["findings"].append(f"{k}: not zero in preserve")
                continue
            cls = "linear"
        if cls == "formula":
            dev[k] = float((t - r).abs().max())
            continue
        bound = 0.01 if cls == "uniform" else 1 / math.sqrt(t.shape[1])      # Linear: U(±1/sqrt(fan_in))
        std_ratio = float(t.std()) / (bound / math.sqrt(3))       # U(±b) has std b/sqrt(3)
        if float(t.abs().max()) > bound * (1 + slack) or not 0.85 < std_ratio < 1.15:
            res["findings"].append(f"{k}: not like U(±{bound:.4g}) (max {float(t.abs().max()):.4g}, "
                                   f"std/expected {std_ratio:.3f})")
    res["formula_max_abs_diff"] = max(dev.values()) if dev else 0.0
    worst = [k for k, d in dev.items() if d > 1e-5]
    if worst:
        res["findings"].append(f"constructor values differ (> 1e-5) in {len(worst)} tensors, e.g. "
                               + ", ".join(f"{k} {dev[k]:.2e}" for k in worst[:4]))
    return res


# ---------------------------------------------------------------------------------------------
# 2. before training


@torch.no_grad()
def compare_before(model6, model, windows, batch=16):
    kl = top1 = l6 = lg = 0.0
    n = 0
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch]
        a, b = model6(w[:, :-1]).double(), model(w[:, :-1]).double()
        la, lb = F.log_softmax(a, -1), F.log_softmax(b, -1)
        kl += float((la.exp() * (la - lb)).sum(-1).sum())
        top1 += float((a.argmax(-1) == b.argmax(-1)).double().sum())
        tgt = w[:, 1:]
        l6 += float(F.nll_loss(la.reshape(-1, la.shape[-1]), tgt.reshape(-1), reduction="sum"))
        lg += float(F.nll_loss(lb.reshape(-1, lb.shape[-1]), tgt.reshape(-1), reduction="sum"))
        n += tgt.numel()
    return {"kl_v6_goldfinch": kl / n, "top1": top1 / n, "rwkv6_loss": l6 / n, "goldfinch_loss": lg / n, "tokens": n}


# ---------------------------------------------------------------------------------------------
# 3. gradient check


def gradient_check(path, sd6, data, args, steps):
    """train.py's first `steps` optimizer steps on this file; per step max |grad| of every new parameter."""
    torch.manual_seed(0)
    model = goldfinch_torch.load_pth(path)
    model.train()
    new = [n for n, _ in model.named_parameters() if n not in sd6]
    params = dict(model.named_parameters())
    targs = SimpleNamespace(lr=args.lr, lr_final=args.lr_final, warmup=args.warmup, schedule="cosine")
    opt = torch.optim.AdamW(train.param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    gen = torch.Generator().manual_seed(1)   # train.py --data-seed 1: the first batches of every run
    tr = data["train"]
    out = []
    for step in range(steps):
        ix = torch.randint(0, len(tr) - args.ctx - 1, (args.batch,), generator=gen)
        batch = torch.stack([tr[i:i + args.ctx + 1] for i in ix])
        lr = train.lr_at(step, max(0, step - args.warmup) / max(1, args.steps - args.warmup), targs)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        train.L2Wrap.apply(loss, logits).backward()
        g = {n: (float(params[n].grad.abs().max()) if params[n].grad is not None else 0.0) for n in new}
        out.append({"step": step + 1, "loss": loss.item(), "max_abs_grad": g})
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return new, out


def summarise_gradients(new, steps):
    """Which new parameters have a nonzero gradient at each step. The GOLD ln_k.bias is listed apart: its
    gradient is analytically 0 (a vector added to every key shifts each query's scores by a constant,
    which softmax ignores), so what it shows is fp32 rounding (compared with ln_k.weight's)."""
    zero_out = sorted(n for n in new if tensor_class(n) == "zero-out")
    res = {"new_parameters": len(new), "zero_output_projections": zero_out, "steps": []}
    for s in steps:
        g = s["max_abs_grad"]
        nonzero = sorted(n for n in new if g[n] > 0)
        lnk = {n: [g[n], g[n[:-len("bias")] + "weight"]] for n in new if n.endswith("att.ln_k.bias")}
        res["steps"].append({"step": s["step"], "loss": s["loss"], "nonzero": len(nonzero),
                             "zero": sorted(set(new) - set(nonzero)), "ln_k_bias_vs_weight": lnk, "max_abs_grad": g})
    st = res["steps"]
    res["step1_exactly_zero_output_projections"] = sorted(n for n in new if st[0]["max_abs_grad"][n] > 0) == zero_out
    res["all_new_nonzero_at_step"] = next((s["step"] for s in st if not s["zero"]), None)
    res["all_but_ln_k_bias_nonzero_at_step"] = next(
        (s["step"] for s in st if all(n.endswith("att.ln_k.bias") for n in s["zero"])), None)
    return res


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--v6", required=True, help="the RWKV-6 that was upgraded: the control and the KL reference")
    ap.add_argument("--start", action="append", default=[], help="RECIPE=FILE.pth (preserve, goldfinch)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lr-final", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--eval-at", default="0,25,50,100,200")
    ap.add_argument("--eval-windows", type=int, default=64, help="held-out windows at each --eval-at step")
    ap.add_argument("--final-eval-windows", type=int, default=100000, help="held-out windows at the end (default all)")
    ap.add_argument("--kl-windows", type=int, default=64)
    ap.add_argument("--grad-steps", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="trainings run at once (one thread each)")
    ap.add_argument("--no-control", action="store_true", help="do not train the RWKV-6 itself")
    args = ap.parse_args()
    args.eval_at = ",".join(s for s in args.eval_at.split(",") if int(s) <= args.steps)
    if str(args.steps) not in args.eval_at.split(","):
        args.eval_at += f",{args.steps}"
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    data = train.load_corpus(os.path.join(ROOT, ".corpus"))
    starts = dict(s.split("=", 1) for s in args.start)
    if not starts:
        raise SystemExit("goldfinch_experiment: no --start")
    sd6 = torch.load(args.v6, map_location="cpu", weights_only=True)
    model6 = rwkv_torch.load_pth(args.v6)
    model6.eval()
    results = {"settings": vars(args), "rwkv6": args.v6, "rwkv6_config": model6.cfg, "starts": {}}

    # 1 + 2
    wins = train.heldout_windows(data["heldout"], args.ctx, args.kl_windows)
    for name, path in starts.items():
        recipe = name if name in ("preserve", "goldfinch") else "goldfinch"
        lay = check_layout(path, sd6, recipe)
        if lay["errors"]:
            raise SystemExit(f"{name}: {path} is not the expected layout: {lay['errors']}")
        model = goldfinch_torch.load_pth(path)
        model.eval()
        before = compare_before(model6, model, wins)
        results["starts"][name] = {"file": path, "sha256": corpus.sha256(path), "layout": lay, "before": before}
        print(f"{name}: {lay['layer_kinds']}, {lay['tensors']} tensors ({lay['new_tensors']} new; "
              f"{'repository key order' if lay['repository_key_order'] else 'NOT the repository key order'}; "
              f"dtypes {lay['dtypes']}); constructor values max |Δ| {lay['formula_max_abs_diff']:.1e}; "
              f"findings: {lay['findings'] or 'none'}", flush=True)
        print(f"{name}: before training, {before['tokens']} held-out tokens: KL(v6‖goldfinch) {before['kl_v6_goldfinch']:.3e}, "
              f"top-1 {before['top1']:.4f}, loss {before['goldfinch_loss']:.4f} (RWKV-6 {before['rwkv6_loss']:.4f})", flush=True)

    # 3
    if "preserve" in starts and args.grad_steps:
        new, steps = gradient_check(starts["preserve"], sd6, data, args, args.grad_steps)
        gc = summarise_gradients(new, steps)
        results["gradient_check"] = gc
        for s in gc["steps"]:
            lnk = "; ".join(f"{n} {a:.1e} (ln_k.weight {b:.1e})" for n, (a, b) in s["ln_k_bias_vs_weight"].items())
            print(f"gradient check, preserve, step {s['step']}: {s['nonzero']}/{gc['new_parameters']} new parameters "
                  f"with a nonzero gradient; zero: {s['zero'] if len(s['zero']) <= 12 else len(s['zero'])}; "
                  f"max |grad| {lnk}", flush=True)
        print(f"gradient check: step 1 exactly the zero output projections: {gc['step1_exactly_zero_output_projections']}; "
              f"every new parameter nonzero from step {gc['all_new_nonzero_at_step']}", flush=True)

    # 4
    runs = dict(starts)
    if not args.no_control:
        runs[CONTROL] = args.v6
    settings = [args.steps, args.lr, args.lr_final, args.warmup, args.batch, args.ctx, args.eval_at,
                args.eval_windows, args.final_eval_windows]
    procs = parallel_runs.train_all(runs, args.out, args, settings,
                                    ["--eval-windows", str(args.eval_windows), "--final-eval-windows", str(args.final_eval_windows),
                                     "--dtype", "fp32"])
    steps = [int(s) for s in args.eval_at.split(",")]
    for name, out, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"training {name} failed: see {os.path.splitext(out)[0]}.out")
        with open(os.path.splitext(out)[0] + ".log.json") as fh:
            log = json.load(fh)
        r = results["starts"].setdefault(name, {"file": runs[name]})
        r["curve"] = {e["step"]: e["heldout_loss"] for e in log["evals"]}
        r["final_heldout_loss"] = log["final_heldout_loss"]
        r["final_heldout_windows"] = log["final_heldout_windows"]
        r["train_seconds"] = log["seconds"]
        r["params"] = log["params"]
        print(f"{name}: " + " ".join(f"{r['curve'][s]:.4f}" for s in steps) + f"; final {r['final_heldout_loss']:.4f}",
              flush=True)

    # 5
    nwin = len(train.heldout_windows(data["heldout"], args.ctx, args.final_eval_windows))
    target = train.evaluate(model6, train.heldout_windows(data["heldout"], args.ctx, args.final_eval_windows))
    results["rwkv6_heldout_loss"] = target
    results["rwkv6_heldout_windows"] = nwin
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    tok = args.batch * args.ctx
    lines = [f"| start | layers | params | KL(v6‖GF) before | top-1 | " + " | ".join(f"step {s}" for s in steps)
             + f" | final ({nwin} windows) | final − RWKV-6 |",
             "|---|---|---:|---:|---:|" + "---:|" * len(steps) + "---:|---:|"]
    for name, r in results["starts"].items():
        b = r.get("before")
        kinds = r["layout"]["layer_kinds"] if "layout" in r else ",".join(["x060"] * model6.cfg["n_layer"])
        lines.append(f"| {name} | {kinds} | {r['params']:,} | " + (f"{b['kl_v6_goldfinch']:.2e} | {b['top1']:.4f} | " if b else "0 | 1 | ")
                     + " | ".join(f"{r['curve'][s]:.4f}" for s in steps)
                     + f" | {r['final_heldout_loss']:.4f} | {r['final_heldout_loss'] - target:+.4f} |")
    lines.append(f"\nHeld-out loss in nats/byte: steps on {args.eval_windows} windows of {args.ctx} bytes, final on "
                 f"{nwin}; the RWKV-6's own before training: **{target:.4f}** ({nwin} windows). KL and top-1 on "
                 f"{args.kl_windows} windows. {args.steps} steps of {tok:,} tokens, lr {args.lr:g} → {args.lr_final:g} "
                 f"(cosine, {args.warmup} warm-up), the same batches for every start.")
    if "gradient_check" in results:
        gc = results["gradient_check"]
        lines.append(f"\nGradient check (preserve, {gc['new_parameters']} new parameters, train.py's optimizer steps):\n")
        lines.append("| step | loss | new parameters with nonzero gradient | zero gradient | max \\|grad\\| ln_k.bias / ln_k.weight |")
        lines.append("|---:|---:|---:|---|---|")
        for s in gc["steps"]:
            zero = ", ".join(s["zero"]) if len(s["zero"]) <= 12 else f"{len(s['zero'])}: all but the zero output projections"
            lnk = ", ".join(f"{a:.1e} / {b:.1e}" for a, b in s["ln_k_bias_vs_weight"].values())
            lines.append(f"| {s['step']} | {s['loss']:.4f} | {s['nonzero']} / {gc['new_parameters']} | {zero or '–'} | {lnk} |")
        lines.append(f"\nStep 1: exactly the zero output projections ({', '.join(gc['zero_output_projections'])}): "
                     f"**{gc['step1_exactly_zero_output_projections']}**; every new parameter nonzero from step "
                     f"**{gc['all_new_nonzero_at_step']}**. The LoRA second factors (time_maa_q_w2, time_maa_kv_w2, "
                     "time_key_w2, time_value_w2) and the lerps that only feed a LoRA (time_maa_x, time_maa_v_cache) "
                     "get a gradient only once their zero first factor has moved (step 2), i.e. at step 3, as in any "
                     "RWKV-6 trained from its init. ln_k.bias's gradient is analytically 0 (a vector added to every "
                     "key moves each query's scores by a constant; softmax ignores it): what it shows is fp32 rounding.")
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
