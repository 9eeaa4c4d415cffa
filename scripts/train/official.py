#!/usr/bin/env python3
"""Logits of the OFFICIAL `rwkv` package (rwkv==0.8.32, cpu fp32) on token windows.

As a module: official.logits(path, windows) -> float32 tensor [n, T, V]; it runs this file in a
fresh process (RWKV_V7_ON is read when the package is imported, so RWKV-6 and RWKV-7 cannot share
a process). Each window is one sequence-mode call from a zero state
(model.forward(tokens, None, full_output=True); fixtures/expected/crosscheck.json: equal to RNN
mode within ~1e-6). A file not in fp32 is upcast to fp32 first, so the computation is fp32 for
every architecture (the RWKV-6 loader would otherwise compute LN0(emb) in the file's dtype).

    python official.py v5|v6|v7 MODEL.pth WINDOWS.safetensors OUT.safetensors   (the child process)

RWKV-5 (5.2) and RWKV-6 run in the package's same class (it detects the version from the keys).
"""
import os
import subprocess
import sys
import tempfile

import torch


def arch_of(sd):
    if "blocks.0.att.r_k" in sd:
        return "v7"
    if "blocks.0.att.time_maa_x" in sd:
        return "v6"
    if "blocks.0.att.time_mix_k" in sd:
        return "v5"
    raise ValueError("neither an RWKV-5, RWKV-6 nor RWKV-7 checkpoint")


def logits(path, windows):
    from safetensors.torch import load_file, save_file
    sd = torch.load(path, map_location="cpu", weights_only=True)
    arch = arch_of(sd)
    env = dict(os.environ, RWKV_JIT_ON="1", RWKV_CUDA_ON="0", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("RWKV_V7_ON", None)
    if arch == "v7":
        env["RWKV_V7_ON"] = "1"
    with tempfile.TemporaryDirectory() as td:
        src = path
        if any(t.dtype != torch.float32 for t in sd.values()):
            src = os.path.join(td, "fp32.pth")
            torch.save({k: t.float() for k, t in sd.items()}, src)
        win = os.path.join(td, "windows.safetensors")
        save_file({"windows": windows.to(torch.int32).contiguous()}, win)
        out = os.path.join(td, "out.safetensors")
        res = subprocess.run([sys.executable, os.path.abspath(__file__), arch, src, win, out],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{path}: the official package failed: {res.stderr[-1500:]}")
        return load_file(out)["logits"]


def child(arch, path, win, out):
    torch.set_num_threads(1)
    from safetensors.torch import load_file, save_file
    from rwkv.model import RWKV
    if arch == "v7":
        model = RWKV(model=path[:-4], strategy="cpu fp32")  # RWKV_x070 appends ".pth"
    else:
        model = RWKV(model=path, strategy="cpu fp32", verbose=False)
    windows = load_file(win)["windows"]
    rows = []
    with torch.no_grad():
        for w in windows.tolist():
            lg, _ = model.forward(w, None, full_output=True)
            rows.append(lg.float())
    save_file({"logits": torch.stack(rows).contiguous()}, out)


if __name__ == "__main__":
    child(*sys.argv[1:5])
