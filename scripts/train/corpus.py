#!/usr/bin/env python3
"""Fetch and prepare the training corpus: the King James Bible from Debian, as bytes.

    python scripts/train/corpus.py [--out .corpus]

Source: Debian 12 (bookworm) packages `bible-kjv-text` 4.38 (the text, compressed in the Bible
Retrieval System's own format) and `bible-kjv` 4.38 (its `bible` reader). The KJV text is in the
public domain (the package's copyright file: "The copyright for the King James Version text of
the Bible is expired"). Both .deb files are fetched with `apt-get download` (no install; needs
`apt-get update` once) and checked against the SHA-256 below, unpacked with dpkg-deb into a temp
folder, and the reader prints Genesis 1:1 to Revelation 22:21.

Preparation: verse numbers removed and each verse on one line; each chapter starts with its
heading ("Genesis 1") and ends with a blank line. Pure ASCII, so byte tokens = characters
(vocabulary 256). Split by chapter: every 20th chapter (index 19, 39, ...) is held out, the rest
is training text; both keep the book order. Writes OUT/train.txt, OUT/heldout.txt and
OUT/corpus.json (sizes, SHA-256 of the packages and of both parts). Deterministic.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

PACKAGES = {  # Debian bookworm main, amd64
    "bible-kjv-text_4.38_all.deb": "d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a",
    "bible-kjv_4.38_amd64.deb": "75a49c032a6efa9faa2beb4a9acb70974380122906329d0e100de36cc88ff02d",
}
HELDOUT_EVERY = 20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(td):
    specs = [f.split("_")[0] + "=" + f.split("_")[1] for f in PACKAGES]
    res = subprocess.run(["apt-get", "download"] + specs, cwd=td, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit("corpus: apt-get download failed (run `apt-get update` first?): " + res.stderr.strip()[-500:])
    for f, want in PACKAGES.items():
        p = os.path.join(td, f)
        if not os.path.exists(p):
            raise SystemExit(f"corpus: {f} was not downloaded")
        got = sha256(p)
        if got != want:
            raise SystemExit(f"corpus: {f}: SHA-256 {got} != pinned {want}")
        subprocess.run(["dpkg-deb", "-x", p, os.path.join(td, "root")], check=True)
    return os.path.join(td, "root")


def read_bible(root):
    exe = os.path.join(root, "usr", "bin", "bible")
    res = subprocess.run([exe, "-p", os.path.join(root, "usr", "lib"), "Gen1:1-Rev22:21"],
                         capture_output=True, env=dict(os.environ, COLUMNS="80"))
    if res.returncode != 0:
        raise SystemExit("corpus: the bible reader failed (libreadline8 missing?): " + res.stderr.decode()[-300:])
    return res.stdout.decode("ascii")


def chapters(raw):
    """[(heading, [verse, ...])] from the reader's output: a heading ("Genesis 1") stands alone
    between blank lines; a verse starts with its number indented; other lines continue a verse."""
    out = []
    lines = raw.splitlines()
    verse_re = re.compile(r"^\s+(\d+) (.*)$")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        alone = (i == 0 or not lines[i - 1].strip()) and (i + 1 == len(lines) or not lines[i + 1].strip())
        m = verse_re.match(line)
        if alone and not m:
            out.append((line.strip(), []))
        elif m:
            out[-1][1].append(m.group(2).strip())
        else:
            out[-1][1][-1] += " " + line.strip()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, ".corpus"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        raw = read_bible(fetch(td))
    chs = chapters(raw)
    if len(chs) != 1189:  # the KJV has 1189 chapters
        raise SystemExit(f"corpus: expected 1189 chapters, parsed {len(chs)}")
    n_verses = sum(len(v) for _, v in chs)
    if n_verses != 31102:  # and 31102 verses
        raise SystemExit(f"corpus: expected 31102 verses, parsed {n_verses}")
    train, held = [], []
    for i, (head, verses) in enumerate(chs):
        text = head + "\n" + "\n".join(verses) + "\n\n"
        (held if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 else train).append(text)
    os.makedirs(args.out, exist_ok=True)
    meta = {"source": "Debian bookworm bible-kjv-text 4.38 (KJV, public domain), read with bible-kjv 4.38",
            "packages": PACKAGES, "chapters": len(chs), "verses": n_verses,
            "split": f"every {HELDOUT_EVERY}th chapter held out", "tokenisation": "bytes (vocab 256), ASCII"}
    for name, parts in (("train", train), ("heldout", held)):
        data = "".join(parts).encode("ascii")
        path = os.path.join(args.out, f"{name}.txt")
        with open(path, "wb") as fh:
            fh.write(data)
        meta[name] = {"file": f"{name}.txt", "bytes": len(data), "chapters": len(parts), "sha256": sha256(path)}
    with open(os.path.join(args.out, "corpus.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    sys.exit(main())
