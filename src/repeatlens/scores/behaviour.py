"""Behavioural scores: losses, in-context learning, memorization and a causal check.

Each takes a :class:`~repeatlens.scores.registry.ScoreContext`. The copying loss and gain
read the residual stream that the single probe forward pass already computed. Scores
that need data return ``None`` (no row) when it was not given: ``test_loss`` and
``icl_score`` need ``test_tokens``; ``repeated_loss`` and ``memorization`` need
``repeated_tokens``. Sequences longer than the model's context are cut to ``n_ctx``.

Cost at a large vocabulary. A next-token loss needs the logits over the whole vocabulary,
but only at the positions a score reads: :func:`position_losses` runs the final norm and
the unembedding at those positions only, a bounded chunk at a time, so no
``[batch, pos, vocab]`` tensor is built (at 50,257 ids and 16 x 61 probe positions that
tensor alone is 196 MB). The copying scores read the copy rows' copy positions, the
per-head ablation the second copy only; the per-head ablation re-runs the blocks from the
ablated layer onward, several heads at once, from one clean pass's residual stream
(:func:`head_ablation_losses`); the test and repeated sets each get one forward pass,
shared by every score that reads them (:func:`data_pass`). The values are those of the
full computation to float tolerance; :mod:`.reference` keeps that computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from repeatlens.losses import batched_losses, copy_loss_positions, copy_losses
from repeatlens.model import HookedTransformer, LayerRun, Unembedding, final_residual, logits_from_resid, z_hook_name
from repeatlens.scores import reference
from repeatlens.results.metric_facts import MetricFacts
from repeatlens.scores.ablation import ablate_head, z_means
from repeatlens.scores.registry import ScoreContext, register

__all__ = [
    "copy_losses",
    "copy_loss_positions",
    "position_losses",
    "DataPass",
    "data_pass",
    "head_ablation_losses",
    "sequence_losses",
    "icl_positions",
    "memorized",
    "copying_loss",
    "copying_gain",
    "icl_score",
    "test_loss",
    "repeated_loss",
    "memorization",
    "ablation_copying_loss",
    "z_means",
    "ablate_head",
]

# Olsson et al. 2022's positions (token 50 and token 500) in a 1024-token context.
OLSSON_EARLY, OLSSON_LATE, OLSSON_CTX = 50, 500, 1024


def _positions(*parts: slice) -> Int[Tensor, "n_pos"]:
    return torch.cat([torch.arange(p.start, p.stop) for p in parts])


LOSS_CHUNK_BYTES = 1 << 24
"""About this many bytes of float32 logits are alive at once when a vocabulary is read whole."""
VOCAB_TILE = 2048
"""Above this many ids the vocabulary is read in tiles of this many columns (:func:`_next_token_stats`)."""
ROW_TILE = 256
"""Positions per tile when the vocabulary is tiled."""


def _next_token_stats(
    unembed: Unembedding, resid: Float[Tensor, "n d_model"], targets: Int[Tensor, "n"], greedy: bool = False
) -> tuple[Float[Tensor, "n"], Optional[Bool[Tensor, "n"]]]:
    """Next-token cross-entropy of every row against its target (and, with ``greedy``, whether
    the target is the first most likely id), through the final norm and the unembedding.

    Up to :data:`VOCAB_TILE` ids, a chunk of rows' logits at a time (``F.cross_entropy``,
    as :func:`repeatlens.losses.token_losses`). Above, the vocabulary is read in tiles of
    :data:`ROW_TILE` rows x :data:`VOCAB_TILE` ids that stay in the CPU's cache, keeping a
    running maximum and sum of exponentials (``loss = m + log sum exp(z - m) - z_target``) and
    a running first argmax: the same numbers to float rounding, without writing and re-reading
    ``[rows, vocab]`` logits through memory (1.5 times faster at 50,257 ids on a 2-core CPU,
    side by side).
    """
    n, V = resid.shape[0], unembed.d_vocab
    loss = torch.empty(n, dtype=torch.float32, device=resid.device)
    hit = torch.empty(n, dtype=torch.bool, device=resid.device) if greedy else None
    if V <= VOCAB_TILE:
        chunk = max(1, LOSS_CHUNK_BYTES // (4 * V))
        for start in range(0, n, chunk):
            part = slice(start, min(start + chunk, n))
            logits = unembed(resid[part]).float()
            loss[part] = F.cross_entropy(logits, targets[part], reduction="none")
            if hit is not None:
                hit[part] = logits.argmax(-1) == targets[part]
        return loss, hit
    for start in range(0, n, ROW_TILE):
        part = slice(start, min(start + ROW_TILE, n))
        x = unembed.normed(resid[part])
        m = torch.full((x.shape[0],), -torch.inf, device=x.device)
        total = torch.zeros(x.shape[0], device=x.device)
        best = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for v0 in range(0, V, VOCAB_TILE):
            z = unembed.logits(x, slice(v0, v0 + VOCAB_TILE)).float()
            top = z.amax(-1)
            if hit is not None:
                better = top > m  # strictly greater: the first maximum wins, as argmax
                if better.any():
                    best[better] = z[better].argmax(-1) + v0
            m_new = torch.maximum(m, top)
            total = total * torch.exp(m - m_new) + z.sub_(m_new[:, None]).exp_().sum(-1)  # z is spent: in place
            m = m_new
        loss[part] = m + torch.log(total) - unembed.target_logits(x, targets[part]).float()
        if hit is not None:
            hit[part] = best == targets[part]
    return loss, hit


def position_losses(
    model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"], tokens: Int[Tensor, "batch pos"],
    positions: Int[Tensor, "n_pos"],
) -> Float[Tensor, "batch n_pos"]:
    """Next-token loss at the loss indices ``positions`` of every row (index ``t`` is the
    loss of token ``t + 1``), from the residual stream after the last block.

    The final norm and the unembedding run at those positions only (both act position by
    position), a chunk or a cache-sized tile at a time (:func:`_next_token_stats`):
    :func:`repeatlens.losses.token_losses` at those positions, without the ``[batch, pos,
    vocab]`` logits. Under :func:`.reference.full_logits` the logits are built at every
    position first, as before issue 23.
    """
    positions = torch.as_tensor(positions, dtype=torch.long, device=resid.device)
    if reference.active():
        from repeatlens.losses import token_losses

        return token_losses(logits_from_resid(model, resid), tokens)[:, positions]
    b, n = resid.shape[0], positions.numel()
    x = resid[:, positions].reshape(b * n, -1)
    y = tokens[:, positions + 1].reshape(-1)
    with torch.inference_mode():
        return _next_token_stats(Unembedding(model), x, y)[0].view(b, n)


def _probe_copy_losses(ctx: ScoreContext) -> tuple[float, float]:
    """First- and second-copy loss of this context's probe copy rows, computed once from the
    probe pass's residual stream at the copy positions only."""
    def compute() -> tuple[float, float]:
        if reference.active():
            return reference.copy_losses(ctx)
        run, probes = ctx.probe_run(), ctx.probes
        first, second = copy_loss_positions(probes.copy_len)
        rows = probes.copy_rows
        loss = position_losses(ctx.model, run.resid_final[rows], run.tokens[rows], _positions(first, second))
        n_first = first.stop - first.start
        return float(loss[:, :n_first].mean()), float(loss[:, n_first:].mean())

    return ctx.memo("copy_losses", compute)


