#!/usr/bin/env python3
"""Interop check for `rwkv-upgrade v5-to-v6`: the RWKV-6 it writes is one RWKV-LM's RWKV-6 trainer
loads strictly, and one the official `rwkv` package runs exactly as it runs the RWKV-5.

    .venv/bin/python scripts/interop-rwkv5.py RWKV-LM [V5.pth ...] [--upgrade .build/release/rwkv-upgrade]

RWKV-LM: a checkout of BlinkDL/RWKV-LM (not part of this repository; e.g. `git clone
https://github.com/BlinkDL/RWKV-LM`). Its RWKV-6 trainer model is `RWKV-v5/src/model.py` with
RWKV_MY_TESTING=x060 (the RWKV-v6 folder, where a checkout has one, is preferred). Only the module
classes are built, on the CPU: pytorch_lightning is stubbed (LightningModule = nn.Module) and the
CUDA kernel build (torch.utils.cpp_extension.load) is replaced by a stub that is never called.

For each RWKV-5.2 .pth (default: fixtures/models/rwkv5.2-tiny-bf16.pth):
  1. `rwkv-upgrade v5-to-v6 IN OUT.pth` in a temporary folder: `--dtype bf16` (the default) for a
     bf16 file, `--dtype fp32` for any other (an fp32 RWKV-5 written as bf16 is rounded, not equal);
  2. RWKV-LM's `RWKV(args)` built for the file's n_layer, n_embd, vocab, head size and FFN width
     (its train.py defaults: head_size_divisor 8, no pos_emb / pre_ffn / tiny_att / head_qk,
     dropout 0) takes the output's state dict with load_state_dict(strict=True) (every key, every
     shape); reported besides (not failures: strict loading needs neither): whether the file's key
     order is the model's registration order, and which tensors are not bf16; and, as a control
     that the check can fail, the RWKV-5 file itself must be refused by the same strict load;
  3. the official package (rwkv==0.8.32, cpu fp32, RNN mode, fixtures/official_logits.py in a fresh
     process; each file as it is, bf16 included) runs the RWKV-5 (detected as 5.2) and the RWKV-6
     (detected as 6.0) on the tokens of fixtures/expected/rwkv5.2-tiny-bf16.logits.safetensors: the
     mean KL(RWKV-5 || RWKV-6) per token must be <= 1e-6 and the top-1 tokens equal; for the
     fixture model the RWKV-5's logits are also checked against that file (max |Δ| <= 1e-5).
Prints what was checked and exits 1 on any failure or if nothing was checked.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_MODEL = os.path.join(ROOT, "fixtures", "models", "rwkv5.2-tiny-bf16.pth")
FIXTURE_LOGITS = os.path.join(ROOT, "fixtures", "expected", "rwkv5.2-tiny-bf16.logits.safetensors")
KL_TOL = 1e-6


def load_trainer_module(checkout, head_size):
    """RWKV-LM's model.py (x060) imported with the GPU-only parts stubbed; a fresh module each call
    (HEAD_SIZE is read from the environment at import)."""
    path = os.path.join(checkout, "RWKV-v6", "src", "model.py")
    if not os.path.exists(path):
        path = os.path.join(checkout, "RWKV-v5", "src", "model.py")
    if not os.path.exists(path):
        raise SystemExit(f"interop-rwkv5: no RWKV-v5/src/model.py (or RWKV-v6) under {checkout}")
    os.environ.update(RWKV_MY_TESTING="x060", RWKV_JIT_ON="0", RWKV_HEAD_SIZE_A=str(head_size),
                      RWKV_TRAIN_TYPE="", RWKV_CTXLEN="512", RWKV_FLOAT_MODE="fp32")
    pl = types.ModuleType("pytorch_lightning")
    pl.LightningModule = nn.Module
    util = types.ModuleType("pytorch_lightning.utilities")
    util.rank_zero_info = util.rank_zero_only = lambda *a, **k: None
    strat = types.ModuleType("pytorch_lightning.strategies")
    strat.DeepSpeedStrategy = object
    pl.utilities, pl.strategies = util, strat
    sys.modules.update({"pytorch_lightning": pl, "pytorch_lightning.utilities": util,
                        "pytorch_lightning.strategies": strat})
    import torch.utils.cpp_extension as cpp
    real_load = cpp.load

    def no_cuda(*a, **k):
        return types.SimpleNamespace(forward=None, backward=None)  # the kernel is never run here
    cpp.load = no_cuda
    try:
        spec = importlib.util.spec_from_file_location(f"rwkvlm_model_{head_size}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        cpp.load = real_load
    return mod, path


def trainer_model(checkout, sd):
    V, C = sd["emb.weight"].shape
    L = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    H, N = sd["blocks.0.att.time_faaaa"].shape
    mod, path = load_trainer_module(checkout, N)
    args = types.SimpleNamespace(
        n_layer=L, n_embd=C, vocab_size=V, head_size_a=N, head_size_divisor=8, dim_att=C,
        dim_ffn=sd["blocks.0.ffn.key.weight"].shape[0], ctx_len=512, my_pos_emb=0, pre_ffn=0,
        tiny_att_dim=0, tiny_att_layer=-1, head_qk=0, dropout=0, train_type="", my_testing="x060")
    return mod.RWKV(args), path, (L, C, V, N, args.dim_ffn)


def official(arch, path, tokens, version):
    from safetensors.torch import load_file
    env = dict(os.environ, RWKV_JIT_ON="1", RWKV_CUDA_ON="0", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("RWKV_V7_ON", None)
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "logits.safetensors")
        res = subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "official_logits.py"), arch, path, out,
                              ",".join(map(str, tokens)), f"--version={version}"],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stdout[-2000:] + res.stderr[-2000:])
            raise RuntimeError(f"{path}: the official package failed")
        return load_file(out)["logits"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rwkv_lm", help="a checkout of BlinkDL/RWKV-LM")
    ap.add_argument("models", nargs="*", help=f"RWKV-5.2 .pth files (default: {os.path.relpath(FIXTURE_MODEL, ROOT)})")
    ap.add_argument("--upgrade", default=os.path.join(ROOT, ".build", "release", "rwkv-upgrade"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from safetensors.torch import load_file
    fixture = load_file(FIXTURE_LOGITS)
    tokens = fixture["tokens"].tolist()
    models = args.models or [FIXTURE_MODEL]
    checked = {"strict loads": 0, "refused RWKV-5 (control)": 0, "KL comparisons": 0, "fixture comparisons": 0}
    failures = []
    for src in models:
        name = os.path.relpath(os.path.abspath(src), ROOT)
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "rwkv6.pth")
            dtype = "bf16" if all(t.dtype == torch.bfloat16 for t in
                                  torch.load(src, map_location="cpu", weights_only=True).values()) else "fp32"
            res = subprocess.run([args.upgrade, "v5-to-v6", src, out, "--dtype", dtype], capture_output=True, text=True,
                                 env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
            if res.returncode != 0:
                failures.append(f"{name}: rwkv-upgrade v5-to-v6 failed: {res.stderr.strip()[-500:]}")
                print(f"FAIL {failures[-1]}")
                continue
            sd = torch.load(out, map_location="cpu", weights_only=True)
            # 2. strict load into RWKV-LM's RWKV-6 trainer model
            try:
                model, path, (L, C, V, N, Fd) = trainer_model(args.rwkv_lm, sd)
                model.load_state_dict(sd, strict=True)
                checked["strict loads"] += 1
                same_order = list(model.state_dict()) == list(sd)
                dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values()})
                not_bf16 = sorted({k.split(".", 2)[2] for k, t in sd.items() if t.dtype != torch.bfloat16
                                   and k.startswith("blocks.")})
                print(f"ok   {name} -> v5-to-v6 --dtype {dtype}: {len(sd)} tensors load strictly into "
                      f"{os.path.relpath(path, args.rwkv_lm)} (x060) RWKV(n_layer={L}, n_embd={C}, vocab={V}, "
                      f"head_size={N}, dim_ffn={Fd})")
                print(f"     note: key order {'is' if same_order else 'is not'} RWKV-LM's registration order; "
                      f"dtypes {', '.join(dtypes)}" + (f" (not bf16: {', '.join(not_bf16)})"
                                                       if dtype == "bf16" and not_bf16 else ""))
            except Exception as e:  # noqa: BLE001 (a failed strict load is the finding)
                failures.append(f"{name}: strict load failed: {str(e)[:800]}")
                print(f"FAIL {failures[-1]}")
            else:
                try:
                    model.load_state_dict(torch.load(src, map_location="cpu", weights_only=True), strict=True)
                    failures.append(f"{name}: the RWKV-5 itself loaded strictly into the RWKV-6 model (control)")
                    print(f"FAIL {failures[-1]}")
                except RuntimeError as e:
                    checked["refused RWKV-5 (control)"] += 1
                    print(f"ok   {name} itself is refused by the same strict load (control): "
                          f"{str(e).splitlines()[0][:90]} ...")
            # 3. the official package: RWKV-5 vs its RWKV-6
            try:
                p5 = official("v5", os.path.abspath(src), tokens, "5.2")
                p6 = official("v6", out, tokens, "6.0")
            except RuntimeError as e:
                failures.append(str(e))
                print(f"FAIL {e}")
                continue
            lp, lq = F.log_softmax(p5.double(), -1), F.log_softmax(p6.double(), -1)
            kl = float((lp.exp() * (lp - lq)).sum(-1).mean())
            top1 = float((p5.argmax(-1) == p6.argmax(-1)).double().mean())
            dmax = float((p5 - p6).abs().max())
            checked["KL comparisons"] += 1
            ok = kl <= KL_TOL and top1 == 1.0
            if not ok:
                failures.append(f"{name}: KL {kl:.3e} top-1 {top1:.4f}")
            print(f"{'ok  ' if ok else 'FAIL'} {name}: official package, {len(tokens)} tokens: KL(RWKV-5 || v5-to-v6) "
                  f"{kl:.3e} (tol {KL_TOL:g}), top-1 {top1:.4f}, max |Δlogit| {dmax:.2e}")
            if os.path.abspath(src) == os.path.abspath(FIXTURE_MODEL):
                d = float((p5 - fixture["logits"]).abs().max())
                checked["fixture comparisons"] += 1
                ok = d <= 1e-5
                if not ok:
                    failures.append(f"{name}: official RWKV-5 logits differ from the fixture by {d:.2e}")
                print(f"{'ok  ' if ok else 'FAIL'} {name}: official RWKV-5 logits vs "
                      f"{os.path.relpath(FIXTURE_LOGITS, ROOT)}: max |Δ| {d:.2e}")
    print("checked: " + ", ".join(f"{v} {k}" for k, v in checked.items()))
    if failures or checked["strict loads"] == 0 or checked["KL comparisons"] == 0:
        print(f"interop-rwkv5: FAILED ({len(failures)} failure(s){'' if failures else ', nothing checked'})")
        sys.exit(1)
    print("interop-rwkv5: all passed")


if __name__ == "__main__":
    main()
