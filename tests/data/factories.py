"""Tiny corpora and tokenizers made in the tests: a text of random words, a GPT-2-layout
tokenizer (``<|endoftext|>`` as its last id, ``!`` as id 0), a pre-tokenized ``.bin``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WORDS = ("the cat sat on a mat and then it ran far away from home while birds sang in tall green trees near "
         "old stone walls def return import class lambda yield print value index count").split()


def word_documents(n_docs: int, words_per_doc: int = 60, seed: int = 0) -> list[str]:
    """``n_docs`` documents of random words (seeded)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=words_per_doc)) + "." for _ in range(n_docs)]


def write_text_corpus(path: Path, n_docs: int = 40, seed: int = 0) -> Path:
    """A text file of documents separated by ``<|endoftext|>`` (the GPT-2 dump convention)."""
    path.write_text("<|endoftext|>".join(word_documents(n_docs, seed=seed)), encoding="utf-8")
    return path


def gpt2_layout_tokenizer(path: Path, documents: list[str], vocab_size: int = 300) -> Path:
    """A byte-level BPE laid out as GPT-2's is: the byte alphabet first (id 0 = ``!``), then
    the merges, then ``<|endoftext|>`` as the last id; saved as tokenizers JSON at ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(documents, trainer=trainer)
    tok.add_special_tokens(["<|endoftext|>"])
    assert tok.id_to_token(0) == "!" and tok.token_to_id("<|endoftext|>") == tok.get_vocab_size() - 1
    tok.save(str(path))
    return path


def bare_tokenizer(path: Path, documents: list[str]) -> Path:
    """A byte-level BPE with no special token at all (no BOS-like token to find)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(documents, trainer=trainers.BpeTrainer(vocab_size=280, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                                   show_progress=False))
    tok.save(str(path))
    return path


def write_bin(path: Path, n_tokens: int, vocab: int, bos: int, dtype: str = "uint16", seed: int = 0) -> Path:
    """A flat token file of ``n_tokens`` ids below ``vocab``, documents of ~50 tokens each
    opened by ``bos`` (as nanoGPT's prepare scripts write them)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=n_tokens)
    ids[ids == bos] = (bos + 1) % vocab
    ids[rng.random(n_tokens) < 1 / 50] = bos
    ids.astype(dtype).tofile(path)
    return path


def tiny_text_run(source: Any, **data: Any) -> dict[str, Any]:
    """The ``tiny_config`` sections of a run on a corpus: seq_len 32, half synthetic."""
    return {"data": {"source": str(source), "seq_len": 32, "test_sequences": 16, "synthetic_fraction": 0.5, **data}}
