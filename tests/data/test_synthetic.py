"""The synthetic source: repeats of varying length and position, special ids excluded."""

from __future__ import annotations

import numpy as np

from repeatlens.config import SyntheticConfig
from repeatlens.data.special import SpecialIds
from repeatlens.data.synthetic import synthetic_sequences


def test_copies_repeat_one_segment_earlier_with_varying_lengths() -> None:
    cfg = SyntheticConfig(min_len=3, max_len=9, vocab_size=64)
    toks, is_copy = synthetic_sequences(200, 64, cfg, ids=np.arange(1, 64), bos=0, seed=0)
    assert toks.shape == (200, 64) and (toks[:, 0] == 0).all()
    assert toks[:, 1:].min() >= 1 and toks.max() < 64
    lengths = set()
    for row, mask in zip(toks, is_copy):
        for t in np.flatnonzero(mask):
            # some period L in [3, 9] explains every copy position
            periods = [L for L in range(3, 10) if t - L >= 1 and row[t] == row[t - L]]
            assert periods, (row, t)
        starts = np.flatnonzero(mask[1:] & ~mask[:-1]) + 1
        for s in starts:
            for L in range(3, 10):
                if s + L <= len(row) and (row[s : s + L] == row[s - L : s]).all() and mask[s : s + L].all():
                    lengths.add(L)
                    break
    assert len(lengths) >= 5, f"repeat lengths do not vary: {lengths}"
    first_copy = [np.flatnonzero(m)[0] for m in is_copy if m.any()]
    assert np.std(first_copy) > 2, "repeat positions do not vary"
    assert 0.3 < is_copy.mean() < 0.9


def test_deterministic_in_seed() -> None:
    cfg = SyntheticConfig()
    a, _ = synthetic_sequences(10, 40, cfg, ids=np.arange(1, 100), bos=0, seed=3)
    b, _ = synthetic_sequences(10, 40, cfg, ids=np.arange(1, 100), bos=0, seed=3)
    c, _ = synthetic_sequences(10, 40, cfg, ids=np.arange(1, 100), bos=0, seed=4)
    assert (a == b).all() and (a != c).any()


def test_token_ids_restrict_synthetic_tokens_in_a_corpus_mix() -> None:
    """data.synthetic.token_ids: synthetic rows use only the first N ordinary ids; corpus rows are untouched."""
    import pytest

    from repeatlens.config import DataConfig
    from repeatlens.data.mixture import MixturePlan
    from repeatlens.data.pools import build_pool
    from repeatlens.data.streams import Corpus, _BosView
    from repeatlens.errors import DataError

    rng = np.random.default_rng(0)
    body = rng.integers(400, 500, size=(64, 15)).astype(np.uint16)  # corpus ids all >= 400
    special = SpecialIds(0, (0, 1, 2))
    corpus = Corpus(chunks=_BosView(body, 0), vocab_size=512, tokenizer_json=None, fingerprint="fake", special=special)
    plan = MixturePlan(seq_len=16, repeat_count=1, n_total=40, n_repeated=0, n_unique=40)
    data = DataConfig(source="fake.txt", seq_len=16, synthetic_fraction=0.5, test_sequences=8,
                      synthetic={"min_len": 2, "max_len": 4, "token_ids": 10})
    pool = build_pool(data, plan, corpus, seed=0)
    rows = pool.tokens[:, 1:]
    synthetic = rows[rows.max(axis=1) < 400]
    assert len(synthetic) == pool.n_synthetic == 24  # half of 8 test + 40 training rows
    assert synthetic.min() >= 3 and synthetic.max() < 13 and len(np.unique(synthetic)) == 10
    assert pool.synthetic_ids == (3, 13)
    too_many = data.model_copy(update={"synthetic": data.synthetic.model_copy(update={"token_ids": 600})})
    with pytest.raises(DataError, match=r"data.synthetic.token_ids = 600 exceeds the 509 non-special ids"):
        build_pool(too_many, plan, corpus, seed=0)


def test_special_ids_inside_the_vocabulary_are_skipped_and_every_row_starts_with_the_bos() -> None:
    """A BOS in the middle of the vocabulary (a .bin with bin_bos_id 5): no synthetic token takes it."""
    special = SpecialIds(5, (5, 9))
    ids = special.ordinary_ids(12, 8)
    assert ids.tolist() == [0, 1, 2, 3, 4, 6, 7, 8]
    toks, _ = synthetic_sequences(300, 32, SyntheticConfig(min_len=2, max_len=6), ids=ids, bos=5, seed=1)
    assert (toks[:, 0] == 5).all()
    body = toks[:, 1:]
    assert set(np.unique(body).tolist()) == set(ids.tolist())  # every ordinary id drawn, no special one
