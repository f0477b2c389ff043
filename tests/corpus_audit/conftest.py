"""A corpus with known duplication, its tokenizer, and the same documents in every format."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from repeatlens.data.tokenizer import BOS_TOKEN, encode_stream, save_tokenizer, train_bpe

SPAN_WORDS = 200  # the long passage shared by the span documents


@dataclass(frozen=True)
class KnownCorpus:
    """Documents in corpus order, and which of them were built to repeat how.

    unique: 40 documents seen once; ten: 3 documents copied 10 times; hundred: 2 copied 100
    times; near: a document and 3 variants with 2 words changed each (4 documents, Jaccard of
    their token 5-grams about 0.9); span: 5 otherwise unique documents that share one
    passage of 200 words (a repeated span, not a near-duplicate: about 0.2 Jaccard).
    """

    docs: list[str]
    unique: list[str]
    ten: list[str]
    hundred: list[str]
    near: list[str]
    span: list[str]
    passage: str


def _words(rng: np.random.Generator, vocab: list[str], n: int) -> str:
    return " ".join(vocab[i] for i in rng.integers(0, len(vocab), n))


def build_known_corpus(seed: int = 0) -> KnownCorpus:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(rng.choice(letters, rng.integers(2, 8))) for _ in range(3000)})
    unique = [_words(rng, vocab, int(rng.integers(60, 120))) for _ in range(40)]
    ten = [_words(rng, vocab, 80) for _ in range(3)]
    hundred = [_words(rng, vocab, 40) for _ in range(2)]
    base = _words(rng, vocab, 150).split()
    near = [" ".join(base)]
    for v in range(3):
        edited = list(base)
        for pos in rng.choice(len(base), 2, replace=False):
            edited[pos] = f"edit{v}x{pos}"
        near.append(" ".join(edited))
    passage = _words(rng, vocab, SPAN_WORDS)
    span = [f"{_words(rng, vocab, 120)} {passage} {_words(rng, vocab, 120)}" for _ in range(5)]
    docs = unique + ten * 10 + hundred * 100 + near + span
    order = rng.permutation(len(docs))
    return KnownCorpus([docs[i] for i in order], unique, ten, hundred, near, span, passage)


@pytest.fixture(scope="session")
def known() -> KnownCorpus:
    return build_known_corpus()


@pytest.fixture(scope="session")
def known_files(known: KnownCorpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The known corpus in every format the project reads, and its tokenizer."""
    root = tmp_path_factory.mktemp("known")
    tok = train_bpe(known.docs, 400)
    files = {"tokenizer": save_tokenizer(tok, root / "tokenizer.json")}
    (root / "corpus.txt").write_text(BOS_TOKEN.join(known.docs), encoding="utf-8")
    files["text"] = root / "corpus.txt"
    lines = "".join(json.dumps({"text": d}) + "\n" for d in known.docs)
    (root / "corpus.jsonl").write_text(lines, encoding="utf-8")
    files["jsonl"] = root / "corpus.jsonl"
    (root / "corpus.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    files["jsonl.gz"] = root / "corpus.jsonl.gz"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": known.docs}), root / "corpus.parquet", row_group_size=50)
    files["parquet"] = root / "corpus.parquet"
    folder = root / "folder"
    folder.mkdir()
    for i, d in enumerate(known.docs):
        (folder / f"doc{i:04d}.txt").write_text(d, encoding="utf-8")
    files["folder"] = folder
    files["glob"] = Path(str(folder / "doc*.txt"))
    import datasets

    datasets.Dataset.from_dict({"text": known.docs}).save_to_disk(str(root / "hf"))
    files["hf"] = root / "hf"
    stream = encode_stream(tok, known.docs)
    stream.tofile(root / "corpus.bin")
    files["bin"] = root / "corpus.bin"
    return files
