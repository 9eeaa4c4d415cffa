#!/usr/bin/env python3
"""Train a small byte-level RWKV-5.2, RWKV-6 or RWKV-7 on the prepared corpus (scripts/train/corpus.py), on CPU.

    nice -n 10 python scripts/train/train.py --arch v6 --layers 3 --embd 128 --minutes 20 --out M.pth
    python scripts/train/train.py --init START.pth --steps 300 ...   # continue training a checkpoint
                                                                     # (RWKV-5.2/6/7, or a GoldFinch: goldfinch_torch.py)

Optimiser as RWKV-LM's trainers set it up: Adam(W) betas (0.9, 0.99), weight decay only on the
matrices (".weight" with >= 2 dimensions), att.w0 (RWKV-7) / att.time_decay (RWKV-5.2, RWKV-6) at 2x the
learning rate, gradient clipping at 1.0, the L2Wrap logit penalty (1e-4); learning rate: linear
warm-up, then cosine from --lr to --lr-final over the budget: --steps (reproducible), or --minutes
of wall-clock time (the cosine follows elapsed time, so a busy machine gives fewer steps, not a
longer run; the log records the steps taken). Batches: random windows of the training text drawn
from a generator seeded with --data-seed, so every run with the same seed, batch size and context
sees the same batches in the same order. Held-out loss: mean cross-entropy (nats/byte) over
--eval-windows fixed windows of the held-out text (each window starts from a zero state).
Writes the model (bf16 .pth unless --dtype fp32) and a JSON log next to it.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import goldfinch_torch  # noqa: E402
import rwkv_torch  # noqa: E402


class L2Wrap(torch.autograd.Function):
    """RWKV-LM's L2Wrap: the loss is unchanged; the largest logit per position gets an extra
    gradient 1e-4 / (B*T) * logit, which keeps logits from drifting large."""

    @staticmethod
    def forward(ctx, loss, y):
        ctx.save_for_backward(y)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        y = ctx.saved_tensors[0]
        factor = 1e-4 / (y.shape[0] * y.shape[1])
        maxx, ids = torch.max(y, -1, keepdim=True)
        gy = torch.zeros_like(y).scatter_(-1, ids, maxx * factor)
        return grad_output, grad_output * gy


def load_checkpoint(path):
    """An RWKV-5.2/6/7 (rwkv_torch) or a GoldFinch (goldfinch_torch: Finch-C2 / GOLD layers), told by its keys."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if goldfinch_torch.is_goldfinch(sd):
        return goldfinch_torch.load_state_dict(sd)
    return rwkv_torch.load_pth(path)


def load_corpus(corpus_dir):
    out = {}
    for name in ("train", "heldout"):
        path = os.path.join(corpus_dir, f"{name}.txt")
        if not os.path.exists(path):
            raise SystemExit(f"train: {path} missing: run scripts/train/corpus.py first")
        with open(path, "rb") as fh:
            out[name] = torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8).long()
    return out


def heldout_windows(held, ctx, n):
    """n windows of ctx+1 bytes, evenly spaced over the held-out text (fixed for every run)."""
    n = min(n, (len(held) - 1) // ctx)
    step = (len(held) - ctx - 1) // max(1, n - 1) if n > 1 else 0
    return torch.stack([held[i * step: i * step + ctx + 1] for i in range(n)])


@torch.no_grad()
def evaluate(model, windows, batch=16):
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch]
        logits = model(w[:, :-1])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum"))
        count += w[:, 1:].numel()
    model.train()
    return total / count


def unigram_loss(train, held):
    """Cross-entropy of the held-out bytes under the training bytes' frequencies (add-one smoothing)."""
    counts = torch.bincount(train, minlength=256).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[held].mean())


def param_groups(model, weight_decay):
    fast = "att.w0" if model.arch == "v7" else "att.time_decay"
    g1, g2, gd = [], [], []
    for n, p in model.named_parameters():
        if n.endswith(fast):
            g2.append(p)
        elif p.squeeze().dim() >= 2 and weight_decay > 0 and ".weight" in n:
            gd.append(p)
        else:
            g1.append(p)
    groups = [{"params": g1, "weight_decay": 0.0, "lr_scale": 1.0},
              {"params": g2, "weight_decay": 0.0, "lr_scale": 2.0}]
    if gd:
        groups.append({"params": gd, "weight_decay": weight_decay, "lr_scale": 1.0})
    return groups


