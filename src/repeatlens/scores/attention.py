"""Attention-pattern scores, pure functions of one layer's pattern on the probe batch.

Each takes ``pattern: Float[Tensor, "batch head query key"]`` (every row of a
:class:`~repeatlens.scores.probes.Probes` batch, in order) and the probes, and returns one
value per head. They never run the model: :meth:`ScoreContext.probe_run` computes every
layer's pattern in one forward pass and these functions read it.

Normalisation, and how it differs from TransformerLens' ``head_detector``: each score is
the mean, over the queries where its target pattern is defined, of the attention those
queries pay to the target keys. ``head_detector`` (``error_measure="mul"``) instead divides
the attention on target keys by the attention of *every* query of the sequence (its
sequence length ``T``). With the same sequences the two differ by a constant factor per
score (``(T-1)/T`` for previous-token, ``L/T`` for duplicate-token and induction on
``[BOS, r, r]`` rows with no repeated token inside ``r``), so they rank heads identically,
but only ours reads 1 for a perfect head and the uniform-attention chance level for a
random one.

BOS: no score counts a query at BOS (position 0). Attention *to* BOS counts only where BOS
is the target: for the previous-token score at query 1, whose previous token is BOS. A head
that parks all attention on BOS therefore scores ``1/(T-1)`` on previous-token and 0 on
the others.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from repeatlens.scores.probes import Probes
from repeatlens.results.metric_facts import MetricFacts
from repeatlens.scores.registry import register

__all__ = [
    "previous_token",
    "duplicate_token",
    "induction",
    "prefix_matching",
    "offset_profile",
    "shifted_induction",
    "shifted_induction_shift",
    "offset_score",
    "copy_offset_profile",
]


def offset_score(pattern: Float[Tensor, "batch head query key"], queries: Tensor, offset: int) -> Float[Tensor, "head"]:
    """Mean attention from each query ``i`` in ``queries`` to key ``i - offset``."""
    return pattern[:, :, queries, queries - offset].float().mean(dim=(0, 2))


@register("previous_token", kind="attention", per_head=True, version=2, facts=MetricFacts.attention("previous-token score"))
def previous_token(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head"]:
    """Previous-token score: mean attention from position ``i`` to ``i - 1``.

    ``score_h = mean_{b, 1 <= i < T_b} A[b, h, i, i-1]`` over every real position of every
    probe row (copy and prefix rows; ``T_b`` is row ``b``'s unpadded length). Olsson et al.
    2022, "In-context Learning and Induction Heads" (previous-token heads, the first half
    of the induction circuit); Elhage et al. 2021, "A Mathematical Framework for
    Transformer Circuits".

    Averages over the ``T - 1`` queries that have a previous token; TransformerLens'
    ``head_detector`` divides the same sum by ``T`` (see the module docstring).
    """
    T = pattern.shape[-1]
    q = torch.arange(1, T, device=pattern.device)
    prev = pattern[:, :, q, q - 1].float()  # [batch, head, T-1]
    real = probes.valid[:, 1:T].to(pattern.device, prev.dtype)[:, None, :]
    return (prev * real).sum(dim=(0, 2)) / real.sum()


@register("duplicate_token", kind="attention", per_head=True, version=2, facts=MetricFacts.attention("duplicate-token score"))
def duplicate_token(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head"]:
    """Duplicate-token score on ``[BOS, r, r]``: attention from each second-copy token to
    its earlier occurrence.

    With ``L = len(r)``, second-copy queries are ``i = L+1 .. 2L`` and the earlier
    occurrence of token ``i`` is at ``i - L``:
    ``score_h = mean_{b in copy rows, i} A[b, h, i, i-L]``. Olsson et al. 2022 (Appendix:
    head types); Wang et al. 2022 (IOI) use the same probe.

    Averages over the ``L`` second-copy queries; TransformerLens' ``head_detector``
    divides the same sum by the sequence length ``T = 2L + 1``.
    """
    L = probes.copy_len
    q = torch.arange(L + 1, 2 * L + 1, device=pattern.device)
    return offset_score(pattern[probes.copy_rows], q, L)


@register("induction", kind="attention", per_head=True, version=2, facts=MetricFacts.attention("induction score"))
def induction(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head"]:
    """Induction score on ``[BOS, r, r]``: attention from each second-copy token to the
    token *after* its earlier occurrence.

    Second-copy queries ``i = L+1 .. 2L`` attend to ``i - (L-1)``:
    ``score_h = mean_{b in copy rows, i} A[b, h, i, i-L+1]``. Olsson et al. 2022, "In-context
    Learning and Induction Heads" (the repeated-random-tokens induction score).

    Averages over the ``L`` second-copy queries only; TransformerLens' ``head_detector``
    divides the same sum by the sequence length ``T = 2L + 1``.
    """
    L = probes.copy_len
    q = torch.arange(L + 1, 2 * L + 1, device=pattern.device)
    return offset_score(pattern[probes.copy_rows], q, L - 1)


@register("prefix_matching", kind="attention", per_head=True, version=2, facts=MetricFacts.attention("prefix-matching score"))
def prefix_matching(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head"]:
    """Prefix-matching score on ``BOS + p p p p``: attention to every earlier position whose
    preceding token equals the query token.

    For queries ``i`` in repeats 2-4 (``P + 1 <= i <= 4P``), ``S_i = {j : 1 <= j <= i,
    tokens[j-1] = tokens[i]}`` and ``score_h = mean_{b in prefix rows, i} sum_{j in S_i}
    A[b, h, i, j]``. Olsson et al. 2022, "In-context Learning and Induction Heads" (prefix
    matching, their Figure/Appendix on head activation evaluators: 25 random tokens
    repeated 4 times).
    """
    tok = probes.prefix_tokens.to(pattern.device)
    T = tok.shape[1]  # the real length 1 + 4P (rows may be padded beyond it)
    rows = pattern[probes.prefix_rows, :, :T, :T].float()
    P = probes.prefix_len
    # target[b, i, j] = tokens[j-1] == tokens[i], for 1 <= j <= i
    prev = torch.cat([torch.full_like(tok[:, :1], -1), tok[:, :-1]], dim=1)  # prev[b, j] = tokens[j-1]
    target = (tok[:, :, None] == prev[:, None, :]) & torch.ones(T, T, dtype=torch.bool, device=tok.device).tril()
    per_query = (rows * target[:, None].to(rows.dtype)).sum(-1)  # [b, head, query]
    return per_query[:, :, P + 1 :].mean(dim=(0, 2))


# ----------------------------------------------------------------- offsets and shifted copying


def copy_offset_profile(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head offset"]:
    """Mean attention by query-key offset from the second-copy queries of ``[BOS, r, r]``.

    ``profile_h[o] = mean_{b in copy rows, i = L+1..2L} A[b, h, i, i - o]`` for offsets
    ``o = 0 .. L`` (every second-copy query has a key at each of them). ``o = L`` is the
    duplicate-token offset (the earlier occurrence), ``o = L - 1`` the induction offset
    (the token after it), ``o = 1`` the previous token.
    """
    L = probes.copy_len
    q = torch.arange(L + 1, 2 * L + 1, device=pattern.device)
    o = torch.arange(0, L + 1, device=pattern.device)
    rows = pattern[probes.copy_rows][:, :, q, :].float()  # [b, head, L, key]
    keys = (q[:, None] - o[None, :]).expand(rows.shape[0], rows.shape[1], L, L + 1)
    return rows.gather(-1, keys).mean(dim=(0, 2))


@register("offset_profile", kind="attention", per_head=True, per_offset=True, version=2,
          facts=MetricFacts("attention by query-key offset", range=(0.0, 1.0), level=False))
def offset_profile(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head offset"]:
    """Attention-offset profile on ``[BOS, r, r]``: one row per head and offset ``o = 0..L``.

    ``profile_h[o] = mean_{b, i = L+1..2L} A[b, h, i, i - o]`` (:func:`copy_offset_profile`),
    written with an ``offset`` column. Shows copying circuits the offset-``(L-1)``
    induction score misses: a layer-0 head that attends ``k`` back peaks at ``o = k``; a
    layer-1 head of an induction circuit shifted by ``d`` peaks at ``o = L - 1 - d``
    (Olsson et al. 2022 define induction at ``o = L - 1``; the shifted variant is seen in
    this project's own models, see analyses/repeated_data/NOTES.md).
    """
    return copy_offset_profile(pattern, probes)


def _shifted(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> tuple[Tensor, Tensor]:
    """(best attention, best d) over offsets ``L - 1 - d``, ``0 <= d <= L - 2``."""
    L = probes.copy_len
    profile = copy_offset_profile(pattern, probes)  # offsets 0..L
    by_d = profile[:, 1:L].flip(-1)  # column d holds offset L-1-d, d = 0..L-2
    best, d = by_d.max(dim=-1)
    return best, d.to(best.dtype)


@register("shifted_induction", kind="attention", per_head=True, version=2,
          facts=MetricFacts.attention("shifted-induction score", "attention at offset L−1−d"))
def shifted_induction(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head"]:
    """Shifted-induction score: the best induction-like offset, ``L - 1 - d``.

    ``score_h = max_{0 <= d <= L-2} profile_h[L - 1 - d]`` with ``profile`` the offset
    profile of the second-copy queries (:func:`copy_offset_profile`); ``d = 0`` is the
    induction score itself, so ``shifted_induction >= induction``. The maximising ``d`` is
    ``shifted_induction_shift``. A two-layer copying circuit shifted by ``d`` pairs a later
    head scoring high here with an earlier head attending ``d + 1`` back (offset ``d + 1``
    of its profile); :func:`repeatlens.results.circuits` names such pairs. Note that a plain
    previous-token head scores high too, at ``d = L - 2`` (offset 1): the pair check, not
    this score alone, tells a circuit. Generalises Olsson et al. 2022's induction score.
    """
    return _shifted(pattern, probes)[0]


@register("shifted_induction_shift", kind="attention", per_head=True, version=2,
          facts=MetricFacts("shift d of the best induction-like offset", range=(0.0, math.inf), level=False))
def shifted_induction_shift(pattern: Float[Tensor, "batch head query key"], probes: Probes) -> Float[Tensor, "head"]:
    """``d``, the shift at which ``shifted_induction`` peaks: the head attends most at offset
    ``L - 1 - d`` from second-copy queries of ``[BOS, r, r]`` (0 for canonical induction,
    Olsson et al. 2022's offset ``L - 1``; ties go to the smallest ``d``)."""
    return _shifted(pattern, probes)[1]
