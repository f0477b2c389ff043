"""The loss computations of the behaviour and ablation scores as they were before issue 23,
kept as the reference the faster path is tested against and benchmarked beside.

The reference path builds the logits over the whole vocabulary at every position of every
row, runs one complete forward pass per ablated head, recomputes the float64 weights for
every weight score and takes copying_top1's argmax over ``[heads, rows, vocab]`` blocks: at
a GPT-2 vocabulary (50,257 ids) that is most of a small model's scoring time. The default path
(:mod:`.behaviour`, :mod:`.attribution`) computes the same numbers, to float tolerance,
from the final norm and unembedding at the positions a score reads only, re-running the
blocks from the ablated layer onward with the clean pass's residual stream before it.

Nothing calls this path unless asked::

    from repeatlens.scores import reference
    with reference.full_logits():
        df = score_model(model)          # the pre-issue-23 computation

(``tests/scores/test_behaviour.py`` and ``benchmarks/score_throughput.py --vocab-cost``.)
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from repeatlens.losses import batched_losses, copy_losses as split, token_losses
from repeatlens.scores.ablation import ablate_head, z_means

if TYPE_CHECKING:
    from repeatlens.model import HookedTransformer
    from repeatlens.scores.probes import Probes
    from repeatlens.scores.registry import ScoreContext

__all__ = ["full_logits", "active", "copy_losses", "ablation_copying_loss", "sequence_losses", "memorized", "ablated_sequence_losses",
           "sequence_deltas", "top1_copying_share"]

_ACTIVE: ContextVar[bool] = ContextVar("repeatlens_reference_losses", default=False)


@contextlib.contextmanager
def full_logits() -> Iterator[None]:
    """Within this block the scores compute their losses the reference way (module docstring)."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> bool:
    """Whether the reference path is on (:func:`full_logits`)."""
    return _ACTIVE.get()


def copy_losses(ctx: "ScoreContext") -> tuple[float, float]:
    """First- and second-copy loss of the probe's copy rows from full-vocabulary logits at
    every position of every probe row."""
    from repeatlens.model import logits_from_resid

    run = ctx.probe_run()
    loss = token_losses(logits_from_resid(ctx.model, run.resid_final), run.tokens)
    return split(loss[ctx.probes.copy_rows], ctx.probes.copy_len)


def _second_copy_loss(model: "HookedTransformer", probes: "Probes", fwd_hooks: list) -> float:
    tokens = probes.copy_tokens
    logits = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=fwd_hooks)
    return split(token_losses(logits, tokens), probes.copy_len)[1]


def _each_head(model: "HookedTransformer", values: Optional[Sequence[Float[Tensor, "head d_head"]]], measure) -> Tensor:
    """``measure(fwd_hooks)`` with each head ablated in turn, one complete forward each, ``[layer, head, ...]``."""
    from repeatlens.model import z_hook_name

    out = []
    for layer in range(model.cfg.n_layers):
        row = []
        for head in range(model.cfg.n_heads):
            value = None if values is None else values[layer][head]
            row.append(torch.as_tensor(measure([(z_hook_name(layer), ablate_head(head, value))]), dtype=torch.float64).cpu())
        out.append(torch.stack(row))
    return torch.stack(out)


def ablation_copying_loss(ctx: "ScoreContext") -> Float[Tensor, "layer head"]:
    """:func:`repeatlens.scores.behaviour.ablation_copying_loss` by a complete forward per head."""
    model, probes = ctx.model, ctx.probes
    with torch.inference_mode():
        means = z_means(model, probes.copy_tokens)
        base = _second_copy_loss(model, probes, [])
        return (_each_head(model, means, lambda hooks: _second_copy_loss(model, probes, hooks)) - base).float()


def sequence_losses(model: "HookedTransformer", tokens: Int[Tensor, "n pos"], batch_size: int = 32, device: Any = None) -> Float[Tensor, "n pos_minus_1"]:
    """Next-token loss at every position from the full logits, batched."""
    from repeatlens.model import logits as model_logits

    with torch.inference_mode():
        return batched_losses(lambda x: token_losses(model_logits(model, x), x), tokens[:, : model.cfg.n_ctx], batch_size, device)


def memorized(model: "HookedTransformer", tokens: Int[Tensor, "n pos"], prefix: int, k: int, batch_size: int = 32, device: Any = None) -> Tensor:
    """Greedy ``k``-extractability from the full logits of the first ``prefix + k`` tokens."""
    from repeatlens.model import logits as model_logits

    T = min(tokens.shape[1], model.cfg.n_ctx)
    p = max(1, min(prefix, T - 1))
    k = max(1, min(k, T - p))
    def hits(x: Tensor) -> Tensor:
        return (model_logits(model, x)[:, p - 1 : p + k - 1].argmax(-1) == x[:, p : p + k]).all(-1)

    with torch.inference_mode():
        return batched_losses(hits, tokens[:, : p + k], batch_size, device)


def ablated_sequence_losses(
    model: "HookedTransformer", tokens: Int[Tensor, "n pos"], fwd_hooks: list, batch_size: int = 32, device: Any = None
) -> Float[Tensor, "n"]:
    """Mean next-token loss of every sequence through one complete hooked forward with ``fwd_hooks``."""
    def mean_loss(x: Tensor) -> Tensor:
        return token_losses(model.run_with_hooks(x, return_type="logits", fwd_hooks=fwd_hooks), x).double().mean(-1)

    with torch.inference_mode():
        return batched_losses(mean_loss, tokens[:, : model.cfg.n_ctx], batch_size, device)


def sequence_deltas(
    model: "HookedTransformer", tokens: Int[Tensor, "n pos"], means: Optional[Sequence[Float[Tensor, "head d_head"]]], batch_size: int = 32, device: Any = None
) -> Float[Tensor, "layer head n"]:
    """Per head and sequence, the rise of its mean loss when the head is set to ``means``
    (None: zero), one complete forward per head and batch."""
    base = ablated_sequence_losses(model, tokens, [], batch_size, device)
    ablated = _each_head(model, means, lambda hooks: ablated_sequence_losses(model, tokens, hooks, batch_size, device))
    return ablated - base


def top1_copying_share(
    W_E: Float[Tensor, "d_vocab d_model"], W_V: Float[Tensor, "head d_model d_head"], W_O: Float[Tensor, "head d_head d_model"],
    W_U: Float[Tensor, "d_model d_vocab"], tokens: Optional[Int[Tensor, "n"]] = None, chunk_elements: int = 1 << 24,
) -> Float[Tensor, "head"]:
    """:func:`repeatlens.scores.weights.top1_copying_share` by ``[heads, rows, vocab]`` blocks
    of about ``chunk_elements`` logits, each written out whole before its argmax."""
    H, V = W_V.shape[0], W_E.shape[0]
    rows = torch.arange(V, device=W_E.device) if tokens is None else tokens.to(W_E.device)
    X = W_E[rows].float() @ W_V.float()
    Y = W_O.float() @ W_U.float()
    step = max(1, chunk_elements // max(1, H * V))
    hits = torch.zeros(H, dtype=torch.long)
    for start in range(0, rows.numel(), step):
        stop = min(rows.numel(), start + step)
        hits += ((X[:, start:stop] @ Y).argmax(dim=-1) == rows[start:stop]).sum(-1).cpu()
    return hits.double() / max(1, rows.numel())
