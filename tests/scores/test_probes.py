"""Probe batches: layout, exclusions, determinism, caching."""

from __future__ import annotations

import pytest
import torch

from repeatlens.errors import ConfigError
from repeatlens.scores.probes import allowed_tokens, get_probes, make_probes


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
