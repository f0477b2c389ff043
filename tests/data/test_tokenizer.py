"""Byte-level BPE: training, exact round trips, BOS layout, persistence, TransformerLens use."""

from __future__ import annotations

import json
import os
import time
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from tokenizers import Tokenizer

from repeatlens.data.corpus import iter_documents
from repeatlens.data.tokenizer import (
    BOS_TOKEN,
    encode_stream,
    hf_tokenizer,
    load_tokenizer,
    save_tokenizer,
    token_dtype,
    tokenizer_hash,
    train_bpe,
)
from repeatlens.errors import ConfigError, DataError

TRICKY = "Hamlet:  To be, or not to be—that is the question.\r\n\tÜber naïve café 😀 日本語\n\n  x\u00a0y<|endoftext|>z"


@pytest.fixture(scope="module")
def timed_training() -> tuple[Tokenizer, float]:
    start = time.perf_counter()
    tok = train_bpe(iter_documents("shakespeare"), vocab_size=512)
    return tok, time.perf_counter() - start


@pytest.fixture(scope="module")
def shakespeare_tok(timed_training) -> Tokenizer:
    return timed_training[0]


def test_trains_on_the_bundled_corpus(timed_training):
    """(How long it takes is a benchmark's business on this shared machine, not a test's.)"""
    tok, _seconds = timed_training
    assert tok.get_vocab_size() == 512


def test_bos_is_id_0_and_single_special_token(shakespeare_tok):
    assert shakespeare_tok.token_to_id(BOS_TOKEN) == 0
    assert shakespeare_tok.id_to_token(0) == BOS_TOKEN
    specials = [t for t in json.loads(shakespeare_tok.to_str())["added_tokens"] if t["special"]]
    assert [t["content"] for t in specials] == [BOS_TOKEN]


def test_exact_round_trip_of_any_text(shakespeare_tok):
    ids = shakespeare_tok.encode(TRICKY).ids
    assert shakespeare_tok.decode(ids, skip_special_tokens=False) == TRICKY
    assert 0 in ids  # the literal special token in text encodes to BOS
    assert len(ids) < len(TRICKY.encode())  # merges learned from Shakespeare compress it
    plain = "naïve 日本語 \x00\x7f end"
    assert shakespeare_tok.decode(shakespeare_tok.encode(plain).ids) == plain


def test_vocab_size_too_small_is_config_error():
    for bad in (257, 10, 300.0, True):
        with pytest.raises(ConfigError, match=r"^data.vocab_size: .* at least 258"):
            train_bpe(["some text"], vocab_size=bad)
    assert train_bpe(["abab abab"] * 3, vocab_size=258).get_vocab_size() == 258


def test_training_is_deterministic_and_hash_tracks_content(shakespeare_tok):
    docs = list(iter_documents("shakespeare"))[:6]
    a = train_bpe(docs, vocab_size=600)
    b = train_bpe(iter(docs), vocab_size=600)
    assert a.to_str() == b.to_str()
    assert tokenizer_hash(a) == tokenizer_hash(b)
    assert len(tokenizer_hash(a)) == 16 and int(tokenizer_hash(a), 16) >= 0
    assert tokenizer_hash(train_bpe(docs, vocab_size=599)) != tokenizer_hash(a)
    assert tokenizer_hash(shakespeare_tok) != tokenizer_hash(a)


def test_encode_stream_puts_bos_before_each_document(shakespeare_tok):
    docs = ["First doc.", "Second, with é.", TRICKY.replace(BOS_TOKEN, "")]
    ids = encode_stream(shakespeare_tok, docs)
    assert ids.dtype == np.uint16 and ids.ndim == 1
    starts = np.flatnonzero(ids == 0)
    assert list(starts) == [0, starts[1], starts[2]] and len(starts) == 3
    pieces = np.split(ids, starts[1:])
    for doc, piece in zip(docs, pieces):
        assert piece[0] == 0
        assert list(piece[1:]) == shakespeare_tok.encode(doc).ids
        assert shakespeare_tok.decode(piece[1:].tolist()) == doc
    assert encode_stream(shakespeare_tok, iter([]), progress=True).size == 0


def test_encode_stream_batches_large_inputs(shakespeare_tok):
    docs = [f"document number {i}" for i in range(600)]  # more than one encode batch
    ids = encode_stream(shakespeare_tok, (d for d in docs), dtype=np.uint32)
    assert ids.dtype == np.uint32
    assert (ids == 0).sum() == 600
    expected = [t for d in docs for t in [0, *shakespeare_tok.encode(d).ids]]
    assert ids.tolist() == expected


def test_token_dtype_widens_for_large_vocab():
    class Big:
        def get_vocab_size(self) -> int:
            return 70_000

    class Edge:
        def get_vocab_size(self) -> int:
            return 65_536  # ids 0..65535 still fit in uint16

    assert token_dtype(Big()) == np.uint32
    assert token_dtype(Big(), np.uint32) == np.uint32
    assert token_dtype(Edge()) == np.uint16


def test_save_load_round_trip_is_atomic(shakespeare_tok, tmp_path):
    path = save_tokenizer(shakespeare_tok, tmp_path / "deep" / "tokenizer.json")
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokenizer.json"]  # no temp file left
    loaded = load_tokenizer(path)
    assert tokenizer_hash(loaded) == tokenizer_hash(shakespeare_tok)
    assert loaded.encode(TRICKY).ids == shakespeare_tok.encode(TRICKY).ids


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match=r"^tokenizer: no file at '.*nope.json'$"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0", "model": ')
    with pytest.raises(DataError, match=r"^tokenizer: '.*bad.json' is not a valid tokenizer JSON file") as info:
        load_tokenizer(bad)
    assert "\n" not in str(info.value)
    foreign = train_bpe(["abc abc"] * 3, vocab_size=300)
    data = json.loads(foreign.to_str())
    data["added_tokens"] = []
    del data["model"]["vocab"][BOS_TOKEN]
    (tmp_path / "nobos.json").write_text(json.dumps(data))
    tok = load_tokenizer(tmp_path / "nobos.json")  # any layout loads; whether it can serve is repeatlens.data.special's call
    from repeatlens.data.special import from_tokenizer

    with pytest.raises(DataError, match=r"^nobos.json: no BOS-like token \(<\|endoftext\|>, .*\) in this tokenizer; set data.bos_token"):
        from_tokenizer(tok, "nobos.json")


def test_hf_tokenizer_drives_hooked_transformer_offline(shakespeare_tok, tmp_path):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_ctx=64, d_head=8, n_heads=2, attn_only=True,
        d_vocab=shakespeare_tok.get_vocab_size(), act_fn=None,
    )
    text = "To be, or not to be — naïve 😀"
    expected = shakespeare_tok.encode(text).ids
    for source in (shakespeare_tok, save_tokenizer(shakespeare_tok, tmp_path / "tok.json")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = HookedTransformer(cfg, tokenizer=hf_tokenizer(source))
        tokens = model.to_tokens(text)
        assert tokens.shape == (1, len(expected) + 1)
        assert tokens[0].tolist() == [0, *expected]  # exactly one BOS, id 0
        assert model.to_tokens(text, prepend_bos=False)[0].tolist() == expected
        assert model.to_string(tokens[0, 1:]) == text
        assert model.to_string(tokens[0]) == BOS_TOKEN + text
        assert model(tokens).shape == (1, len(expected) + 1, cfg.d_vocab)
    assert shakespeare_tok.encode(text).ids == expected  # the wrapper did not modify tok