@register("copying_loss", kind="behaviour", per_head=False, probe=True, version=2, facts=MetricFacts.loss("copying loss"))
def copying_loss(ctx: ScoreContext) -> float:
    """Copying loss: mean next-token cross-entropy on the second copy of ``[BOS, r, r]``.

    ``loss = mean_{b, t = L+2..2L} -log p(r_t | tokens_<t)`` on the shared probe's copy
    rows (random tokens, so only in-context copying can lower it). Olsson et al. 2022,
    "In-context Learning and Induction Heads"; Hernandez et al. 2022, "Scaling Laws and
    Interpretability of Learning from Repeated Data" (repeated data damages copying).
    """
    return _probe_copy_losses(ctx)[1]


@register("copying_gain", kind="behaviour", per_head=False, probe=True, version=2,
          facts=MetricFacts("copying gain", "nats/token", higher_is_better=True))
def copying_gain(ctx: ScoreContext) -> float:
    """Copying gain: first-copy loss minus second-copy loss on ``[BOS, r, r]``.

    ``gain = mean_{t=2..L} loss_t - mean_{t=L+2..2L} loss_t`` (nats; > 0 when the model
    copies). Olsson et al. 2022; Hernandez et al. 2022.
    """
    first, second = _probe_copy_losses(ctx)
    return first - second


