"""Attention scores on hand-built patterns with known answers."""

from __future__ import annotations

import pytest
import torch

from repeatlens.scores import REGISTRY, make_probes, uniform_pattern
from repeatlens.scores.attention import (
    duplicate_token,
    induction,
    offset_profile,
    prefix_matching,
    previous_token,
    shifted_induction,
    shifted_induction_shift,
)
from repeatlens.scores.probes import Probes
from tests.scores.conftest import offset_pattern

ATTENTION = ["previous_token", "duplicate_token", "induction", "prefix_matching", "offset_profile", "shifted_induction", "shifted_induction_shift"]


def test_attention_metrics_registered() -> None:
    assert [n for n, s in REGISTRY.items() if s.kind == "attention"] == ATTENTION
    assert all(REGISTRY[n].per_head for n in ATTENTION)


def test_perfect_induction_pattern(probes64: Probes, patterns) -> None:
    pat = patterns.induction(probes64)
    assert induction(pat, probes64).item() == pytest.approx(1.0)
    assert duplicate_token(pat, probes64).item() == pytest.approx(0.0)
    # every other query attends to BOS, the previous token only of query 1
    assert previous_token(pat, probes64).item() == pytest.approx(1 / (probes64.seq_len - 1))


def test_perfect_previous_token_pattern(probes64: Probes, patterns) -> None:
    pat = patterns.previous_token(probes64)
    assert previous_token(pat, probes64).item() == pytest.approx(1.0)
    assert induction(pat, probes64).item() == pytest.approx(0.0)
    assert duplicate_token(pat, probes64).item() == pytest.approx(0.0)
    assert prefix_matching(pat, probes64).item() == pytest.approx(0.0)


def test_perfect_duplicate_token_pattern(probes64: Probes, patterns) -> None:
    T, L = probes64.seq_len, probes64.copy_len
    off = torch.ones(T, dtype=torch.long)
    off[L + 1 : 2 * L + 1] = L
    pat = patterns.offset(probes64.tokens.shape[0], 1, T, off)
    assert duplicate_token(pat, probes64).item() == pytest.approx(1.0)
    assert induction(pat, probes64).item() == pytest.approx(0.0)


def test_prefix_matching_counts_every_earlier_match(probes64: Probes, patterns) -> None:
    T, P = probes64.seq_len, probes64.prefix_len
    # induction-style attention one repeat back scores 1 (one of the matches) ...
    off = torch.arange(T)
    off[P + 1 :] = P - 1
    assert prefix_matching(patterns.offset(probes64.tokens.shape[0], 1, T, off), probes64).item() == pytest.approx(1.0)
    # ... and so does attention spread evenly over all matching positions
    tok = probes64.tokens
    prev = torch.cat([torch.full_like(tok[:, :1], -1), tok[:, :-1]], 1)
    target = (tok[:, :, None] == prev[:, None, :]).float().tril()
    target[:, :, 0] += (target.sum(-1) == 0).float()  # queries with no match attend to BOS
    pat = (target / target.sum(-1, keepdim=True))[:, None]
    assert prefix_matching(pat, probes64).item() == pytest.approx(1.0)
    assert induction(pat, probes64).item() == pytest.approx(1.0)  # copy rows: the one match


def test_bos_handling(probes64: Probes, patterns) -> None:
    """Attention parked on BOS counts only as query 1's previous token."""
    pat = patterns.bos(probes64)
    assert previous_token(pat, probes64).item() == pytest.approx(1 / (probes64.seq_len - 1))
    for fn in (duplicate_token, induction, prefix_matching):
        assert fn(pat, probes64).item() == 0.0
    # query 0 (BOS) is never scored: changing its row changes nothing
    pat2 = patterns.previous_token(probes64)
    pat2[:, :, 0, 0] = 0.0
    assert previous_token(pat2, probes64).item() == pytest.approx(1.0)


