"""Generate a >= 1 GB JSON-lines corpus of real text with planted repetition (never committed).

Real text: the bundled Shakespeare and the CPython standard library (``/usr/lib/python3.11``),
cut into documents of about 4 KB. Each pass over them writes every document once, with 2% of
its words replaced by words drawn from the same text (seeded), so the passes are distinct
documents that share most of their spans; on top, 200 documents are written 10 times, 20
documents 100 times and 2 documents 1,000 times exactly, plus 50 documents with 3 near-copies
each (0.5% of words changed). Usage::

    python analyses/corpus_audit/make_big_corpus.py /tmp/audit_1g/corpus.jsonl [--gb 1.05]
    python analyses/corpus_audit/make_big_corpus.py /tmp/audit_1g/corpus.bin --tokenizer TOK.json

With a ``.bin`` target the documents are tokenized once (``TOK.json``) and the passes mutate
token ids instead of words (2% of ids replaced by ids drawn from the same text): a
pre-tokenized uint16 stream, each document behind BOS, as ``encode_stream`` writes it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
import glob
import json
from pathlib import Path

import numpy as np

from repeatlens.data.corpus import iter_documents


def pieces(size: int = 4000) -> list[str]:
    texts = list(iter_documents("shakespeare"))
    texts += [Path(p).read_text(encoding="utf-8", errors="replace") for p in sorted(glob.glob("/usr/lib/python3.11/**/*.py", recursive=True))]
    out = []
    for t in texts:
        out += [t[i : i + size] for i in range(0, len(t), size) if t[i : i + size].strip()]
    return out


def mutate(text: str, rate: float, rng: np.random.Generator, vocab: list[str]) -> str:
    words = text.split(" ")
    hits = rng.random(len(words)) < rate
    for i in np.flatnonzero(hits):
        words[i] = vocab[rng.integers(len(vocab))]
    return " ".join(words)


def documents(planted: list, near: list, docs: list, mutated: Callable) -> Iterator:
    """The corpus in order: the planted exact copies, the near-copies, then endless mutated passes."""
    for doc, copies in planted:
        for _ in range(copies):
            yield doc
    yield from near
    while True:
        for doc in docs:
            yield mutated(doc)


def write_bin(out: Path, tokenizer: Path, target: int, rng: np.random.Generator) -> None:
    from repeatlens.data.tokenizer import bos_id, load_tokenizer

    tok = load_tokenizer(tokenizer)
    bos = np.array([bos_id(tok)], dtype=np.uint16)
    docs = [np.array(e.ids, dtype=np.uint16) for e in tok.encode_batch(pieces(), add_special_tokens=False)]
    pool = np.concatenate(docs)
    planted = [(docs[i], n) for n, chosen in ((10, 200), (100, 20), (1000, 2)) for i in rng.choice(len(docs), chosen, replace=False)]

    def mutate_ids(ids: np.ndarray, rate: float) -> np.ndarray:
        out = ids.copy()
        hits = rng.random(len(ids)) < rate
        out[hits] = pool[rng.integers(0, len(pool), int(hits.sum()))]
        return out

    near = [mutate_ids(docs[i], 0.005) for i in rng.choice(len(docs), 50, replace=False) for _ in range(3)]
    written = 0
    with open(out, "wb") as f:
        for ids in documents(planted, near, docs, lambda d: mutate_ids(d, 0.02)):
            f.write(bos.tobytes() + ids.tobytes())
            written += 2 * (len(ids) + 1)
            if written >= target:
                break
    print(f"{out}: {written / 1e9:.2f} GB, {written // 2:,} tokens")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--gb", type=float, default=1.05)
    ap.add_argument("--tokenizer", type=Path, help="for a .bin target: the tokenizer.json to encode with")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".bin":
        write_bin(args.out, args.tokenizer, int(args.gb * 1e9), rng)
        return
    docs = pieces()
    vocab = sorted({w for d in docs[:2000] for w in d.split()})
    target = int(args.gb * 1e9)
    planted = [(d, n) for n, chosen in ((10, 200), (100, 20), (1000, 2)) for d in rng.choice(docs, chosen, replace=False)]
    near = [mutate(d, 0.005, rng, vocab) for d in rng.choice(docs, 50, replace=False) for _ in range(3)]
    written = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for text in documents(planted, near, docs, lambda d: mutate(d, 0.02, rng, vocab)):
            line = json.dumps({"text": text}) + "\n"
            f.write(line)
            written += len(line.encode())
            if written >= target:
                break
    print(f"{args.out}: {written / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
