"""Token pools: corpus → tokenizer → cached token stream → a run's pool of sequences.

The tokenized corpus is cached once per (corpus, tokenizer) under the cache directory
(``data.cache_dir``, ``$REPEATLENS_CACHE`` or ``~/.cache/repeatlens``) and memory-mapped,
so a second run never re-tokenizes. A run's pool is written into its run directory as
``data/pool.npy`` with rows laid out as::

    [ test (held out) | repeated subset | unique ]

Test rows are chosen from the corpus (and the synthetic source) independently of f and E,
so every run of a sweep with the same seed and data config is evaluated on the same test
sequences. Training rows are drawn from the remaining chunks, never overlapping the test.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from tokenizers import Tokenizer

from repeatlens.config import DataConfig
from repeatlens.data.mixture import MixturePlan
from repeatlens.data.seeds import rng, stream_seed
from repeatlens.data.synthetic import BOS_ID, synthetic_sequences
from repeatlens.errors import DataError
from repeatlens.io import atomic_save_npy

SPECIAL_IDS = (BOS_ID,)


def cache_root(data: DataConfig) -> Path:
    root = data.cache_dir or os.environ.get("REPEATLENS_CACHE") or Path.home() / ".cache" / "repeatlens"
    return Path(root).expanduser()


@dataclass
class Corpus:
    """A tokenized corpus cut into BOS-prefixed chunks of ``seq_len`` tokens.

    Attributes:
        chunks: [n_chunks, seq_len] memory-mapped view (None for the synthetic-only source).
        vocab_size: number of token ids the model needs.
        tokenizer_json: serialized tokenizer (None for synthetic-only and .bin corpora).
        fingerprint: identifies corpus + tokenizer (cache key, recorded in the manifest).
        low: smallest id a random/synthetic token may take (special ids are below it).
    """

    chunks: "Optional[np.ndarray | _BosView]"
    vocab_size: int
    tokenizer_json: Optional[str]
    fingerprint: str
    low: int = 1

    @property
    def n_chunks(self) -> int:
        return 0 if self.chunks is None else len(self.chunks)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.vocab_size <= 65536 else np.uint32)


def _is_bin(data: DataConfig) -> bool:
    return data.format == "bin" or (data.format == "auto" and str(data.source).endswith(".bin"))


def _chunk(stream: np.ndarray, seq_len: int, bos: int) -> "np.ndarray | _BosView":
    """Cut a flat stream into rows ``[bos, seq_len-1 tokens]`` (a view, plus the BOS column)."""
    body = seq_len - 1
    n = len(stream) // body
    if n == 0:
        return np.zeros((0, seq_len), dtype=stream.dtype)
    return _BosView(stream[: n * body].reshape(n, body), bos)


class _BosView:
    """Rows of a memory-mapped [n, seq_len-1] array with a BOS column prepended on access."""

    def __init__(self, body: np.ndarray, bos: int):
        self.body, self.bos = body, bos
        self.dtype = body.dtype
        self.shape = (body.shape[0], body.shape[1] + 1)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        rows = np.asarray(self.body[idx])
        out = np.empty(rows.shape[:-1] + (self.shape[1],), dtype=self.dtype)
        out[..., 0] = self.bos
        out[..., 1:] = rows
        return out


def corpus_tokenizer(data: DataConfig, corpus_fp: str) -> Tokenizer:
    """The tokenizer a text corpus is read with: ``data.tokenizer`` if given, else the BPE
    of ``data.vocab_size`` trained on the corpus, cached beside the token streams (trained
    once per corpus fingerprint ``corpus_fp`` and vocabulary size)."""
    from repeatlens.data import corpus as corpus_mod
    from repeatlens.data import tokenizer as tok_mod

    if data.tokenizer:
        return tok_mod.load_tokenizer(data.tokenizer)
    tok_dir = cache_root(data) / f"tok-{corpus_fp}-v{data.vocab_size}"
    tok_path = tok_dir / "tokenizer.json"
    if tok_path.is_file():
        return tok_mod.load_tokenizer(tok_path)
    tok = tok_mod.train_bpe(corpus_mod.iter_documents(data.source, data.format, data.text_field), data.vocab_size)
    tok_mod.save_tokenizer(tok, tok_path)  # creates tok_dir; an unwritable cache is a one-line WriteError
    return tok


def load_corpus(data: DataConfig, *, progress: bool = True) -> Corpus:
    """Tokenize (or load from the cache) the corpus named by ``data``."""
    if data.synthetic_only:
        v = data.synthetic.vocab_size
        return Corpus(chunks=None, vocab_size=v, tokenizer_json=None, fingerprint=f"synthetic-v{v}")

    from repeatlens.data import corpus as corpus_mod

    if _is_bin(data):
        stream = corpus_mod.load_token_bin(data.source, data.bin_dtype)
        vocab = data.bin_vocab_size or int(stream.max()) + 1
        if data.bin_bos_id >= vocab:
            raise DataError(f"data.bin_bos_id = {data.bin_bos_id} is outside the vocabulary of {data.source} ({vocab} ids)")
        fp = corpus_mod.corpus_fingerprint(data.source, "bin")
        low = 0 if data.bin_bos_id != 0 else 1
        return Corpus(_chunk(stream, data.seq_len, data.bin_bos_id), vocab, None, fp, low=low)

    from repeatlens.data import tokenizer as tok_mod

    corpus_fp = corpus_mod.corpus_fingerprint(data.source, data.format, data.text_field)
    tok = corpus_tokenizer(data, corpus_fp)
    tok_hash = tok_mod.tokenizer_hash(tok)
    fp = hashlib.sha256(f"{corpus_fp}:{tok_hash}".encode()).hexdigest()[:16]
    stream_path = cache_root(data) / f"stream-{fp}.npy"
    if not stream_path.is_file():
        docs = corpus_mod.iter_documents(data.source, data.format, data.text_field)
        stream = tok_mod.encode_stream(tok, docs, progress=progress)
        atomic_save_npy(stream_path, stream)
    stream = np.load(stream_path, mmap_mode="r")
    return Corpus(_chunk(stream, data.seq_len, BOS_ID), tok.get_vocab_size(), tok.to_str(), fp)


@dataclass
class Pool:
    """A run's sequences: rows [test | repeated | unique], plus provenance.

    Attributes:
        tokens: ``[n_test + n_repeated + n_unique, seq_len]``.
        is_synthetic: per row, whether it came from the synthetic source (else the corpus).
        synthetic_ids: ``(low, high)``: synthetic tokens are drawn from ``[low, high)``
            (None when the run has no synthetic share).
    """

    tokens: np.ndarray
    n_test: int
    n_repeated: int
    n_unique: int
    n_synthetic: int
    vocab_size: int
    is_synthetic: Optional[np.ndarray] = None
    synthetic_ids: Optional[tuple[int, int]] = None

    @property
    def first_repeated(self) -> int:
        return self.n_test

    @property
    def first_unique(self) -> int:
        return self.n_test + self.n_repeated

    def test(self) -> np.ndarray:
        return self.tokens[: self.n_test]

    def repeated(self) -> np.ndarray:
        return self.tokens[self.first_repeated : self.first_unique]


def _split(n: int, frac: float) -> tuple[int, int]:
    n_syn = int(round(frac * n))
    return n - n_syn, n_syn


def build_pool(data: DataConfig, plan: MixturePlan, corpus: Corpus, seed: int, source: str = "any") -> Pool:
    """Draw a run's test, repeated and unique sequences from ``corpus`` and the synthetic source.

    ``source`` (``mixture.repeated_source``) says where the repeated subset comes from:
    ``"any"`` draws it like every training row (in proportion to the synthetic share);
    ``"corpus"`` takes it from the corpus only and ``"synthetic"`` from the synthetic
    source only, while the unique rows keep ``data.synthetic_fraction``. Corpus rows are
    taken in the order of one seeded permutation (test rows first), so runs that differ in
    f, E or source share their test rows, and a run's corpus rows start with the same
    chunks as every other run's of the seed.

    Raises:
        DataError: when the corpus has fewer sequences than the spec needs (naming the
            numbers); wrapping around would itself be unplanned repetition.
    """
    frac = 1.0 if data.synthetic_only else data.synthetic_fraction
    n_train = plan.n_repeated + plan.n_unique
    test_corp, test_syn = _split(data.test_sequences, frac)
    train_corp, train_syn = _split(n_train, frac)
    if source != "any" and plan.n_repeated:  # the repeated subset from one source, the unique rows keep the share
        uni_corp, uni_syn = _split(plan.n_unique, frac)
        rep_corp, rep_syn = (plan.n_repeated, 0) if source == "corpus" else (0, plan.n_repeated)
        train_corp, train_syn = rep_corp + uni_corp, rep_syn + uni_syn
    need = test_corp + train_corp
    if need > corpus.n_chunks:
        raise DataError(
            f"data.source '{data.source}': has {corpus.n_chunks:,} sequences of {data.seq_len} tokens, but the spec needs "
            f"{need:,} from it ({test_corp:,} test + {train_corp:,} training = {plan.n_repeated:,} repeated + "
            f"{plan.n_unique:,} unique, less the synthetic share); lower mixture.total_tokens or raise data.synthetic_fraction"
        )
    dtype = corpus.dtype
    seq_len = data.seq_len
    high = corpus.vocab_size
    if data.synthetic.token_ids is not None and not data.synthetic_only:
        if corpus.low + data.synthetic.token_ids > corpus.vocab_size:
            raise DataError(
                f"data.synthetic.token_ids = {data.synthetic.token_ids} exceeds the {corpus.vocab_size - corpus.low} "
                f"non-special ids of the '{data.source}' vocabulary"
            )
        high = corpus.low + data.synthetic.token_ids
    syn = dict(cfg=data.synthetic, low=corpus.low, high=high, dtype=dtype)
    parts_test, parts_train = [], []
    if need:
        perm = rng(seed, "pool").permutation(corpus.n_chunks)
        parts_test.append(corpus.chunks[np.sort(perm[:test_corp])])
        parts_train.append(corpus.chunks[np.sort(perm[test_corp:need])])
    if test_syn:
        parts_test.append(synthetic_sequences(test_syn, seq_len, seed=stream_seed(seed, "test_synthetic"), **syn)[0])
    if train_syn:
        parts_train.append(synthetic_sequences(train_syn, seq_len, seed=stream_seed(seed, "train_synthetic"), **syn)[0])
    test = np.concatenate(parts_test).astype(dtype) if parts_test else np.zeros((0, seq_len), dtype)
    train = np.concatenate(parts_train).astype(dtype) if parts_train else np.zeros((0, seq_len), dtype)
    # which rows are synthetic: they were concatenated after the corpus rows
    syn_test = np.arange(len(test)) >= len(test) - test_syn
    syn_train = np.arange(len(train)) >= len(train) - train_syn
    order_test = rng(seed, "test_rows").permutation(len(test))
    if source == "any" or not plan.n_repeated:
        order_train = rng(seed, "train_rows").permutation(len(train))
    else:  # rows [0, train_corp) are corpus, the rest synthetic; the repeated subset first, then the shuffled unique rows
        corp, syn_rows = np.arange(train_corp), np.arange(train_corp, len(train))
        rep = corp[: plan.n_repeated] if source == "corpus" else syn_rows[: plan.n_repeated]
        uni = np.setdiff1d(np.arange(len(train)), rep)
        order_train = np.concatenate([rep, uni[rng(seed, "train_rows").permutation(len(uni))]])
    return Pool(
        tokens=np.concatenate([test[order_test], train[order_train]]),
        n_test=len(test),
        n_repeated=plan.n_repeated,
        n_unique=plan.n_unique,
        n_synthetic=test_syn + train_syn,
        vocab_size=corpus.vocab_size,
        is_synthetic=np.concatenate([syn_test[order_test], syn_train[order_train]]),
        synthetic_ids=(corpus.low, high) if frac > 0 else None,
    )
