"""Attention scores on hand-built patterns with known answers."""

from __future__ import annotations

import pytest
import torch

from repeatlens.scores import REGISTRY, uniform_pattern
from repeatlens.scores.attention import duplicate_token, induction, prefix_matching, previous_token
from repeatlens.scores.probes import Probes

ATTENTION = ["previous_token", "duplicate_token", "induction", "prefix_matching"]


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
