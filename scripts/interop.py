#!/usr/bin/env python3
"""Interoperability checks of rwkv-convert's GGUF output against independent implementations
(not part of `make test`; run through scripts/interop.sh):

1. gguf-py (`gguf.GGUFReader`) reads every tensor of every output; for each tensor it writes the
   values `gguf.quants.dequantize` gives to <out>.gguf-py.safetensors, which the opt-in Swift test
   GGUFInteropTests compares with our reader's values.
2. The stored bytes of every large matrix equal what gguf-py's own encoders make of the source
   values (numpy float16, gguf.quants.quantize for BF16 and Q8_0..Q4_0: bit-exact with ggml's C
   reference quantizers), and every other tensor is the source values in F32.
3. llama.cpp (llama-cpp-python, logits_all=True) loads every output and evaluates the fixture's
   tokens; its logits are compared with the official rwkv package's logits for the same weights.

4. llama.cpp's quantizer (`llama_model_quantize`, what llama-quantize runs) accepts our f16 files
   and its q8_0 of them is byte-identical to our own q8_0 conversion.
5. (--tokenizer FILE.gguf) llama.cpp's RWKV tokenizer over the World token list we write gives
   the same token ids as the official package's TRIE_TOKENIZER, and detokenizes back.

Usage: interop.py OUT_DIR MODEL_NAME... (expects OUT_DIR/<model>.<type>.gguf from interop.sh)
       interop.py --tokenizer WORLD_MODEL.gguf
Prints a Markdown table and writes OUT_DIR/interop.json.
"""
import json
import os
import sys

import numpy as np
import gguf
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY = ["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]
# k-quants and iq4_nl: rows must be whole 256-value blocks, so they are run on the 256-wide models
# of scripts/make-wide-interop.py (the fixtures' matrices would all fall back to legacy types).
KQUANTS = ["q6_k", "q5_k", "q4_k", "q3_k", "q2_k", "iq4_nl"]
TYPES = LEGACY + KQUANTS
QTYPE = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
         "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
         "q5_1": gguf.GGMLQuantizationType.Q5_1, "q5_0": gguf.GGMLQuantizationType.Q5_0,
         "q4_1": gguf.GGMLQuantizationType.Q4_1, "q4_0": gguf.GGMLQuantizationType.Q4_0}


# Accepted max |logit difference| between llama.cpp and the official package, derived per file:
# llama.cpp runs the same quantized weights our forward pass runs in fp32 (rwkv-verify on the same
# file, `ours`), so its error is the weights' own error plus what its activation rounding adds: it
# multiplies in f16 for f16 files, bf16 for bf16 ones and 8-bit blocks for quantized ones. The
# bound allows the weights' error twice and four roundings (unit ε of that activation type) of the
# largest logit; f32 gets the fp32 noise rwkv-verify accepts, 1e-4. (With two roundings the bf16
# file of the 256-wide RWKV-6 was over, 0.076 against 0.062: docs/formats.md.)
ACTIVATION_EPSILON = {"f16": 2 ** -11, "bf16": 2 ** -8}


def bound(typ, ours_max_abs, max_logit):
    if typ == "f32":
        return 1e-4
    return 2 * ours_max_abs + 4 * ACTIVATION_EPSILON.get(typ, 2 ** -7) * max_logit




def large_matrix_source(name):
    """GGUF name of a large matrix -> BlinkDL name (these are stored unchanged, only retyped)."""
    if name == "token_embd.weight":
        return "emb.weight"
    if name == "output.weight":
        return "head.weight"
    parts = name.split(".")
    if parts[0] != "blk":
        return None
    layer, kind = parts[1], parts[2]
    table = {"time_mix_key": "att.key.weight", "time_mix_value": "att.value.weight",
             "time_mix_receptance": "att.receptance.weight", "time_mix_gate": "att.gate.weight",
             "time_mix_output": "att.output.weight", "channel_mix_key": "ffn.key.weight",
             "channel_mix_value": "ffn.value.weight", "channel_mix_receptance": "ffn.receptance.weight"}
    return f"blocks.{layer}.{table[kind]}" if kind in table else None


def model_file(model, out_dir, suffix):
    """A fixture's file (fixtures/models, fixtures/expected), or one made at interop time in out_dir."""
    for d in (os.path.join(ROOT, "fixtures/models"), os.path.join(ROOT, "fixtures/expected"), out_dir):
        if os.path.exists(os.path.join(d, model + suffix)):
            return os.path.join(d, model + suffix)
    raise SystemExit(f"interop: no {model + suffix}")


