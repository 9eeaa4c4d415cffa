#!/usr/bin/env python3
"""What each `preserve` mapping is worth on a trained RWKV-6 (docs/upgrade.md, "Ablations").

    python3 scripts/upgrade_ablation.py [V6.pth] [--out DIR] [--chunks 64]

Standard library only (no venv): the release builds of upgrade-lab (rwkv-upgrade with its experiment
settings) and rwkv-verify do the work.
Upgrades V6 (default fixtures/models/rwkv6-trained-bf16.pth) with `paper`, with `preserve` on the
Gaussian stand-in, on its built-in text (the default), on 16 KB of the training split, and with
the default minus one mapping at a time (`--ablate`), plus three alternatives (no gate
refinement, a0/v0 at -3 instead of -5, the decay-shift compensation on). Each RWKV-7 is compared with the RWKV-6 by
`rwkv-verify --text` on the held-out split (.corpus/heldout.txt, from scripts/train/corpus.py):
llama-perplexity's chunks (--chunk 256, second half of each scored), mean KL(v6 || v7) per token,
top-1 agreement, and ln(PPL v7 / PPL v6). Writes DIR/ablation.json and DIR/ablation.md.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VARIANTS = [
    ("paper", ["--recipe", "paper"]),
    ("preserve, Gaussian stand-in", ["--no-calibrate"]),
    ("preserve, built-in text (default)", []),
    ("preserve, 16 KB of the training split", ["--calibrate", "{train}"]),
    ("default − decay map", ["--ablate", "decay"]),
    ("default − bonus", ["--ablate", "bonus"]),
    ("default − gate fit", ["--ablate", "gate"]),
    ("default − FFN receptance fold", ["--ablate", "ffn-fold"]),
    ("default − iclr/value residual off", ["--ablate", "switched-off"]),
    ("default − token-shift LoRA mean", ["--ablate", "token-shift"]),
    ("default − projection refit", ["--ablate", "refit"]),
    ("default without the gate refinement", ["--gate-refine", "0"]),
    ("default, a0 = v0 = −3", ["--off-bias=-3"]),
    ("default, decay-shift compensation", ["--shift-compensation", "on"]),
    ("default, fits on the RWKV-6's inputs", ["--fits-on", "rwkv6"]),
    ("default, gate ridge 1e-6", ["--gate-ridge", "1e-6"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("v6", nargs="?", default=os.path.join(ROOT, "fixtures/models/rwkv6-trained-bf16.pth"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--only", default=None, help="comma-separated variant numbers (1-based) to run")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="rwkv-upgrade-ablation.")
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(ROOT, ".corpus")
    if not os.path.exists(os.path.join(corpus, "heldout.txt")):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts/train/corpus.py")], check=True, stdout=subprocess.DEVNULL)
    train = os.path.join(out, "train-16k.txt")
    with open(os.path.join(corpus, "train.txt"), "rb") as src, open(train, "wb") as dst:
        dst.write(src.read(16384))
    # One build of everything: `--product a --product b` would build only b.
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    # upgrade-lab: rwkv-upgrade v6-to-v7 with the experiment settings.
    upgrade, verify = (os.path.join(ROOT, ".build/release", p) for p in ("upgrade-lab", "rwkv-verify"))
    # One BLAS thread: with other work on the machine, OpenBLAS's spinning threads slow a small model many times.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    chosen = {int(i) for i in args.only.split(",")} if args.only else None
    rows = []
    for i, (name, flags) in enumerate(VARIANTS, 1):
        if chosen and i not in chosen:
            continue
        path = os.path.join(out, f"variant{i}.pth")
        cmd = [upgrade, args.v6, path, "--json"] + [f.format(train=train) for f in flags]
        report = json.loads(subprocess.run(cmd, check=True, capture_output=True, env=env).stdout)
        cmp = json.loads(subprocess.run([verify, path, "--against", args.v6, "--text", os.path.join(corpus, "heldout.txt"),
                                         "--chunk", "256", "--chunks", str(args.chunks), "--json"],
                                        check=True, capture_output=True, env=env).stdout)
        row = {"variant": name, "flags": flags, "file": path, "kl": cmp["meanKLD"], "kl_uncertainty": cmp["meanKLDUncertainty"],
               "top1": cmp["sameTop"], "ln_ppl_ratio": cmp["logPerplexityRatio"], "nll_v7": math.log(cmp["perplexity"]),
               "nll_v6": math.log(cmp["referencePerplexity"]), "scored_tokens": cmp["text"]["scoredTokens"],
               "calibration": report.get("calibration"), "calibration_tokens": report.get("calibrationTokens")}
        rows.append(row)
        print(f"{i:2d} {name:40s} KL {row['kl']:.4f} ± {row['kl_uncertainty']:.4f}  top-1 {row['top1']:.3f}  "
              f"NLL {row['nll_v7']:.4f} (v6 {row['nll_v6']:.4f})", flush=True)
    with open(os.path.join(out, "ablation.json"), "w") as fh:
        json.dump({"v6": args.v6, "chunks": args.chunks, "rows": rows}, fh, indent=1)
    lines = ["| variant | KL(v6‖v7) | top-1 | held-out NLL (v6: %.4f) | ln(PPL ratio) |" % rows[0]["nll_v6"] if rows else "",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['kl']:.3f} ± {r['kl_uncertainty']:.3f} | {r['top1']:.3f} | {r['nll_v7']:.4f} | "
                     f"{r['ln_ppl_ratio']:.3f} |")
    with open(os.path.join(out, "ablation.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"upgrade-ablation: outputs in {out}")


if __name__ == "__main__":
    main()
