#!/usr/bin/env python3
"""The trainable torch GoldFinch (scripts/train/goldfinch_torch.py) against the GoldFinch repository's logits.

    python scripts/train/parity_goldfinch.py [--tol 1e-4] [--json OUT.json]

For each committed fixture (fixtures/models/goldfinch-{tiny,upgrade-tiny,r2-tiny}.pth: layers
c2,c2,c2,c2,gold,gold / x060 x4,gold / c2,gold; made by fixtures/make_goldfinch.py with
recursal/GoldFinch-paper@4fbc70c6's own model code, sequence mode from the empty state, cpu fp32)
our forward pass computes logits on the same 24 tokens (fixtures/expected/goldfinch-*.logits.safetensors);
the largest absolute difference must be <= --tol (1e-4: the repository's numbers were reproduced by an
independent float64 spec to <= 5.1e-6; a wrong formula moves logits by far more).
Also checked, per fixture:
  - the layer kinds told from the keys are the ones the fixture's metadata records;
  - the model's state_dict has exactly the file's keys, order and shapes, and a save/load round trip
    through save_pth keeps every value (fp32);
  - causality: the logits of the first 13 tokens alone equal the first 13 rows of the 24-token call,
    and a batch of two different sequences gives each row what it gives alone;
  - training mode computes the same logits (no dropout; the C2 ln_x takes its training branch), and a
    backward pass gives a finite nonzero gradient to every parameter but the Finch-C2 layers' unused
    time_faaaa and the GOLD layers' ln_k.bias (analytically zero: adding one vector to every key of a
    head shifts each query's scores by a constant, which softmax ignores; it shows ~1e-8 of rounding).
With --repo CHECKOUT (an exported checkout of recursal/GoldFinch-paper, e.g. /tmp/goldfinch): the
repository's own model code, imported by fixtures/make_goldfinch.py (its CUDA kernel replaced by the
differentiable torch loop wkv6_torch), runs the same cross-entropy loss with autograd, and every
parameter's gradient is compared with ours (max |Δgrad| relative to the largest gradient; tolerance
--grad-tol 1e-4).
Exit 1 on any failure.
"""
import argparse
import json
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import goldfinch_torch  # noqa: E402

FIXTURES = ("goldfinch-tiny", "goldfinch-upgrade-tiny", "goldfinch-r2-tiny")


def repo_gradients(checkout, name, tokens):
    """Loss and {name: grad} of the repository's own Transformer (eval mode, autograd on)."""
    sys.path.insert(0, os.path.join(ROOT, "fixtures"))
    import make_goldfinch as mg
    global _REPO
    if "_REPO" not in globals():
        _REPO = mg.load_repo(checkout)
    p = next(m for m in mg.MODELS if m["name"] == name)
    model = mg.make_model(_REPO, p)
    model.load_state_dict(torch.load(os.path.join(ROOT, "fixtures", "models", f"{name}.pth"), map_location="cpu",
                                     weights_only=True), strict=True)
    logits, _ = model(tokens[None], None)
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], tokens[1:])
    loss.backward()
    return loss.item(), {n: q.grad for n, q in model.named_parameters()}


