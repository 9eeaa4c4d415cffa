#!/usr/bin/env python3
"""Continued training from RWKV-6 -> RWKV-7 upgrades, against a fresh RWKV-7 and the RWKV-6 itself.

    python scripts/train/upgrade_experiment.py --v6 V6.pth --start NAME=FILE.pth ... --out DIR
        [--steps 300] [--lr 5e-4] [--eval-at 0,25,50,...] [--jobs 2]

Called by scripts/upgrade-training.sh, which makes the upgraded files with rwkv-upgrade. Adds two
starts itself: "fresh RWKV-7" (init_model of the same shapes as the first upgraded file, seed 0)
and "RWKV-6 (control)" (the RWKV-6 file). Then:
  1. before training, on the first --kl-windows held-out windows, the official package's logits of
     the RWKV-6 and of every RWKV-7 start: mean KL(v6 || v7) per token (nats) and top-1 agreement;
  2. every start is trained by train.py with identical settings and the same batches in the same
     order (same --data-seed), held-out loss logged at --eval-at steps (a run whose log is already
     in DIR with the same start and settings is reused, so an interrupted experiment resumes);
  3. DIR/results.json, DIR/curves.png (held-out loss against tokens) and DIR/table.md: KL, top-1,
     loss at the logged steps, and the tokens each start needs to come within 1 % and 5 % of the
     RWKV-6's own held-out loss (its step-0 value), "not reached" if it does not in the budget;
     and how far a0 (iclr bias) and v0 (value-residual bias) moved in training.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import official  # noqa: E402
import rwkv_torch  # noqa: E402
import train  # noqa: E402

CONTROL = "RWKV-6 (control)"
FRESH = "fresh RWKV-7"


def kl_top1(p_logits, q_logits):
    lp, lq = F.log_softmax(p_logits.double(), -1), F.log_softmax(q_logits.double(), -1)
    kl = float((lp.exp() * (lp - lq)).sum(-1).mean())
    top1 = float((p_logits.argmax(-1) == q_logits.argmax(-1)).double().mean())
    return kl, top1


def within(curve, target, frac):
    for e in curve:
        if e["heldout_loss"] <= target * (1 + frac):
            return e["tokens"]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--v6", required=True)
    ap.add_argument("--start", action="append", default=[], help="NAME=FILE.pth, an upgraded RWKV-7")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lr-final", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--eval-at", default="0,10,25,50,75,100,150,200,250,300")
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--kl-windows", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2, help="trainings run at once (one thread each)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    data = train.load_corpus(os.path.join(ROOT, ".corpus"))
    starts = dict(s.split("=", 1) for s in args.start)
    # the fresh RWKV-7: the trainer's init with the upgraded files' shapes
    first = torch.load(next(iter(starts.values())), map_location="cpu", weights_only=True)
    arch, cfg = rwkv_torch.config_from_state_dict(first)
    fresh = os.path.join(args.out, "fresh.pth")
    rwkv_torch.save_pth(rwkv_torch.init_model("v7", cfg, seed=0), fresh)
    starts[FRESH] = fresh
    starts[CONTROL] = args.v6

    # 1. KL and top-1 before training, official package on both sides
    wins = train.heldout_windows(data["heldout"], args.ctx, args.eval_windows)[:args.kl_windows]
    ref = official.logits(args.v6, wins[:, :-1])
    results = {"settings": vars(args), "config_v7": cfg, "starts": {}}
    for name, path in starts.items():
        if name == CONTROL:
            continue
        kl, top1 = kl_top1(ref, official.logits(path, wins[:, :-1]))
        results["starts"][name] = {"file": path, "kl_v6_v7": kl, "top1": top1}
        print(f"{name}: KL(v6||v7) {kl:.4f}  top-1 {top1:.3f}", flush=True)
    results["starts"][CONTROL] = {"file": args.v6, "kl_v6_v7": 0.0, "top1": 1.0}

    # 2. identical continued training, --jobs at a time (separate processes, one thread each)
    procs = []
    names = list(starts)
    for i, name in enumerate(names):
        out = os.path.join(args.out, f"run{i}.pth")
        done = os.path.splitext(out)[0] + ".log.json"
        if os.path.exists(done):  # a finished run of the same start and settings is reused (resume)
            with open(done) as fh:
                prev = json.load(fh)["args"]
            if (prev["init"], prev["steps"], prev["lr"], prev["batch"], prev["ctx"], prev["eval_at"]) == \
                    (starts[name], args.steps, args.lr, args.batch, args.ctx, args.eval_at):
                print(f"{name}: reusing {done}", flush=True)
                procs.append((name, out, subprocess.Popen(["true"])))
                continue
        cmd = [sys.executable, os.path.join(HERE, "train.py"), "--init", starts[name], "--steps", str(args.steps),
               "--lr", str(args.lr), "--lr-final", str(args.lr_final), "--warmup", str(args.warmup),
               "--batch", str(args.batch), "--ctx", str(args.ctx), "--eval-every", str(10 ** 9),
               "--eval-at", args.eval_at, "--eval-windows", str(args.eval_windows), "--final-eval-windows",
               str(args.eval_windows), "--data-seed", "1", "--threads", "1", "--out", out]
        log = open(os.path.join(args.out, f"run{i}.out"), "w")
        procs.append((name, out, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        while sum(p.poll() is None for _, _, p in procs) >= args.jobs:
            procs[[p.poll() is None for _, _, p in procs].index(True)][2].wait()
    for name, out, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"training {name} failed: see {os.path.splitext(out)[0]}.out")
        with open(os.path.splitext(out)[0] + ".log.json") as fh:
            results["starts"][name]["curve"] = json.load(fh)["evals"]
        if name != CONTROL:  # do the switched-off mechanisms (iclr a0, value residual v0) move?
            a = torch.load(starts[name], map_location="cpu", weights_only=True)
            b = torch.load(out, map_location="cpu", weights_only=True)
            move = {}
            for key in ("a0", "v0"):
                ks = [k for k in a if k.endswith("att." + key) and not k.startswith("blocks.0.att.v")]
                move[key] = {"mean_before": float(torch.stack([a[k].float().mean() for k in ks]).mean()),
                             "mean_after": float(torch.stack([b[k].float().mean() for k in ks]).mean()),
                             "mean_abs_change": float(torch.stack([(b[k].float() - a[k].float()).abs().mean()
                                                                   for k in ks]).mean())}
            results["starts"][name]["a0_v0"] = move

    # 3. summary
    target = results["starts"][CONTROL]["curve"][0]["heldout_loss"]
    results["rwkv6_heldout_loss"] = target
    for name, r in results["starts"].items():
        r["tokens_to_1pct"] = within(r["curve"], target, 0.01)
        r["tokens_to_5pct"] = within(r["curve"], target, 0.05)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    steps = [int(s) for s in args.eval_at.split(",")]
    tok = args.batch * args.ctx
    lines = ["| start | KL(v6‖v7) | top-1 | " + " | ".join(f"step {s}" for s in steps)
             + " | tokens to 5 % | tokens to 1 % |",
             "|---|---:|---:|" + "---:|" * len(steps) + "---:|---:|"]
    for name, r in results["starts"].items():
        by = {e["step"]: e["heldout_loss"] for e in r["curve"]}
        fmt = lambda t: f"{t:,}" if t is not None else "not reached"  # noqa: E731
        lines.append(f"| {name} | {r['kl_v6_v7']:.3f} | {r['top1']:.3f} | "
                     + " | ".join(f"{by[s]:.3f}" if s in by else "" for s in steps)
                     + f" | {fmt(r['tokens_to_5pct'])} | {fmt(r['tokens_to_1pct'])} |")
    lines.append(f"\nRWKV-6 held-out loss (target): {target:.4f} nats/byte; {tok:,} tokens per step.\n")
    lines.append("| start | a0 mean before → after (mean abs change) | v0 (layers ≥ 1) before → after (change) |")
    lines.append("|---|---|---|")
    for name, r in results["starts"].items():
        if "a0_v0" in r:
            m = r["a0_v0"]
            lines.append(f"| {name} | " + " | ".join(
                f"{m[k]['mean_before']:.3f} → {m[k]['mean_after']:.3f} ({m[k]['mean_abs_change']:.3f})"
                for k in ("a0", "v0")) + " |")
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for name, r in results["starts"].items():
        ax.plot([e["tokens"] for e in r["curve"]], [e["heldout_loss"] for e in r["curve"]], marker="o",
                markersize=3, label=name, linestyle="--" if name == CONTROL else "-")
    ax.axhline(target * 1.05, color="grey", linewidth=0.6, linestyle=":")
    ax.axhline(target * 1.01, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel("training tokens (bytes)")
    ax.set_ylabel("held-out loss (nats/byte)")
    ax.set_ylim(target * 0.95, min(max(max(e["heldout_loss"] for e in r["curve"]) for r in results["starts"].values()),
                                   target * 2.5))
    ax.set_title(f"Continued training, RWKV-6 L{cfg['n_layer']} C{cfg['n_embd']} upgraded to RWKV-7 "
                 f"(lr {args.lr:g}, batch {args.batch}x{args.ctx})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "curves.png"))


if __name__ == "__main__":
    main()