def source_tensors(model, out_dir):
    with safe_open(model_file(model, out_dir, ".safetensors"), "pt") as f:
        return {k: f.get_tensor(k).float().numpy() for k in f.keys()}


def check_file(path, typ, source):
    reader = gguf.GGUFReader(path)
    values = {}
    problems = []
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))    # torch order
        deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        values[t.name] = np.ascontiguousarray(deq)
        src_name = large_matrix_source(t.name)
        if typ not in QTYPE:
            continue   # k-quants: types follow llama.cpp's fallbacks; bytes are held to ggml's C in make test
        if src_name is None:
            if t.tensor_type != gguf.GGMLQuantizationType.F32:
                problems.append(f"{t.name} is {t.tensor_type.name}, expected F32")
            continue
        # The 4- and 5-bit types keep the output matrix at higher precision, as llama.cpp's
        # quantizer does: q6_K, or q8_0 when its rows are not whole 256-value blocks.
        if t.name == "output.weight" and typ in ("q5_1", "q5_0", "q4_1", "q4_0"):
            if int(t.shape[0]) % 256 == 0:
                if t.tensor_type != gguf.GGMLQuantizationType.Q6_K:
                    problems.append(f"{t.name} is {t.tensor_type.name}, expected Q6_K")
                continue   # (its bytes are held to ggml's C in make test)
            want = "q8_0"
        else:
            want = typ
        if t.tensor_type != QTYPE[want]:
            problems.append(f"{t.name} is {t.tensor_type.name}, expected {want}")
            continue
        src = source[src_name].astype(np.float32)
        expected = gguf.quants.quantize(src, QTYPE[want]) if want != "f16" else src.astype(np.float16)
        if expected.tobytes() != np.asarray(t.data).tobytes():
            problems.append(f"{t.name}: bytes differ from gguf-py's {want} encoding of the source")
    save_file(values, path + ".gguf-py.safetensors")
    return len(reader.tensors), problems


# gguf-py LlamaFileType values of the quantized types.
LLAMA_FTYPE = {"q8_0": 7, "q5_1": 9, "q5_0": 8, "q4_1": 3, "q4_0": 2}


def check_requantize(f16_path, ours_path, typ):
    """llama.cpp's own quantizer (what llama-quantize runs) accepts our f16 file, and its `typ` of it
    is byte-identical, tensor for tensor, to our direct conversion to `typ` (its per-tensor type
    choices included: for these models it keeps output.weight at q8_0 under the 4/5-bit types,
    as we do)."""
    import ctypes
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPE[typ]
    params.nthread = 2
    out = ours_path + ".llama-quantize"
    if llama_cpp.llama_model_quantize(f16_path.encode(), out.encode(), ctypes.byref(params)) != 0:
        return ["llama_model_quantize refused the f16 file"]
    theirs = {t.name: t for t in gguf.GGUFReader(out).tensors}
    problems = [t.name for t in gguf.GGUFReader(ours_path).tensors
                if t.name not in theirs or theirs[t.name].tensor_type != t.tensor_type
                or np.asarray(theirs[t.name].data).tobytes() != np.asarray(t.data).tobytes()]
    os.remove(out)
    return problems


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def compare_logits(got, ref):
    p, q = softmax(ref.astype(np.float64)), softmax(got.astype(np.float64))
    kl = float(np.max(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))
    return {"max_abs": float(np.max(np.abs(got - ref))), "max_kl": kl,
            "top1": float(np.mean(np.argmax(got, -1) == np.argmax(ref, -1)))}


def ours(path, fixture):
    """rwkv-verify (our forward pass on the dequantized weights) against the same official logits."""
    import subprocess
    verify = os.environ.get("RWKV_VERIFY")
    if not verify:
        return None
    run = subprocess.run([verify, path, "--fixture", fixture, "--mode", "rnn", "--json"], capture_output=True, text=True)
    s = json.loads(run.stdout)["checks"][0]["summary"]
    return {"max_abs": s["maxAbsDelta"], "max_kl": s["maxKL"], "top1": s["top1Agreement"]}


def llama_logits(path, tokens, vocab):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=256, logits_all=True, n_threads=2, verbose=False)
    llm.eval(tokens)
    logits = np.array(llm.scores[:len(tokens), :vocab], dtype=np.float32)
    del llm
    return logits


TOKENIZER_TEXTS = ["Hello world!\n\nUser: what is RWKV?\n\nAssistant:", "café ½ — 日本語のテキスト 🙂\t\\x00 'quoted' \"double\"",
                   "".join(chr(c) for c in range(1, 128)), "  leading spaces, trailing tab\t\r\n"]


