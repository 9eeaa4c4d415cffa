#!/usr/bin/env python3
"""Baseline for bench-forward.sh: prompt processing with the official `rwkv` package.

    official_forward.py MODEL.pth TOKENS(comma-separated) REPEATS RNN_REPEATS [LOGITS_OUT.safetensors]

Threads: torch.set_num_threads($BENCH_THREADS, default 2). RNN_REPEATS 0 skips RNN mode.

RWKV-7 (RWKV_V7_ON=1), strategy "cpu fp32", TorchScript on (the package's default), two threads.
Sequence mode: model.forward(tokens, None) (logits of the last token only). RNN mode:
model.forward([t], state) token by token (the package computes logits at every step there; it has
no way not to). Best of REPEATS (RNN mode: RNN_REPEATS, it is slow) after a warm-up, like
`rwkv-verify bench`. Prints JSON. With LOGITS_OUT, the RNN-mode logits of every position are saved
as a fixture (`tokens`, `logits`) so rwkv-verify can check agreement on this real-shape model.
"""
import json
import os
import sys
import time

os.environ["RWKV_V7_ON"] = "1"
os.environ.setdefault("RWKV_JIT_ON", "1")
os.environ["RWKV_CUDA_ON"] = "0"

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
from rwkv.model import RWKV  # noqa: E402


def main():
    path, toks, repeats, rnn_repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    logits_out = sys.argv[5] if len(sys.argv) > 5 else None
    tokens = [int(t) for t in toks.split(",")]
    assert path.endswith(".pth")
    t0 = time.perf_counter()
    model = RWKV(model=path[:-4], strategy="cpu fp32")   # RWKV_x070 appends ".pth" itself
    load = time.perf_counter() - t0

    def seq():
        model.forward(list(tokens), None)

    rows = []

    def rnn(prompt=tokens):
        rows.clear()
        state = None
        for t in prompt:
            out, state = model.forward([t], state)
            rows.append(out)

    def best(fn, repeats, warm_up):
        warm_up()   # TorchScript profiles and optimises on the first calls
        fastest = float("inf")
        for _ in range(max(repeats, 1)):
            start = time.perf_counter()
            fn()
            fastest = min(fastest, time.perf_counter() - start)
        return fastest

    with torch.no_grad():
        s = best(seq, repeats, warm_up=seq)
        r = best(rnn, rnn_repeats, warm_up=lambda: rnn(tokens[:4])) if rnn_repeats > 0 else None   # every step is the same call
    if logits_out and rows:
        from safetensors.torch import save_file
        save_file({"tokens": torch.tensor(tokens, dtype=torch.int32), "logits": torch.stack(rows).float().contiguous()},
                  logits_out, metadata={"about": f"{os.path.basename(path)}; official rwkv package, cpu fp32, RNN mode"})
    n = len(tokens)
    print(json.dumps({"tokens": n, "repeats": repeats, "rnnRepeats": rnn_repeats, "loadSeconds": load, "torchThreads": torch.get_num_threads(),
                      "sequenceSeconds": s, "rnnSeconds": r,
                      "sequenceTokensPerSecond": n / s, "rnnTokensPerSecond": n / r if r else None}))


if __name__ == "__main__":
    main()