@dataclass(frozen=True)
class DataPass:
    """What one forward pass over a set of sequences gives the data-driven scores.

    Attributes:
        losses: next-token loss at every position (index ``t`` is the loss of token ``t + 1``).
        greedy: whether the most likely next token at that position is the true one.
    """

    losses: Float[Tensor, "n pos_minus_1"]
    greedy: Bool[Tensor, "n pos_minus_1"]


def data_pass(model: HookedTransformer, tokens: Int[Tensor, "n pos"], batch_size: int = 32, device: Any = None) -> DataPass:
    """One forward pass over ``tokens`` (cut to ``n_ctx``), batched, the fused path when
    allowed, unembedded a chunk of positions at a time: the losses and greedy hits that the
    test loss, ICL score, repeated loss and memorization read (see :class:`DataPass`)."""
    unembed = Unembedding(model)

    def stats(x: Int[Tensor, "b pos"]) -> tuple[Tensor, Tensor]:
        (b, T), d = x.shape, model.cfg.d_model
        resid = final_residual(model, x)[:, :-1].reshape(b * (T - 1), d)
        loss, hit = _next_token_stats(unembed, resid, x[:, 1:].reshape(-1), greedy=True)
        return loss.view(b, T - 1), hit.view(b, T - 1)

    with torch.inference_mode():
        return DataPass(*batched_losses(stats, tokens[:, : model.cfg.n_ctx], batch_size, device))


def _data(ctx: ScoreContext, which: str) -> DataPass:
    """The data pass of ``ctx``'s test or repeated set, once per checkpoint (shared by every
    score, and every probe family's context, that reads it)."""
    tokens = ctx.test_tokens if which == "test" else ctx.repeated_tokens
    return ctx.memo(("data_pass", which), lambda: data_pass(ctx.model, tokens, ctx.batch_size, ctx.device), shared=True)


def sequence_losses(model: HookedTransformer, tokens: Int[Tensor, "n pos"], batch_size: int = 32, device=None) -> Float[Tensor, "n pos_minus_1"]:
    """Next-token loss at every position of every sequence, batched, under inference mode.

    Sequences are cut to the model's ``n_ctx``. Index ``t`` is the loss of token ``t+1``.
    """
    if reference.active():
        return reference.sequence_losses(model, tokens, batch_size, device)
    return data_pass(model, tokens, batch_size, device).losses


def _sequence_losses(ctx: ScoreContext, which: str) -> Float[Tensor, "n pos_minus_1"]:
    if reference.active():
        tokens = ctx.test_tokens if which == "test" else ctx.repeated_tokens
        return reference.sequence_losses(ctx.model, tokens, ctx.batch_size, ctx.device)
    return _data(ctx, which).losses


def icl_positions(seq_len: int) -> tuple[int, int]:
    """Default ``(early, late)`` token positions of the ICL score for ``seq_len`` tokens.

    Olsson et al.'s tokens 50 and 500 of a 1024-token context, scaled:
    ``early = max(1, round(50 T / 1024))``, ``late = max(early + 1, round(500 T / 1024))``,
    both clamped to ``T - 1``. ``T = 64`` gives (3, 31); ``T = 1024`` gives (50, 500).
    """
    early = max(1, round(OLSSON_EARLY * seq_len / OLSSON_CTX))
    late = max(early + 1, round(OLSSON_LATE * seq_len / OLSSON_CTX))
    return min(early, seq_len - 2), min(late, seq_len - 1)


@register("icl_score", kind="behaviour", per_head=False, facts=MetricFacts("in-context learning score", "nats/token", higher_is_better=False))
def icl_score(ctx: ScoreContext) -> Optional[float]:
    """In-context-learning score: loss of a late token minus loss of an early token.

    ``icl = mean_n loss(token_late) - mean_n loss(token_early)`` over the held-out
    sequences (negative = later tokens are predicted better = the model learns in
    context). Positions default to :func:`icl_positions` of the test sequence length
    (``ScoreContext.icl_positions`` overrides). Olsson et al. 2022, "In-context Learning
    and Induction Heads" (token 500 minus token 50). Needs ``test_tokens``.
    """
    if ctx.test_tokens is None:
        return None
    loss = _sequence_losses(ctx, "test")
    T = loss.shape[1] + 1
    early, late = ctx.icl_positions or icl_positions(T)
    if not 1 <= early < T or not 1 <= late < T:
        raise ValueError(f"icl positions {(early, late)} outside 1..{T - 1}")
    return float(loss[:, late - 1].mean() - loss[:, early - 1].mean())


