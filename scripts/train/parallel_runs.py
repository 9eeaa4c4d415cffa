"""Continued training of several starting checkpoints on the same batches, a few at a time.

Used by upgrade_experiment.py (RWKV-6 -> RWKV-7) and goldfinch_experiment.py (Finch -> GoldFinch).
Each start runs scripts/train/train.py --init START in its own process with one thread; a run whose
start file (by SHA-256) and settings match a finished earlier run in the same folder is reused, so
an interrupted experiment resumes and a changed start is trained again.
"""
import json
import os
import subprocess
import sys

import corpus

HERE = os.path.dirname(os.path.abspath(__file__))


def train_all(starts, out_dir, args, settings, extra=()):
    """starts: name -> .pth. Runs train.py with args' steps/lr/lr_final/warmup/batch/ctx/eval_at, at most
    args.jobs at once, plus `extra` arguments; returns [(name, out .pth, process)] in order."""
    procs = []
    for i, name in enumerate(starts):
        out = os.path.join(out_dir, f"run{i}.pth")
        done = os.path.splitext(out)[0] + ".log.json"
        stamp = {"init_sha256": corpus.sha256(starts[name]), "settings": settings}
        if os.path.exists(done) and os.path.exists(out + ".stamp.json"):
            with open(out + ".stamp.json") as fh:
                if json.load(fh) == stamp:
                    print(f"{name}: reusing {done}", flush=True)
                    procs.append((name, out, subprocess.Popen(["true"])))
                    continue
        with open(out + ".stamp.json", "w") as fh:
            json.dump(stamp, fh)
        cmd = [sys.executable, os.path.join(HERE, "train.py"), "--init", starts[name], "--steps", str(args.steps),
               "--lr", str(args.lr), "--lr-final", str(args.lr_final), "--warmup", str(args.warmup),
               "--batch", str(args.batch), "--ctx", str(args.ctx), "--eval-every", str(10 ** 9),
               "--eval-at", args.eval_at, "--data-seed", "1", "--threads", "1", "--out", out] + list(extra)
        log = open(os.path.join(out_dir, f"run{i}.out"), "w")
        print(f"{name}: training ({' '.join(cmd[1:])})", flush=True)
        procs.append((name, out, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                  env=dict(os.environ, OMP_NUM_THREADS="1"))))
        while sum(p.poll() is None for _, _, p in procs) >= args.jobs:
            procs[[p.poll() is None for _, _, p in procs].index(True)][2].wait()
    return procs
