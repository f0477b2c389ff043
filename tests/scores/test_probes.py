"""Probe batches: layout, families, exclusions, determinism, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repeatlens.errors import ConfigError
from repeatlens.scores.probes import ProbeSource, ProbeSpec, allowed_tokens, build_probes, get_probes, make_probes


@pytest.mark.parametrize("n_ctx, P", [(32, 7), (64, 15), (101, 25), (1024, 25)])
def test_layout_fits_context(n_ctx: int, P: int) -> None:
    pr = make_probes(64, n_ctx, batch=3)
    L, T = pr.copy_len, pr.seq_len
    assert (pr.prefix_len, L, T) == (P, 2 * P, 1 + 4 * P)
    assert T <= n_ctx and pr.tokens.shape == (6, T)
    assert (pr.tokens[:, 0] == 0).all()
    copy, prefix = pr.copy_tokens, pr.prefix_tokens
    assert torch.equal(copy[:, 1 : L + 1], copy[:, L + 1 :])
    block = prefix[:, 1 : P + 1]
    assert torch.equal(prefix[:, 1:], block.repeat(1, 4))


def test_random_tokens_avoid_special_ids_and_are_distinct() -> None:
    pr = make_probes(64, 64, batch=8, exclude=(0, 1, 2, 63))
    body = pr.tokens[:, 1:]
    assert not torch.isin(body, torch.tensor([0, 1, 2, 63])).any()
    r = pr.copy_tokens[:, 1 : pr.copy_len + 1]
    assert all(len(set(row.tolist())) == pr.copy_len for row in r)  # each token has one earlier occurrence


def test_tiny_vocab_falls_back_to_replacement() -> None:
    pr = make_probes(8, 64, batch=2)  # 7 allowed ids < L = 30
    assert pr.copy_len == 30 and not (pr.tokens[:, 1:] == 0).any()


def test_seeded_and_independent_of_global_rng() -> None:
    torch.manual_seed(123)
    a = make_probes(64, 32, seed=5)
    torch.manual_seed(456)
    b = make_probes(64, 32, seed=5)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, make_probes(64, 32, seed=6).tokens)


def test_frequencies_drop_unseen_rarest_and_most_frequent() -> None:
    freq = torch.arange(100, dtype=torch.float64)  # id 0 never seen; 99 most frequent
    ids = allowed_tokens(100, exclude=(5,), frequencies=freq, drop_fraction=0.05)
    kept = set(ids.tolist())
    assert 0 not in kept and 5 not in kept
    # 98 seen non-excluded ids; 4 dropped at each end: 1-4 (rarest, 5 excluded) and 96-99
    assert kept == set(range(6, 96))
    pr = make_probes(100, 32, exclude=(5,), frequencies=freq, drop_fraction=0.05)
    assert torch.isin(pr.tokens[:, 1:], ids).all()


def test_bad_inputs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="n_ctx=4"):
        make_probes(64, 4)
    with pytest.raises(ConfigError, match="allowed"):
        make_probes(2, 32, exclude=(0, 1))
    with pytest.raises(ConfigError, match="frequencies"):
        allowed_tokens(10, frequencies=[1, 2, 3])


def test_get_probes_is_cached() -> None:
    assert get_probes(64, 32, 0) is get_probes(64, 32, 0)
    assert get_probes(64, 32, 0) is not get_probes(64, 32, 1)


# ------------------------------------------------------------------------------ families


def _source(**kw) -> ProbeSource:
    rng = np.random.default_rng(0)
    text = np.concatenate([np.zeros((6, 1), np.int64), rng.integers(1, 90, (6, 63))], axis=1)
    counts = np.zeros(100, np.int64)
    counts[10:60] = np.arange(1, 51) ** 2  # ids 10..59 seen, 59 most often; the rest never
    base = dict(d_vocab=100, n_ctx=64, bos=0, exclude=(99,), train_counts=counts, synthetic_ids=(1, 21), text=text)
    return ProbeSource(**{**base, **kw})


def test_every_family_is_drawn_from_its_own_ids() -> None:
    src = _source()
    assert src.families() == ["uniform", "train", "synthetic", "text"]
    uni, tr, syn, txt = (build_probes(ProbeSpec(f, copy_len=20, batch=64), src) for f in src.families())
    body = lambda p: torch.cat([p.copy_tokens[:, 1:], p.prefix_tokens[:, 1:]], dim=1)  # noqa: E731
    assert not torch.isin(body(uni), torch.tensor([0, 99])).any() and body(uni).max() <= 98
    assert ((body(syn) >= 1) & (body(syn) < 21)).all()  # the synthetic source's range [1, 21)
    kept = allowed_tokens(100, (0, 99), src.train_counts, 0.01)  # 50 seen: none dropped at 1% ...
    assert set(kept.tolist()) == set(range(10, 60)) and torch.isin(body(tr), kept).all()
    # ... and drawn in proportion to frequency: the 25 most frequent ids carry 88% of the counts
    frequent = (body(tr) >= 35).float().mean().item()
    assert 0.75 < frequent < 0.97, frequent
    # text rows are real spans of the held-out text: each copy block occurs in some text row
    text = torch.as_tensor(src.text)
    for r in txt.copy_tokens[:, 1:21]:
        windows = text[:, 1:].unfold(1, 20, 1)  # [rows, start, 20]
        assert (windows == r).all(-1).any()
    assert all(p.family == f for p, f in zip((uni, tr, syn, txt), src.families()))


def test_families_that_do_not_apply_say_why() -> None:
    src = _source(train_counts=None, synthetic_ids=None, text=None)
    assert src.families() == ["uniform"]
    for family, why in (("train", "training tokens"), ("synthetic", "synthetic share"), ("text", "natural text")):
        with pytest.raises(ConfigError, match=why):
            build_probes(ProbeSpec(family), src)
    with pytest.raises(ConfigError, match="unknown family"):
        ProbeSpec("shakespeare")


def test_copy_length_is_a_setting_and_rows_are_padded_not_shifted() -> None:
    src = _source()
    p = build_probes(ProbeSpec("uniform", copy_len=20, batch=3), src)  # n_ctx 64: P = 15, prefix rows 61 long
    assert (p.copy_len, p.prefix_len, p.seq_len, p.copy_seq_len, p.prefix_seq_len) == (20, 15, 61, 41, 61)
    copy = p.copy_tokens
    assert copy.shape == (3, 41) and torch.equal(copy[:, 1:21], copy[:, 21:])
    assert (p.tokens[: p.n_copy, 41:] == 0).all()  # right-padded with BOS
    assert p.valid.sum(1).tolist() == [41] * 3 + [61] * 3
    long = build_probes(ProbeSpec("uniform", copy_len=31, batch=3), src)  # 1 + 62 > 61: prefix rows padded instead
    assert long.seq_len == 63 and long.prefix_tokens.shape == (3, 61)
    with pytest.raises(ConfigError, match=r"probe length L = 40: \[BOS, r, r\] needs 1 \+ 2L = 81 positions .* n_ctx = 64; expected L <= 31"):
        build_probes(ProbeSpec("uniform", copy_len=40), src)
    with pytest.raises(ConfigError, match="do not fit the held-out text"):
        build_probes(ProbeSpec("text", copy_len=31), _source(text=np.zeros((2, 20), np.int64)))


def test_probe_keys_round_trip() -> None:
    spec = ProbeSpec("synthetic", 30, 16, 0)
    assert spec.key == "synthetic:L30:B16:s0" and ProbeSpec.parse(spec.key) == spec
    assert ProbeSpec.parse("text:L20") == ProbeSpec("text", copy_len=20)
    assert ProbeSpec("uniform").resolved(64).key == "uniform:L30:B16:s0"  # the default L = 2P
    assert ProbeSpec("uniform").resolved(128).key == "uniform:L50:B16:s0"


def test_default_copy_len_stays_within_the_longest_repeat_the_data_makes() -> None:
    src = _source(n_ctx=128, text=None, longest_repeat=20)
    for family in src.families():
        probes = build_probes(ProbeSpec(family), src)
        assert probes.copy_len == 20 and probes.copy_tokens.shape[1] == 41, family
        assert torch.equal(probes.copy_tokens[:, 1:21], probes.copy_tokens[:, 21:])
    assert src.resolve(ProbeSpec("text")).key == "text:L20:B16:s0"  # the key build_probes' rows will carry
    assert build_probes(ProbeSpec("uniform", copy_len=40), src).copy_len == 40  # an explicit L is kept
    assert build_probes(ProbeSpec("uniform"), _source(n_ctx=128, longest_repeat=80)).copy_len == 50  # 2P caps it
    with pytest.raises(ConfigError, match="cannot read 'x3'"):
        ProbeSpec.parse("uniform:x3")


def test_families_are_pure_functions_of_their_inputs() -> None:
    src = _source()
    for family in src.families():
        a, b = (build_probes(ProbeSpec(family, seed=3), src) for _ in range(2))
        assert torch.equal(a.tokens, b.tokens)
        assert not torch.equal(a.tokens, build_probes(ProbeSpec(family, seed=4), src).tokens)