@register("test_loss", kind="behaviour", per_head=False, facts=MetricFacts.loss("test loss"))
def test_loss(ctx: ScoreContext) -> Optional[float]:
    """Mean next-token cross-entropy on the held-out test sequences (nats).

    ``mean_{n, t >= 1} -log p(x_t | x_<t)``. Hernandez et al. 2022 (test loss degrades,
    with double descent over the repetition count). Needs ``test_tokens``.
    """
    if ctx.test_tokens is None:
        return None
    return float(_sequence_losses(ctx, "test").mean())


@register("repeated_loss", kind="behaviour", per_head=False, facts=MetricFacts.loss("repeated-subset loss"))
def repeated_loss(ctx: ScoreContext) -> Optional[float]:
    """Mean next-token cross-entropy on the repeated subset of the training data (nats).

    Same formula as ``test_loss`` on ``repeated_tokens``; a gap below test loss measures
    memorization of the repeated subset (Hernandez et al. 2022). Needs ``repeated_tokens``.
    """
    if ctx.repeated_tokens is None:
        return None
    return float(_sequence_losses(ctx, "repeated").mean())


def _clamp(T: int, prefix: int, k: int) -> tuple[int, int]:
    p = max(1, min(prefix, T - 1))
    return p, max(1, min(k, T - p))


def memorized(model: HookedTransformer, tokens: Int[Tensor, "n pos"], prefix: int, k: int, batch_size: int = 32, device=None) -> torch.Tensor:
    """Whether greedy decoding from each sequence's ``prefix`` first tokens reproduces its
    next ``k`` tokens exactly.

    Computed with one teacher-forced forward pass per batch, which is exactly equivalent
    to a loop of ``k`` argmax steps on the growing prefix: while every generated token
    matches, the generated prefix *is* the true prefix, so all ``k`` greedy tokens match iff
    ``argmax logits[:, prefix-1+j] == tokens[:, prefix+j]`` for every ``j < k`` (attention
    is causal, so the tokens after ``prefix + k`` change none of these logits). ``prefix``
    and ``k`` are clamped to the sequence (``prefix <= T-1``, ``prefix + k <= T`` with
    ``T = min(pos, n_ctx)``).

    Returns:
        Bool ``[n]``.
    """
    if reference.active():
        return reference.memorized(model, tokens, prefix, k, batch_size, device)
    T = min(tokens.shape[1], model.cfg.n_ctx)
    p, k = _clamp(T, prefix, k)
    return data_pass(model, tokens[:, : p + k], batch_size, device).greedy[:, p - 1 : p + k - 1].all(-1)


@register("memorization", kind="behaviour", per_head=False,
          facts=MetricFacts("memorized fraction of repeated sequences", range=(0.0, 1.0)))
def memorization(ctx: ScoreContext) -> Optional[float]:
    """Share of repeated sequences whose next ``k`` tokens greedy decoding reproduces
    exactly from their first ``p`` tokens.

    ``mem = mean_n [greedy(x_{<p}, k) = x_{p..p+k-1}]`` with ``p = memorization_prefix``,
    ``k = memorization_k`` (see :func:`memorized`). Hernandez et al. 2022, "Scaling Laws
    and Interpretability of Learning from Repeated Data" (repeated data is memorized);
    the k-extractable definition of Carlini et al. 2022. Needs ``repeated_tokens``.
    """
    if ctx.repeated_tokens is None:
        return None
    if reference.active():
        hits = memorized(ctx.model, ctx.repeated_tokens, ctx.memorization_prefix, ctx.memorization_k, ctx.batch_size, ctx.device)
    else:  # the repeated set's one pass: the greedy hits at positions p-1 .. p+k-2 of the whole sequences
        p, k = _clamp(min(ctx.repeated_tokens.shape[1], ctx.model.cfg.n_ctx), ctx.memorization_prefix, ctx.memorization_k)
        hits = _data(ctx, "repeated").greedy[:, p - 1 : p + k - 1].all(-1)
    return float(hits.float().mean()) if hits.numel() else None


ABLATION_PASS_BYTES = 1 << 28
"""About this many bytes of activations per re-run pass of :func:`head_ablation_losses` (how
many heads' copies of a batch run together)."""


