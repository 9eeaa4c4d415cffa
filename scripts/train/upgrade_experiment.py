#!/usr/bin/env python3
"""Continued training from RWKV-6 -> RWKV-7 (or RWKV-5 -> RWKV-7) upgrades, against a fresh RWKV-7 and
the source model itself.

    python scripts/train/upgrade_experiment.py --v6 V6.pth --start NAME=FILE.pth ... --out DIR
        [--steps 300] [--lr 5e-4] [--eval-at 0,10,25,...] [--jobs 2] [--chunks 64] [--no-fresh]
    python scripts/train/upgrade_experiment.py --source V5.pth ...   (an RWKV-5.2 source; --v6 is the same option)

Called by scripts/upgrade-training.sh, which makes the upgraded files with rwkv-upgrade. Adds two
starts itself: "fresh RWKV-7" (init_model of the same shapes as the first upgraded file, seed 0;
left out with --no-fresh) and "RWKV-6 (control)" (the source file; "RWKV-5 (control)" when it is
an RWKV-5.2, trained as one by rwkv_torch's v5 model). Below "v6" stands for the source model;
results.json keeps the key names (kl_v6_v7, rwkv6_heldout_loss) whatever the source. Then:
  1. before training, every start against the RWKV-6 on the held-out text by `rwkv-verify --text
     --against` (llama-perplexity's chunks: --chunk 256, the second half of each chunk scored):
     mean KL(v6 || v7) per token and top-1 agreement; and, as a cross-check that the official
     package loads and runs each file, the same two numbers from the official `rwkv` package
     on 16 held-out windows of 128 bytes (results.json only);
  2. every start is trained by train.py with identical settings and the same batches in the same
     order (same --data-seed), a fp32 checkpoint saved at each --eval-at step (a run already in
     DIR from the same start file, by SHA-256, and the same settings is reused, so an interrupted
     experiment resumes);
  3. each saved checkpoint's held-out loss (mean NLL, nats/byte) by `rwkv-verify --text` on the
     same chunks, and the mean of a0 (in-context learning rate bias) and v0 (value-residual bias,
     blocks >= 1): do the switched-off mechanisms move?
  4. DIR/results.json, DIR/curves.png (held-out loss and a0/v0 against tokens) and DIR/table.md:
     KL, top-1, loss at the logged steps, and the tokens each start needs to come within 1 % and
     5 % of the RWKV-6's own held-out loss (its step-0 value), "not reached" if it does not in
     the budget.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import corpus  # noqa: E402
import parallel_runs  # noqa: E402
import official  # noqa: E402
import rwkv_torch  # noqa: E402
import train  # noqa: E402

FRESH = "fresh RWKV-7"
VERIFY = os.path.join(ROOT, ".build/release/rwkv-verify")
# One BLAS thread: trainings run beside the evaluations, and OpenBLAS's spinning threads slow a
# small model many times over on a busy machine.
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def kl_top1(p_logits, q_logits):
    lp, lq = F.log_softmax(p_logits.double(), -1), F.log_softmax(q_logits.double(), -1)
    kl = float((lp.exp() * (lp - lq)).sum(-1).mean())
    top1 = float((p_logits.argmax(-1) == q_logits.argmax(-1)).double().mean())
    return kl, top1


def verify(model, heldout, chunks, against=None):
    cmd = [VERIFY, model, "--text", heldout, "--chunk", "256", "--chunks", str(chunks), "--json"]
    if against:
        cmd += ["--against", against]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, env=ENV).stdout)


def switched_off_means(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if "blocks.0.att.a0" not in sd:
        return None
    out = {}
    for key in ("a0", "v0"):
        ks = [k for k in sd if k.endswith("att." + key) and not k.startswith("blocks.0.att.v")]
        out[key] = float(torch.stack([sd[k].float().mean() for k in ks]).mean())
    return out


def within(curve, target, frac):
    for e in curve:
        if e["heldout_loss"] <= target * (1 + frac):
            return e["tokens"]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--v6", "--source", dest="v6", required=True,
                    help="the RWKV-6 (or RWKV-5.2) that was upgraded: the control and the KL reference")
    ap.add_argument("--start", action="append", default=[], help="NAME=FILE.pth, an upgraded RWKV-7")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lr-final", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--eval-at", default="0,10,25,50,75,100,150,200,250,300")
    ap.add_argument("--eval-windows", type=int, default=64, help="train.py's own held-out windows (logged, not tabled)")
    ap.add_argument("--chunks", type=int, default=64, help="held-out chunks of 256 bytes for rwkv-verify")
    ap.add_argument("--kl-windows", type=int, default=16, help="windows for the official package's cross-check")
    ap.add_argument("--jobs", type=int, default=2, help="trainings run at once (one thread each)")
    ap.add_argument("--no-fresh", action="store_true", help="leave out the fresh RWKV-7 start")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    # logged steps past --steps are never reached (e.g. STEPS=200 with the default list): drop them
    args.eval_at = ",".join(s for s in args.eval_at.split(",") if int(s) <= args.steps)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    heldout = os.path.join(ROOT, ".corpus", "heldout.txt")
    data = train.load_corpus(os.path.join(ROOT, ".corpus"))
    starts = dict(s.split("=", 1) for s in args.start)
    src_arch, _ = rwkv_torch.config_from_state_dict(torch.load(args.v6, map_location="cpu", weights_only=True))
    src = {"v5": "RWKV-5", "v6": "RWKV-6"}[src_arch]
    CONTROL = f"{src} (control)"
    kl_name = f"KL({src_arch}‖v7)"
    first = torch.load(next(iter(starts.values())), map_location="cpu", weights_only=True)
    arch, cfg = rwkv_torch.config_from_state_dict(first)
    if not args.no_fresh:  # the trainer's init with the upgraded files' shapes
        fresh = os.path.join(args.out, "fresh.pth")
        rwkv_torch.save_pth(rwkv_torch.init_model("v7", cfg, seed=0), fresh)
        starts[FRESH] = fresh
    starts[CONTROL] = args.v6

    # 1. before training: rwkv-verify on the held-out chunks; the official package as a cross-check
    wins = train.heldout_windows(data["heldout"], args.ctx, args.eval_windows)[:args.kl_windows]
    ref = official.logits(args.v6, wins[:, :-1])
    results = {"settings": vars(args), "source_arch": src_arch, "config_v7": cfg, "starts": {}}
    for name, path in starts.items():
        r = {"file": path}
        if name != CONTROL:
            cmp = verify(path, heldout, args.chunks, against=args.v6)
            r.update(kl_v6_v7=cmp["meanKLD"], kl_uncertainty=cmp["meanKLDUncertainty"], top1=cmp["sameTop"])
            r["official_kl_v6_v7"], r["official_top1"] = kl_top1(ref, official.logits(path, wins[:, :-1]))
            print(f"{name}: KL({src_arch}||v7) {r['kl_v6_v7']:.4f} top-1 {r['top1']:.3f} (official package, "
                  f"{args.kl_windows} windows: {r['official_kl_v6_v7']:.4f} / {r['official_top1']:.3f})", flush=True)
        else:
            r.update(kl_v6_v7=0.0, kl_uncertainty=0.0, top1=1.0)
        results["starts"][name] = r

    # 2. identical continued training, --jobs at a time (separate processes, one thread each)
    settings = [args.steps, args.lr, args.lr_final, args.warmup, args.batch, args.ctx, args.eval_at]
    procs = parallel_runs.train_all(starts, args.out, args, settings,
                                    ["--save-at", args.eval_at, "--eval-windows", str(args.eval_windows),
                                     "--final-eval-windows", str(args.eval_windows)])
    steps = [int(s) for s in args.eval_at.split(",")]
    tok = args.batch * args.ctx
    for name, out, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"training {name} failed: see {os.path.splitext(out)[0]}.out")
        with open(os.path.splitext(out)[0] + ".log.json") as fh:
            torch_curve = {e["step"]: e["heldout_loss"] for e in json.load(fh)["evals"]}
        # 3. every saved checkpoint by rwkv-verify, and where a0 / v0 are
        curve = []
        for s in steps:
            ckpt = f"{os.path.splitext(out)[0]}-step{s}.pth"
            rep = verify(ckpt, heldout, args.chunks)
            curve.append({"step": s, "tokens": s * tok, "heldout_loss": rep["meanNLL"],
                          "torch_windows_loss": torch_curve.get(s), "switched_off": switched_off_means(ckpt)})
        results["starts"][name]["curve"] = curve
        print(f"{name}: " + " ".join(f"{e['heldout_loss']:.3f}" for e in curve), flush=True)

    # 4. summary
    target = results["starts"][CONTROL]["curve"][0]["heldout_loss"]
    results["rwkv6_heldout_loss"] = target
    for name, r in results["starts"].items():
        r["tokens_to_1pct"] = within(r["curve"], target, 0.01)
        r["tokens_to_5pct"] = within(r["curve"], target, 0.05)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    lines = [f"| start | {kl_name} | top-1 | " + " | ".join(f"step {s}" for s in steps)
             + " | tokens to 5 % | tokens to 1 % |",
             "|---|---:|---:|" + "---:|" * len(steps) + "---:|---:|"]
    fmt = lambda t: f"{t:,}" if t is not None else f"not in {steps[-1] * tok // 1000:,} K"  # noqa: E731
    for name, r in results["starts"].items():
        by = {e["step"]: e["heldout_loss"] for e in r["curve"]}
        lines.append(f"| {name} | {r['kl_v6_v7']:.3f} | {r['top1']:.3f} | "
                     + " | ".join(f"{by[s]:.3f}" if s in by else "" for s in steps)
                     + f" | {fmt(r['tokens_to_5pct'])} | {fmt(r['tokens_to_1pct'])} |")
    lines.append(f"\n{src} held-out loss (target): {target:.4f} nats/byte; {tok:,} tokens per step.\n")
    lines.append("| start | a0 mean at step 0 → " + str(steps[-1]) + " | v0 mean (blocks ≥ 1) at step 0 → " + str(steps[-1]) + " |")
    lines.append("|---|---|---|")
    for name, r in results["starts"].items():
        a, b = r["curve"][0]["switched_off"], r["curve"][-1]["switched_off"]
        if a:
            lines.append(f"| {name} | {a['a0']:.3f} → {b['a0']:.3f} | {a['v0']:.3f} → {b['v0']:.3f} |")
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    for name, r in results["starts"].items():
        xs = [e["tokens"] for e in r["curve"]]
        line, = ax.plot(xs, [e["heldout_loss"] for e in r["curve"]], marker="o", markersize=3, label=name,
                        linestyle="--" if name == CONTROL else "-")
        if r["curve"][0]["switched_off"] and name != FRESH:
            base = r["curve"][0]["switched_off"]
            bx.plot(xs, [e["switched_off"]["a0"] - base["a0"] for e in r["curve"]], color=line.get_color(), label=f"{name}: a0")
            bx.plot(xs, [e["switched_off"]["v0"] - base["v0"] for e in r["curve"]], color=line.get_color(), linestyle=":",
                    label=f"{name}: v0")
    ax.axhline(target * 1.05, color="grey", linewidth=0.6, linestyle=":")
    ax.axhline(target * 1.01, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel("training tokens (bytes)")
    ax.set_ylabel("held-out loss, rwkv-verify (nats/byte)")
    ax.set_ylim(target * 0.95, min(max(max(e["heldout_loss"] for e in r["curve"]) for r in results["starts"].values()),
                                   target * 2.0))
    ax.set_title(f"{args.title}{src} L{cfg['n_layer']} C{cfg['n_embd']} upgraded to RWKV-7, continued training "
                 f"(lr {args.lr:g}, batch {args.batch}x{args.ctx})", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    bx.set_xlabel("training tokens (bytes)")
    bx.set_ylabel("mean change since step 0")
    bx.set_title("switched-off mechanisms: a0 (solid), v0 (dotted)", fontsize=8)
    bx.legend(fontsize=6)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "curves.png"))


if __name__ == "__main__":
    main()