def test_heads_are_scored_independently(probes64: Probes, patterns) -> None:
    pat = torch.cat([patterns.induction(probes64), patterns.previous_token(probes64), patterns.bos(probes64)], dim=1)
    assert torch.allclose(induction(pat, probes64), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(previous_token(pat, probes64)[:2], torch.tensor([1 / (probes64.seq_len - 1), 1.0]))


def test_uniform_attention_gives_chance_levels(probes64: Probes, patterns) -> None:
    T, L, P = probes64.seq_len, probes64.copy_len, probes64.prefix_len
    pat = uniform_pattern(probes64.tokens.shape[0], 2, T)
    q = torch.arange(T, dtype=torch.float64)
    assert previous_token(pat, probes64)[0].item() == pytest.approx((1 / (q[1:] + 1)).mean().item(), rel=1e-5)
    second = 1 / (q[L + 1 : 2 * L + 1] + 1)
    assert induction(pat, probes64)[0].item() == pytest.approx(second.mean().item(), rel=1e-5)
    assert duplicate_token(pat, probes64)[1].item() == pytest.approx(second.mean().item(), rel=1e-5)
    # prefix matching: query in repeat k has k-1 matches
    reps = (q[P + 1 :] - 1).div(P, rounding_mode="floor")
    assert prefix_matching(pat, probes64)[0].item() == pytest.approx((reps / (q[P + 1 :] + 1)).mean().item(), rel=1e-5)


def test_half_precision_patterns(probes64: Probes, patterns) -> None:
    pat = patterns.induction(probes64).to(torch.bfloat16)
    out = induction(pat, probes64)
    assert out.dtype == torch.float32 and out.item() == pytest.approx(1.0)


# ------------------------------------------------------------ offsets and shifted induction


def _copy_offset_pattern(probes: Probes, offset_of_second_copy: int, n_heads: int = 1) -> torch.Tensor:
    """Second-copy queries attend ``offset`` back; every other query attends to BOS."""
    T, L = probes.seq_len, probes.copy_len
    off = torch.arange(T)
    off[L + 1 : 2 * L + 1] = offset_of_second_copy
    return offset_pattern(probes.tokens.shape[0], n_heads, T, off)


@pytest.mark.parametrize("d", [6, 12])
def test_a_head_at_offset_L_minus_1_minus_d_is_shifted_induction_by_d(d: int) -> None:
    probes = make_probes(64, 64, batch=4)  # L = 30
    L = probes.copy_len
    pat = _copy_offset_pattern(probes, L - 1 - d)  # offset L-7 for d = 6, L-13 for d = 12
    assert shifted_induction(pat, probes).item() == pytest.approx(1.0)
    assert shifted_induction_shift(pat, probes).item() == d
    assert induction(pat, probes).item() == pytest.approx(0.0)
    profile = offset_profile(pat, probes)[0]
    assert profile.shape == (L + 1,) and profile[L - 1 - d].item() == pytest.approx(1.0) and profile.sum().item() == pytest.approx(1.0)


def test_offset_profile_agrees_with_the_offset_scores(probes64: Probes, patterns) -> None:
    """Offset L-1 of the profile is the induction score, offset L the duplicate-token score."""
    g = torch.Generator().manual_seed(0)
    T, L = probes64.seq_len, probes64.copy_len
    pat = torch.rand(probes64.tokens.shape[0], 3, T, T, generator=g).tril()
    pat = pat / pat.sum(-1, keepdim=True)
    profile = offset_profile(pat, probes64)
    torch.testing.assert_close(profile[:, L - 1], induction(pat, probes64))
    torch.testing.assert_close(profile[:, L], duplicate_token(pat, probes64))
    assert (shifted_induction(pat, probes64) >= induction(pat, probes64)).all()
    canonical = patterns.induction(probes64)
    assert shifted_induction_shift(canonical, probes64).item() == 0 and shifted_induction(canonical, probes64).item() == pytest.approx(1.0)


def test_padded_rows_are_not_scored() -> None:
    """With L != 2P the shorter rows are padded; what a head does on padding changes no score."""
    probes = make_probes(64, 64, batch=4, copy_len=20)  # copy rows 41 of T = 61
    T = probes.seq_len
    prev = offset_pattern(probes.tokens.shape[0], 1, T, torch.ones(T, dtype=torch.long))
    noisy = prev.clone()
    noisy[: probes.n_copy, :, 41:, :] = 1.0 / T  # garbage on the copy rows' padding
    for fn in (previous_token, duplicate_token, induction, prefix_matching, offset_profile, shifted_induction):
        torch.testing.assert_close(fn(noisy, probes), fn(prev, probes))
    assert previous_token(prev, probes).item() == pytest.approx(1.0)
