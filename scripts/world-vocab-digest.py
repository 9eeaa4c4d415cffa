#!/usr/bin/env python3
"""Prints the SHA-256 of the World token list as llama.cpp's converter writes it
(convert_hf_to_gguf.py `_set_vocab_rwkv_world`: '<s>', then repr(token_bytes)[2:-1] for every
line of rwkv_vocab_v20230424.txt, then [PAD<i>] up to 65536), one token per line. The Swift test
Tests/RWKVConvertTests/VocabularyTests.swift compares Vocabulary.tokens against this digest.

Usage: scripts/world-vocab-digest.py [path/to/rwkv_vocab_v20230424.txt]
"""
import ast
import hashlib
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "Sources/RWKVConvert/Resources/rwkv_vocab_v20230424.txt"
tokens = ["<s>"]
types = [3]
with open(path, "r", encoding="utf-8") as f:
    for line in f.readlines():
        parts = line.split(" ")
        token, length = ast.literal_eval(" ".join(parts[1:-1])), int(parts[-1])
        token = token.encode("utf-8") if isinstance(token, str) else token
        assert isinstance(token, bytes) and len(token) == length
        tokens.append(repr(token)[2:-1])
        types.append(1)
for i in range(len(tokens), 65536):
    tokens.append(f"[PAD{i}]")
    types.append(5)
print("tokens", hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest())
print("types", hashlib.sha256(",".join(map(str, types)).encode()).hexdigest())
