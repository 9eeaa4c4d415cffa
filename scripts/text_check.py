#!/usr/bin/env python3
"""Checks of `rwkv-verify --text` and `rwkv-convert imatrix` with published tools (scripts/text-check.sh).

    text_check.py BUILD_DIR OUT_DIR

For the fixture models rwkv7-tiny-fp32 and rwkv6-tiny-fp32 and fixtures/text/english.txt in
chunks of 256 (the settings of fixtures/text_fixtures.py):
- rwkv-convert imatrix --process-output writes OUT/<model>.imatrix.gguf; gguf-py (gguf.GGUFReader)
  reads it; its metadata is llama-imatrix's (general.type, imatrix.datasets, chunk_count,
  chunk_size); every <tensor>.in_sum2 / .counts equals the sums the official package's forward
  gave (fixtures/expected/text/<model>.text.safetensors) within 1e-4 relative; the maximum is printed.
- rwkv-verify --text --json: every scored token's NLL against the official package's; the
  maximum |ΔNLL| and the mean NLLs are printed.
- With llama-cpp-python installed (scripts/interop-requirements.txt): the model converted to f32
  GGUF and run by llama.cpp on the same chunks (logits_all, fresh context per chunk) gives the
  same NLLs as our --text on that GGUF, within 1e-3 (llama.cpp's own kernels; printed).
"""
import json
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = os.path.join(ROOT, "fixtures", "text", "english.txt")
CHUNK = 256


def run(*args):
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


def main():
    build, out = sys.argv[1:3]
    ok = True
    for name in ("rwkv7-tiny-fp32", "rwkv6-tiny-fp32"):
        model = os.path.join(ROOT, "fixtures", "models", name + ".pth")
        expected = load_file(os.path.join(ROOT, "fixtures", "expected", "text", name + ".text.safetensors"))

        # Importance matrix, read by gguf-py.
        import gguf
        path = os.path.join(out, name + ".imatrix.gguf")
        run(os.path.join(build, "rwkv-convert"), "imatrix", model, "--text", TEXT, "--chunk", str(CHUNK),
            "--process-output", "-o", path)
        reader = gguf.GGUFReader(path)
        fields = {k: reader.fields[k].contents() for k in ("general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")}
        ok &= fields["general.type"] == "imatrix" and fields["imatrix.chunk_count"] == 11 and fields["imatrix.chunk_size"] == CHUNK \
            and fields["imatrix.datasets"] == [TEXT]
        ours = {t.name: np.array(t.data, dtype=np.float32).reshape(-1) for t in reader.tensors}
        official = {k[len("imatrix."):]: v.reshape(-1) for k, v in expected.items() if k.startswith("imatrix.")}
        same_names = set(ours) == set(official)
        worst = max(float(np.max(np.abs(ours[k] - v) / np.maximum(np.abs(v), 1e-6))) for k, v in official.items()) if same_names else float("inf")
        ok &= same_names and worst < 1e-4
        print(f"{name}: imatrix read by gguf-py, {len(ours)} tensors, metadata {fields}, "
              f"max relative difference from the official activations {worst:.2e}")

        # Perplexity.
        report = json.loads(run(os.path.join(build, "rwkv-verify"), model, "--text", TEXT, "--chunk", str(CHUNK), "--json"))
        scored = expected["nll"][:, CHUNK // 2:].reshape(-1)
        ours_nll = np.array(report["perTokenNLL"], dtype=np.float64)
        diff = float(np.max(np.abs(ours_nll - scored)))
        ok &= ours_nll.shape == scored.shape and diff < 1e-4
        print(f"{name}: --text mean NLL {report['meanNLL']:.7f} (official {scored.astype(np.float64).mean():.7f}), "
              f"perplexity {report['perplexity']:.4f}, max |ΔNLL| per token {diff:.2e}")

        # llama.cpp on the same chunks, if available.
        try:
            import llama_cpp
        except ImportError:
            print(f"{name}: llama.cpp comparison skipped (llama-cpp-python not installed)")
            continue
        g = os.path.join(out, name + ".f32.gguf")
        run(os.path.join(build, "rwkv-convert"), "pth-to-native", model, g, "--type", "f32")
        ours_g = np.array(json.loads(run(os.path.join(build, "rwkv-verify"), g, "--text", TEXT, "--chunk", str(CHUNK), "--json"))["perTokenNLL"])
        tokens = expected["tokens"].tolist()
        theirs = []
        for c in range(len(tokens) // CHUNK):
            chunk = tokens[c * CHUNK:(c + 1) * CHUNK]
            # A fresh context per chunk: the zero state, as llama-perplexity's memory clear.
            llm = llama_cpp.Llama(model_path=g, n_ctx=CHUNK, n_batch=CHUNK, logits_all=True, n_threads=2, verbose=False)
            llm.eval(chunk)
            logits = np.array(llm.scores[:CHUNK], dtype=np.float64)
            lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            nll = lse[:-1] - logits[np.arange(CHUNK - 1), chunk[1:]]
            theirs.append(nll[CHUNK // 2:])
        d = float(np.max(np.abs(np.concatenate(theirs) - ours_g)))
        ok &= d < 1e-3
        print(f"{name}: llama.cpp on our f32 GGUF, max |ΔNLL| against our --text {d:.2e}")
    print("text checks:", "passed" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