def lr_at(step, progress, args):
    """progress in [0, 1]: the share of the step budget (or, with --minutes, of the time budget) used."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule == "constant":
        return args.lr
    p = min(1.0, progress)
    return args.lr_final + 0.5 * (args.lr - args.lr_final) * (1 + math.cos(math.pi * p))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["v5", "v6", "v7"])
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--init", default=None, help="start from this .pth (arch and shapes from the file)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, ".corpus"))
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-final", type=float, default=1e-4)
    ap.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None, help="step budget from the measured speed")
    ap.add_argument("--seed", type=int, default=0, help="initialisation seed")
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-at", default="", help="extra comma-separated steps to evaluate at")
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--final-eval-windows", type=int, default=None, help="default: all of the held-out text")
    ap.add_argument("--save-at", default="", help="comma-separated steps at which to also save OUT-stepN.pth (fp32)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_corpus(args.corpus)
    if args.init:
        model = load_checkpoint(args.init)
    else:
        if not args.arch:
            raise SystemExit("train: --arch or --init is needed")
        model = rwkv_torch.init_model(args.arch, rwkv_torch.default_config(args.arch, args.layers, args.embd), args.seed)
    model.train()
    windows = heldout_windows(data["heldout"], args.ctx, args.eval_windows)
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    gen = torch.Generator().manual_seed(args.data_seed)
    train = data["train"]
    eval_at = {int(s) for s in args.eval_at.split(",") if s}
    save_at = {int(s) for s in args.save_at.split(",") if s}

    def snapshot(step):
        if step in save_at:
            rwkv_torch.save_pth(model, f"{os.path.splitext(args.out)[0]}-step{step}.pth", dtype=torch.float32)
    log = {"args": vars(args), "arch": model.arch, "config": model.cfg,
           "params": sum(p.numel() for p in model.parameters()),
           "unigram_heldout_loss": unigram_loss(train, data["heldout"]), "evals": []}
    print(f"{model.arch} {model.cfg} params {log['params']:,}; unigram held-out loss "
          f"{log['unigram_heldout_loss']:.4f}", flush=True)

    def record(step, t0):
        loss = evaluate(model, windows)
        log["evals"].append({"step": step, "tokens": step * args.batch * args.ctx, "heldout_loss": loss,
                             "seconds": round(time.time() - t0, 1)})
        print(f"step {step:5d}  tokens {step * args.batch * args.ctx:9,d}  held-out {loss:.4f}  "
              f"{time.time() - t0:7.1f}s", flush=True)

    if bool(args.steps) == bool(args.minutes):
        raise SystemExit("train: give one of --steps and --minutes")
    total = args.steps or 10 ** 9
    t0 = time.time()
    record(0, t0)
    snapshot(0)
    t_train = time.time()  # the time budget counts training steps, not the first evaluation
    step = 0
    while step < total:
        if args.minutes:
            progress = (time.time() - t_train) / (args.minutes * 60)
            if progress >= 1:
                break
        else:
            progress = max(0, step - args.warmup) / max(1, total - args.warmup)
        ix = torch.randint(0, len(train) - args.ctx - 1, (args.batch,), generator=gen)
        batch = torch.stack([train[i:i + args.ctx + 1] for i in ix])
        lr = lr_at(step, progress, args)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        if not torch.isfinite(loss):
            raise SystemExit(f"train: loss is {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        L2Wrap.apply(loss, logits).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.eval_every == 0 or step in eval_at or step == total:
            record(step, t0)
        snapshot(step)
    if step % args.eval_every and step not in eval_at:
        record(step, t0)
    final_windows = heldout_windows(data["heldout"], args.ctx, args.final_eval_windows or 10 ** 9)
    log["final_heldout_loss"] = evaluate(model, final_windows)
    log["final_heldout_windows"] = len(final_windows)
    log["steps"] = step
    log["tokens"] = step * args.batch * args.ctx
    log["seconds"] = round(time.time() - t0, 1)
    print(f"final held-out loss {log['final_heldout_loss']:.4f} over {len(final_windows)} windows of "
          f"{args.ctx} (unigram {log['unigram_heldout_loss']:.4f})", flush=True)
    rwkv_torch.save_pth(model, args.out, dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    with open(os.path.splitext(args.out)[0] + ".log.json", "w") as fh:
        json.dump(log, fh, indent=1)
    return log


if __name__ == "__main__":
    main()
