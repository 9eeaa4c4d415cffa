#!/usr/bin/env python3
"""Commit trained models as fixtures, with official-package logits and held-out losses.

    python scripts/train/make_fixtures.py RWKV6.pth RWKV7.pth   (each with its .log.json beside it)

For each model (a bf16 .pth written by train.py):
  fixtures/models/rwkv{6,7}-trained-bf16.pth                      the file, copied unchanged
  fixtures/expected/rwkv{6,7}-trained-bf16.heldout.logits.safetensors
      `tokens` I32 [128] (the first 128 bytes of the held-out split) and `logits` F32 [128, 256]
      from the official package (fixtures/official_logits.py: cpu fp32, RNN mode) on the file as is;
  fixtures/expected/rwkv6-trained-bf16.heldout.upcast.logits.safetensors
      RWKV-6 only: the same for the values upcast to fp32 before loading (the loader's LN0 quirk);
  fixtures/expected/trained.json
      per model: training settings and log (steps, tokens, time), the unigram held-out loss, the
      held-out loss of the bf16 weights over the whole held-out split (torch model, windows of 128
      bytes from a zero state), and over the first EVAL_WINDOWS of those windows by both the torch
      model and the official package (the same number up to fp32 rounding), and the official
      RNN-vs-sequence difference; file and per-tensor SHA-256 (as in fixtures/manifest.json).
"""
import json
import os
import shutil
import subprocess
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "fixtures"))
import generate  # noqa: E402  (manifest entries: per file and per tensor SHA-256)
import official  # noqa: E402
import rwkv_torch  # noqa: E402
import train  # noqa: E402

SAMPLE = 128
EVAL_WINDOWS = 16


def ce(logits, windows):
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)))


def main():
    torch.set_num_threads(1)
    data = train.load_corpus(os.path.join(ROOT, ".corpus"))
    with open(os.path.join(ROOT, ".corpus", "corpus.json")) as fh:
        corpus = json.load(fh)
    held = data["heldout"]
    sample = held[:SAMPLE].tolist()
    summary = {"corpus": {k: corpus[k] for k in ("source", "packages", "split", "train", "heldout")},
               "sample_tokens": f"first {SAMPLE} bytes of the held-out split",
               "unigram_heldout_loss": train.unigram_loss(data["train"], held), "models": {}}
    for src in sys.argv[1:]:
        model = rwkv_torch.load_pth(src)
        name = f"rwkv{model.arch[1]}-trained-bf16"
        dst = os.path.join(ROOT, "fixtures", "models", name + ".pth")
        if not (os.path.exists(dst) and open(dst, "rb").read() == open(src, "rb").read()):
            shutil.copyfile(src, dst)
        with open(os.path.splitext(src)[0] + ".log.json") as fh:
            log = json.load(fh)
        ctx = log["args"]["ctx"]
        wins = train.heldout_windows(held, ctx, 10 ** 9)
        full = train.evaluate(model, wins)
        sub = wins[:EVAL_WINDOWS]
        with torch.no_grad():
            ours = model(sub[:, :-1])
        off = official.logits(dst, sub[:, :-1])
        out = os.path.join(ROOT, "fixtures", "expected", name + ".heldout.logits.safetensors")
        env = dict(os.environ, RWKV_JIT_ON="1", RWKV_CUDA_ON="0", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
        env.pop("RWKV_V7_ON", None)
        if model.arch == "v7":
            env["RWKV_V7_ON"] = "1"
        res = subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "official_logits.py"), model.arch, dst,
                              out, ",".join(map(str, sample)), "--seq-check"], env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(res.stderr[-2000:])
        rnn = json.loads(res.stdout.strip().splitlines()[-1])
        written = [out]
        if model.arch == "v6":
            # The RWKV-6 loader computes LN0(emb) in the file's dtype (fixtures/README.md): these
            # logits are those of the same values upcast to fp32 first, what an fp32 forward pass matches.
            up_pth = os.path.join(ROOT, ".corpus", name + "-upcast.pth")
            torch.save({k: t.float() for k, t in torch.load(dst, weights_only=True).items()}, up_pth)
            up = os.path.join(ROOT, "fixtures", "expected", name + ".heldout.upcast.logits.safetensors")
            res = subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "official_logits.py"), "v6", up_pth,
                                  up, ",".join(map(str, sample)), f"--label={name}.pth upcast to fp32 before loading"],
                                 env=env, capture_output=True, text=True)
            os.remove(up_pth)
            if res.returncode != 0:
                raise SystemExit(res.stderr[-2000:])
            written.append(up)
        with torch.no_grad():
            ours_sample = model(torch.tensor([sample]))[0]
        from safetensors.torch import load_file
        file_logits = load_file(out)["logits"]
        fp32_logits = load_file(written[-1])["logits"]
        summary["models"][name] = {
            "file": os.path.relpath(dst, ROOT), "bytes": os.path.getsize(dst), "arch": model.arch,
            "config": model.cfg, "params": sum(p.numel() for p in model.parameters()),
            "training": {k: log["args"][k] for k in ("ctx", "batch", "lr", "lr_final", "schedule", "warmup",
                                                     "weight_decay", "seed", "data_seed", "threads")}
            | {"steps": log["steps"], "tokens": log["tokens"], "seconds": log["seconds"]},
            "heldout_loss_curve": [(e["step"], round(e["heldout_loss"], 4)) for e in log["evals"]],
            "heldout_loss_bf16_all_windows": full, "heldout_windows": len(wins), "window": ctx,
            f"heldout_loss_first_{EVAL_WINDOWS}_windows_torch": ce(ours, sub),
            f"heldout_loss_first_{EVAL_WINDOWS}_windows_official": ce(off, sub),
            "max_abs_logit_diff_torch_vs_official_windows": float((ours - off).abs().max()),
            "sample_official_rnn_vs_seq": rnn["max_abs_diff_rnn_vs_seq"],
            "sample_max_abs_diff_torch_fp32_vs_official_file": float((ours_sample - file_logits).abs().max()),
            "sample_max_abs_diff_torch_fp32_vs_official_upcast": float((ours_sample - fp32_logits).abs().max()),
            "manifest": [generate.manifest_entry(p, os.path.join(ROOT, "fixtures")) for p in [dst] + written],
        }
        print(json.dumps({k: v for k, v in summary["models"][name].items() if k != "manifest"}), flush=True)
    with open(os.path.join(ROOT, "fixtures", "expected", "trained.json"), "w") as fh:
        fh.write(generate.json_compact(summary) + "\n")


if __name__ == "__main__":
    main()
