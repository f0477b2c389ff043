"""Behavioural scores: losses, in-context learning, memorization and a causal check.

Each takes a :class:`~repeatlens.scores.registry.ScoreContext`. The copying loss and gain
read the next-token losses that the single probe forward pass already computed. Scores
that need data return ``None`` (no row) when it was not given: ``test_loss`` and
``icl_score`` need ``test_tokens``; ``repeated_loss`` and ``memorization`` need
``repeated_tokens``. Sequences longer than the model's context are cut to ``n_ctx``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from repeatlens.model import HookedTransformer, logits as model_logits, z_hook_name
from repeatlens.scores.probes import Probes
from repeatlens.losses import token_losses
from repeatlens.scores.registry import ScoreContext, register

__all__ = [
    "copy_losses",
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
    "each_head_ablated",
]

# Olsson et al. 2022's positions (token 50 and token 500) in a 1024-token context.
OLSSON_EARLY, OLSSON_LATE, OLSSON_CTX = 50, 500, 1024


def copy_losses(loss: Float[Tensor, "batch pos_minus_1"], copy_len: int) -> tuple[float, float]:
    """Mean next-token loss on the first and the second copy of ``r`` in ``[BOS, r, r]``.

    Token ``t`` is predicted by loss index ``t - 1``. Both means skip the first token of
    their copy (unpredictable in the first copy; in the second it follows ``r``'s last
    token, with no earlier occurrence to copy from), so each averages ``L - 1`` targets:
    first copy = tokens ``2 .. L``, second copy = tokens ``L+2 .. 2L``.

    Returns:
        ``(first_copy_loss, second_copy_loss)``.
    """
    L = copy_len
    first = loss[:, 1:L].mean()
    second = loss[:, L + 1 : 2 * L].mean()
    return float(first), float(second)


def _copy_rows_loss(ctx: ScoreContext) -> Float[Tensor, "n_copy pos_minus_1"]:
    return ctx.probe_run().loss[ctx.probes.copy_rows]


@register("copying_loss", kind="behaviour", per_head=False, probe=True, version=2)
def copying_loss(ctx: ScoreContext) -> float:
    """Copying loss: mean next-token cross-entropy on the second copy of ``[BOS, r, r]``.

    ``loss = mean_{b, t = L+2..2L} -log p(r_t | tokens_<t)`` on the shared probe's copy
    rows (random tokens, so only in-context copying can lower it). Olsson et al. 2022,
    "In-context Learning and Induction Heads"; Hernandez et al. 2022, "Scaling Laws and
    Interpretability of Learning from Repeated Data" (repeated data damages copying).
    """
    return copy_losses(_copy_rows_loss(ctx), ctx.probes.copy_len)[1]


@register("copying_gain", kind="behaviour", per_head=False, probe=True, version=2)
def copying_gain(ctx: ScoreContext) -> float:
    """Copying gain: first-copy loss minus second-copy loss on ``[BOS, r, r]``.

    ``gain = mean_{t=2..L} loss_t - mean_{t=L+2..2L} loss_t`` (nats; > 0 when the model
    copies). Olsson et al. 2022; Hernandez et al. 2022.
    """
    first, second = copy_losses(_copy_rows_loss(ctx), ctx.probes.copy_len)
    return first - second


def sequence_losses(model: HookedTransformer, tokens: Int[Tensor, "n pos"], batch_size: int = 32, device=None) -> Float[Tensor, "n pos_minus_1"]:
    """Next-token loss at every position of every sequence, batched, under inference mode.

    Sequences are cut to the model's ``n_ctx``. Index ``t`` is the loss of token ``t+1``.
    """
    tokens = tokens[:, : model.cfg.n_ctx]
    out = []
    with torch.inference_mode():
        for start in range(0, tokens.shape[0], batch_size):
            x = tokens[start : start + batch_size].to(device)
            out.append(token_losses(model_logits(model, x), x).cpu())
    return torch.cat(out) if out else torch.zeros(0, max(0, tokens.shape[1] - 1))


def icl_positions(seq_len: int) -> tuple[int, int]:
    """Default ``(early, late)`` token positions of the ICL score for ``seq_len`` tokens.

    Olsson et al.'s tokens 50 and 500 of a 1024-token context, scaled:
    ``early = max(1, round(50 T / 1024))``, ``late = max(early + 1, round(500 T / 1024))``,
    both clamped to ``T - 1``. ``T = 64`` gives (3, 31); ``T = 1024`` gives (50, 500).
    """
    early = max(1, round(OLSSON_EARLY * seq_len / OLSSON_CTX))
    late = max(early + 1, round(OLSSON_LATE * seq_len / OLSSON_CTX))
    return min(early, seq_len - 2), min(late, seq_len - 1)


@register("icl_score", kind="behaviour", per_head=False)
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
    loss = sequence_losses(ctx.model, ctx.test_tokens, ctx.batch_size, ctx.device)
    T = loss.shape[1] + 1
    early, late = ctx.icl_positions or icl_positions(T)
    if not 1 <= early < T or not 1 <= late < T:
        raise ValueError(f"icl positions {(early, late)} outside 1..{T - 1}")
    return float(loss[:, late - 1].mean() - loss[:, early - 1].mean())


@register("test_loss", kind="behaviour", per_head=False)
def test_loss(ctx: ScoreContext) -> Optional[float]:
    """Mean next-token cross-entropy on the held-out test sequences (nats).

    ``mean_{n, t >= 1} -log p(x_t | x_<t)``. Hernandez et al. 2022 (test loss degrades,
    with double descent over the repetition count). Needs ``test_tokens``.
    """
    if ctx.test_tokens is None:
        return None
    return float(sequence_losses(ctx.model, ctx.test_tokens, ctx.batch_size, ctx.device).mean())


@register("repeated_loss", kind="behaviour", per_head=False)
def repeated_loss(ctx: ScoreContext) -> Optional[float]:
    """Mean next-token cross-entropy on the repeated subset of the training data (nats).

    Same formula as ``test_loss`` on ``repeated_tokens``; a gap below test loss measures
    memorization of the repeated subset (Hernandez et al. 2022). Needs ``repeated_tokens``.
    """
    if ctx.repeated_tokens is None:
        return None
    return float(sequence_losses(ctx.model, ctx.repeated_tokens, ctx.batch_size, ctx.device).mean())


def memorized(model: HookedTransformer, tokens: Int[Tensor, "n pos"], prefix: int, k: int, batch_size: int = 32, device=None) -> torch.Tensor:
    """Whether greedy decoding from each sequence's ``prefix`` first tokens reproduces its
    next ``k`` tokens exactly.

    Computed with one teacher-forced forward pass per batch, which is exactly equivalent
    to a loop of ``k`` argmax steps on the growing prefix: while every generated token
    matches, the generated prefix *is* the true prefix, so all ``k`` greedy tokens match iff
    ``argmax logits[:, prefix-1+j] == tokens[:, prefix+j]`` for every ``j < k``. ``prefix``
    and ``k`` are clamped to the sequence (``prefix <= T-1``, ``prefix + k <= T`` with
    ``T = min(pos, n_ctx)``).

    Returns:
        Bool ``[n]``.
    """
    T = min(tokens.shape[1], model.cfg.n_ctx)
    p = max(1, min(prefix, T - 1))
    k = max(1, min(k, T - p))
    out = []
    with torch.inference_mode():
        for start in range(0, tokens.shape[0], batch_size):
            x = tokens[start : start + batch_size, : p + k].to(device)
            pred = model_logits(model, x)[:, p - 1 : p + k - 1].argmax(-1)
            out.append((pred == x[:, p : p + k]).all(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


@register("memorization", kind="behaviour", per_head=False)
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
    hits = memorized(ctx.model, ctx.repeated_tokens, ctx.memorization_prefix, ctx.memorization_k, ctx.batch_size, ctx.device)
    return float(hits.float().mean()) if hits.numel() else None


def z_means(model: HookedTransformer, tokens: Int[Tensor, "n pos"], batch_size: Optional[int] = None, device=None) -> list[Float[Tensor, "head d_head"]]:
    """Each head's mean output before ``W_O`` (hook ``hook_z``) over every position of
    ``tokens``, per layer: the value a mean ablation writes. ``batch_size`` None: one pass."""
    cfg = model.cfg
    names = [z_hook_name(layer) for layer in range(cfg.n_layers)]
    step = batch_size or max(1, tokens.shape[0])
    sums = [torch.zeros(cfg.n_heads, cfg.d_head, dtype=torch.float64) for _ in names]
    count = 0
    with torch.inference_mode():
        for start in range(0, tokens.shape[0], step):
            x = tokens[start : start + step].to(device)
            _, cache = model.run_with_cache(x, names_filter=names, return_type=None)
            for layer, name in enumerate(names):
                sums[layer] += cache[name].double().sum(dim=(0, 1)).cpu()
            count += x.shape[0] * x.shape[1]
            del cache
    dtype = next(model.parameters()).dtype
    return [(s / max(count, 1)).to(dtype=dtype, device=device) for s in sums]


def ablate_head(head: int, value: Optional[Tensor]) -> Callable[[Tensor, Any], Tensor]:
    """A ``hook_z`` hook writing ``value`` (``[d_head]``; None: zero) into ``head`` at every position."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        z[:, :, head] = 0.0 if value is None else value
        return z

    return hook