def check_world_tokenizer(path):
    """llama.cpp's RWKV tokenizer over our World token list must tokenize like the official one."""
    import llama_cpp
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER
    import rwkv
    official = TRIE_TOKENIZER(os.path.join(os.path.dirname(rwkv.__file__), "rwkv_vocab_v20230424.txt"))
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, vocab_only=True, verbose=False)
    problems = []
    for text in TOKENIZER_TEXTS:
        ours = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        theirs = official.encode(text)
        if ours != theirs:
            problems.append(f"{text[:20]!r}: llama.cpp {ours[:8]}... official {theirs[:8]}...")
        elif llm.detokenize(ours).decode("utf-8") != text:
            problems.append(f"{text[:20]!r}: llama.cpp does not detokenize back")
    del llm
    return problems


def main():
    if sys.argv[1] == "--tokenizer":
        problems = check_world_tokenizer(sys.argv[2])
        print(f"World tokenizer in llama.cpp vs official: {len(TOKENIZER_TEXTS)} texts, "
              + ("all identical" if not problems else "; ".join(problems)))
        sys.exit(1 if problems else 0)
    out_dir, models = sys.argv[1], sys.argv[2:]
    results = []
    failures = 0            # files outside their bound or misread by gguf-py
    requantized = requant_failures = 0
    for model in models:
        source = source_tensors(model, out_dir)
        # The safetensors hold bf16 weights; the official logits for exactly those weights
        # computed in fp32 are the "-bf16.upcast" file.
        fixture = model_file(model, out_dir, "-bf16.upcast.logits.safetensors")
        wide = "wide" in model
        ref = load_file(fixture)
        tokens, ref_logits = [int(t) for t in ref["tokens"]], ref["logits"]
        for typ in (TYPES if wide else LEGACY):
            path = os.path.join(out_dir, f"{model}.{typ}.gguf")
            n, problems = check_file(path, typ, source)
            row = {"model": model, "type": typ, "tensors": n, "gguf_py_problems": problems}
            try:
                row.update(compare_logits(llama_logits(path, tokens, ref_logits.shape[1]), ref_logits))
            except Exception as e:  # a load failure is a result to report, not a crash
                row["llama_error"] = repr(e)
            row["ours"] = ours(path, fixture)
            if row["ours"] is None:
                raise SystemExit("interop: set RWKV_VERIFY (the bounds are derived from our forward pass on each file)")
            row["bound"] = bound(typ, row["ours"]["max_abs"], float(np.abs(ref_logits).max()))
            row["within_bound"] = "max_abs" in row and row["max_abs"] <= row["bound"]
            failures += bool(problems) or not row["within_bound"]
            results.append(row)
        for typ in ([] if wide else LLAMA_FTYPE):
            requant = check_requantize(os.path.join(out_dir, f"{model}.f16.gguf"), os.path.join(out_dir, f"{model}.{typ}.gguf"), typ)
            print(f"{model}: llama.cpp's quantizer on our f16 file -> {typ} "
                  + (f"byte-identical to our {typ} file" if not requant else "differs in " + ", ".join(requant[:5])))
            requantized += 1
            requant_failures += bool(requant)
    with open(os.path.join(out_dir, "interop.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("| model | type | gguf-py: tensors read, bytes == gguf-py encoding | llama.cpp max abs dlogit (bound) | max KL | top-1 | rwkv-verify max abs dlogit | max KL | top-1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        g = f"{r['tensors']}, " + ("all equal" if not r["gguf_py_problems"] else "; ".join(r["gguf_py_problems"][:3]))
        if "llama_error" in r:
            print(f"| {r['model']} | {r['type']} | {g} | load failed: {r['llama_error']} | | |")
        else:
            mark = "" if r["within_bound"] else " OVER"
            o = r["ours"]
            mine = f"{o['max_abs']:.2e} | {o['max_kl']:.2e} | {o['top1']:.3f}" if o else "(set RWKV_VERIFY) | |"
            print(f"| {r['model']} | {r['type']} | {g} | {r['max_abs']:.2e} ({r['bound']:.2g}){mark} | {r['max_kl']:.2e} | {r['top1']:.3f} | {mine} |")
    print(f"interop: {len(results)} files: {len(results) - failures} passed, {failures} failed; "
          f"llama.cpp's quantizer on our f16 files: {requantized - requant_failures} of {requantized} byte-identical")
    sys.exit(1 if failures or requant_failures or not results else 0)   # nothing checked is a failure


if __name__ == "__main__":
    main()