def _bytes_per_row(model: HookedTransformer, T: int) -> int:
    """Rough float32 activation bytes of one row through one block of the hooked forward."""
    c = model.cfg
    return 4 * T * (3 * c.n_heads * T + 3 * (c.d_mlp or 0) + 12 * c.d_model + 4 * c.n_heads * c.d_head)


def head_ablation_losses(
    model: HookedTransformer,
    tokens: Int[Tensor, "n pos"],
    values: Optional[Sequence[Float[Tensor, "head d_head"]]],
    positions: Int[Tensor, "n_pos"],
    batch_size: Optional[int] = None,
    device: Any = None,
    layers: Optional[Sequence[int]] = None,
) -> tuple[Float[Tensor, "n n_pos"], Float[Tensor, "layer head n n_pos"]]:
    """Next-token losses at loss indices ``positions`` of every row, clean and with each
    head ablated in turn: ``values[layer][head]`` (``[d_head]``) written into the head's
    ``hook_z`` at every position (None: zero).

    One clean pass per batch of rows keeps the residual stream entering every block
    (:class:`repeatlens.model.LayerRun`); a head of layer ``l`` re-runs blocks ``l ..``
    only, the copies of several heads of one layer stacked in one pass (about
    :data:`ABLATION_PASS_BYTES` of activations), and the losses come from
    :func:`position_losses`. The same numbers as one complete hooked forward per head, to
    float tolerance. ``layers``: ablate only the heads of these layers (the others' entries
    stay 0; default every layer).

    Returns:
        ``(clean, ablated)``.
    """
    cfg = model.cfg
    tokens = tokens[:, : cfg.n_ctx]
    positions = torch.as_tensor(positions, dtype=torch.long)
    n, T = tokens.shape
    per_row = _bytes_per_row(model, T)
    rows = max(1, min(batch_size or n, ABLATION_PASS_BYTES // max(per_row, 1))) if n else 1
    clean = torch.zeros(n, positions.numel())
    ablated = torch.zeros(cfg.n_layers, cfg.n_heads, n, positions.numel())
    for start in range(0, n, rows):
        x = tokens[start : start + rows].to(device)
        b = x.shape[0]
        run = LayerRun(model, x)
        clean[start : start + b] = position_losses(model, run.resid_final, x, positions).cpu()
        group = max(1, min(cfg.n_heads, ABLATION_PASS_BYTES // max(per_row * b, 1)))
        for layer in range(cfg.n_layers) if layers is None else layers:
            for h0 in range(0, cfg.n_heads, group):
                heads = list(range(h0, min(h0 + group, cfg.n_heads)))
                k = len(heads)

                def hook(z: Tensor, hook: Any, heads: list[int] = heads, layer: int = layer) -> Tensor:
                    for i, head in enumerate(heads):
                        z[i * b : (i + 1) * b, :, head] = 0.0 if values is None else values[layer][head]
                    return z

                resid = run.rerun(layer, [(z_hook_name(layer), hook)], copies=k)
                loss = position_losses(model, resid, x.repeat(k, 1), positions)
                ablated[layer, heads, start : start + b] = loss.view(k, b, -1).cpu()
        del run
    return clean, ablated


@register("ablation_copying_loss", kind="behaviour", per_head=True, probe=True, version=2, default_max_heads=64,
          facts=MetricFacts.loss_change("copying-loss rise when ablated"))
def ablation_copying_loss(ctx: ScoreContext) -> Float[Tensor, "layer head"]:
    """Increase in copying loss when one head is mean-ablated.

    ``delta_h = copying_loss(z_h := mean z_h) - copying_loss``, where ``z_h`` (the head's
    output before ``W_O``, hook ``hook_z``) is replaced at every position by its mean over
    all positions of the probe's copy rows. Positive = the head helps copying. One forward
    to take the means, then the blocks from the head's layer onward once per head
    (:func:`head_ablation_losses`): the one default score whose cost grows as heads x
    forward passes, so the default battery leaves it out for models with more than 64
    heads; name it to compute it anyway. Olsson et al. 2022 (ablations of induction
    heads); Hernandez et al. 2022 (repeated data and induction heads).
    """
    if reference.active():
        return reference.ablation_copying_loss(ctx)
    model, probes = ctx.model, ctx.probes
    with torch.inference_mode():
        means = z_means(model, probes.copy_tokens)
        clean, ablated = head_ablation_losses(model, probes.copy_tokens, means, _positions(copy_loss_positions(probes.copy_len)[1]))
    return (ablated.double().mean((-2, -1)) - clean.double().mean()).float()