def check(name, tol, checkout=None, grad_tol=1e-4):
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = os.path.join(ROOT, "fixtures", "models", f"{name}.pth")
    exp_path = os.path.join(ROOT, "fixtures", "expected", f"{name}.logits.safetensors")
    exp = load_file(exp_path)
    with safe_open(exp_path, "pt") as fh:
        about = json.loads(fh.metadata()["about"])
    tokens, ref = exp["tokens"].long(), exp["logits"].float()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = goldfinch_torch.load_state_dict(sd)
    model.eval()
    ok, notes = True, []
    kinds = ",".join(model.cfg["kinds"])
    if kinds != about["layer_kinds"]:
        notes.append(f"layer kinds {kinds} != the fixture's {about['layer_kinds']}")
    ours_sd = model.state_dict()
    if list(ours_sd) != list(sd):
        notes.append("key order differs from the file's")
    bad = [k for k in sd if tuple(sd[k].shape) != tuple(ours_sd[k].shape)]
    if bad:
        notes.append(f"shapes differ: {bad[:5]}")
    with torch.no_grad():
        ours = model(tokens[None])[0]
        prefix = model(tokens[None, :13])[0]
        other = tokens.flip(0)
        both = model(torch.stack([tokens, other]))
        alone = model(other[None])[0]
    d = float((ours - ref).abs().max())
    d_prefix = float((prefix - ours[:13]).abs().max())
    d_batch = max(float((both[0] - ours).abs().max()), float((both[1] - alone).abs().max()))
    if d_prefix > tol or d_batch > tol:
        notes.append(f"causality/batch: prefix {d_prefix:.2e}, batch {d_batch:.2e}")
    model.train()
    out = model(tokens[None])[0]
    d_train = float((out.detach() - ours).abs().max())
    if d_train > tol:
        notes.append(f"training mode differs: {d_train:.2e}")
    loss = torch.nn.functional.cross_entropy(out[:-1], tokens[1:])
    loss.backward()
    unused = {f"blocks.{i}.att.time_faaaa" for i, k in enumerate(model.cfg["kinds"]) if k == "c2"}
    zero = {f"blocks.{i}.att.ln_k.bias" for i, k in enumerate(model.cfg["kinds"]) if k == "gold"}
    no_grad = [n for n, p in model.named_parameters()
               if n not in unused | zero and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().max() == 0)]
    if no_grad:
        notes.append(f"no finite nonzero gradient: {no_grad[:6]}")
    grad = None
    if checkout:
        repo_loss, repo_grads = repo_gradients(checkout, name, tokens)
        gmax = max(float(g.abs().max()) for g in repo_grads.values() if g is not None)
        diffs = {}
        for n, p in model.named_parameters():
            a = repo_grads[n] if repo_grads[n] is not None else torch.zeros_like(p)
            b = p.grad if p.grad is not None else torch.zeros_like(p)
            diffs[n] = float((a - b).abs().max())
        worst = max(diffs, key=diffs.get)
        grad = {"repo_loss": repo_loss, "our_loss": loss.item(), "max_abs_grad": gmax,
                "max_abs_grad_diff": diffs[worst], "worst_param": worst, "relative": diffs[worst] / gmax}
        if grad["relative"] > grad_tol:
            notes.append(f"gradients differ from the repository's: {worst} {diffs[worst]:.2e} (max |grad| {gmax:.2e})")
    with tempfile.TemporaryDirectory() as td:
        p2 = os.path.join(td, "x.pth")
        goldfinch_torch.save_pth(model, p2, dtype=torch.float32)
        back = torch.load(p2, map_location="cpu", weights_only=True)
        if not (list(back) == list(sd) and all(torch.equal(back[k], sd[k].float()) for k in sd)):
            notes.append("save_pth/load round trip changed the file's keys or values")
    ok = d <= tol and not notes
    print(f"{'ok  ' if ok else 'FAIL'} fixtures/models/{name}.pth: {kinds} C={model.cfg['n_embd']} "
          f"N={model.cfg['head_size']} T={len(tokens)}: max|ours - repository| = {d:.2e} (tol {tol:g}, "
          f"max|logit| {float(ref.abs().max()):.2f}); prefix {d_prefix:.1e}, batch {d_batch:.1e}, train mode {d_train:.1e}"
          + (f"; gradients vs the repository's: max |Δ| {grad['max_abs_grad_diff']:.1e} of max |grad| "
             f"{grad['max_abs_grad']:.2f} ({grad['relative']:.1e}), loss {grad['our_loss']:.6f} vs {grad['repo_loss']:.6f}"
             if grad else "")
          + "".join(f"\n     {n}" for n in notes))
    return ok, {"max_abs_diff": d, "max_abs_logit": float(ref.abs().max()), "layer_kinds": kinds,
                "prefix_max_abs_diff": d_prefix, "batch_max_abs_diff": d_batch, "train_mode_max_abs_diff": d_train,
                "gradients_vs_repository": grad}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--json", default=None, help="write the measured differences here")
    ap.add_argument("--repo", default=None, help="GoldFinch-paper checkout: also compare gradients with its code")
    ap.add_argument("--grad-tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results, all_ok = {}, True
    for name in FIXTURES:
        ok, r = check(name, args.tol, args.repo, args.grad_tol)
        results[f"{name}.pth"] = r
        all_ok &= ok
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    print("parity (GoldFinch):", "all within tolerance" if all_ok else "FAILED")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