def each_head_ablated(
    model: HookedTransformer, values: Optional[Sequence[Tensor]], measure: Callable[[list], Tensor | float]
) -> Tensor:
    """``measure(fwd_hooks)`` with each head ablated in turn, stacked ``[layer, head, ...]``.

    ``values[layer][head]`` is what the head's ``hook_z`` is set to (see :func:`z_means`);
    None zero-ablates. One ``measure`` call per head: the cost grows as heads x passes.
    """
    cfg = model.cfg
    out = []
    for layer in range(cfg.n_layers):
        name = z_hook_name(layer)
        row = []
        for head in range(cfg.n_heads):
            value = None if values is None else values[layer][head]
            row.append(torch.as_tensor(measure([(name, ablate_head(head, value))]), dtype=torch.float64).cpu())
        out.append(torch.stack(row))
    return torch.stack(out)


def _second_copy_loss(model: HookedTransformer, probes: Probes, fwd_hooks: list) -> float:
    tokens = probes.copy_tokens
    logits = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=fwd_hooks)
    return copy_losses(token_losses(logits, tokens), probes.copy_len)[1]


@register("ablation_copying_loss", kind="behaviour", per_head=True, probe=True, version=2, default_max_heads=64)
def ablation_copying_loss(ctx: ScoreContext) -> Float[Tensor, "layer head"]:
    """Increase in copying loss when one head is mean-ablated.

    ``delta_h = copying_loss(z_h := mean z_h) - copying_loss``, where ``z_h`` (the head's
    output before ``W_O``, hook ``hook_z``) is replaced at every position by its mean over
    all positions of the probe's copy rows. Positive = the head helps copying. One forward
    to take the means, then one per head: the one score whose cost grows as heads x
    forward passes, so the default battery leaves it out for models with more than 64
    heads (GPT-2 small's 144 heads: about 39 minutes a checkpoint on a 2-core CPU); name
    it to compute it anyway. Olsson et al. 2022 (ablations of induction
    heads); Hernandez et al. 2022 (repeated data and induction heads).
    """
    model, probes = ctx.model, ctx.probes
    with torch.inference_mode():
        means = z_means(model, probes.copy_tokens)
        base = _second_copy_loss(model, probes, [])
        return (each_head_ablated(model, means, lambda hooks: _second_copy_loss(model, probes, hooks)) - base).float()
