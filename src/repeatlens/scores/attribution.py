"""Per-head attribution of memorization against generalization.

Which heads carry the repeated subset, and which the held-out data? For each head ``h``,
the rise of the next-token loss when ``h`` is knocked out, on the repeated training subset
(``repeated_tokens``) and on the held-out test set (``test_tokens``), each also on its
natural-text and synthetic rows where the run mixes a corpus with the synthetic source
(``ScoreContext.test_synthetic`` / ``repeated_synthetic``):

``delta_h(X) = mean_{x in X, t >= 1} [loss_t(x | z_h := a_h) - loss_t(x)]`` (nats)

where ``z_h`` is the head's output before ``W_O`` (hook ``hook_z``) at every position. Two
exact estimators of the knock-out:

* ``ablation_*``: exact **mean ablation**, ``a_h`` = the head's mean ``z`` over every
  position of the held-out test sequences (one reference for both sets, so the two deltas
  are comparable). One hooked forward pass per head and batch.
* ``zero_ablation_*``: exact **zero ablation**, ``a_h = 0``: the second estimator (a head
  whose mean output is large scores higher here than under mean ablation).

Attribution patching (the first-order Taylor estimate ``delta_h(x) ~= sum_t (a_h -
z_h(x)_t) . dL(x)/dz_h(x)_t``, one forward and backward for every head at once; Nanda 2023,
"Attribution Patching"; Syed et al. 2023) is :func:`patched_sequence_deltas`, but it is
not a score: for a mean (or zero) ablation it equals ``(a_h W_O) . dL/db_O - <W_O,
dL/dW_O>`` (``b_O`` the layer's output bias), i.e. the gradients of the loss in the
model's own weights, which vanish where training converged (tests/scores/test_attribution.py
checks the identity). On tiny trained models its rank correlation with the exact mean
ablation over heads measured -0.36 (800 steps, induction formed) and 0.64 (400 steps):
the ablation's effect is second order there, so the scores below are the exact ablations.

The derived index ``memorization_share`` (see its docstring) reads the mean-ablation deltas.
The exact ablations cost heads x forward passes (12.7 times the rest of the battery per
checkpoint at 2 layers x 8 heads, benchmarks/README.md), so they are not in the default
battery: name them, or their group (``-m attribution``, :func:`resolve_metrics`).
Every score here needs ``test_tokens`` (the mean-ablation reference) and yields no row
without it (or without ``repeated_tokens`` for the repeated-subset ones, or without the
split for a split's).
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from repeatlens.losses import batched_losses, token_losses
from repeatlens.model import HookedTransformer, z_hook_name
from repeatlens.scores import reference as full_logits_path
from repeatlens.scores.behaviour import head_ablation_losses, z_means
from repeatlens.results.metric_facts import MetricFacts
from repeatlens.scores.registry import ScoreContext, register

__all__ = [
    "Estimator",
    "sequence_deltas",
    "ablated_sequence_losses",
    "patched_sequence_deltas",
    "memorization_share_index",
    "ablation_repeated_loss",
    "ablation_test_loss",
    "memorization_share",
    "SHARE_FLOOR",
]

Estimator = Literal["mean", "zero", "patch"]
Split = Literal["all", "text", "synthetic"]
SHARE_FLOOR = 1e-3
"""Nats: a head whose positive deltas sum to less than this matters to neither set, and
gets no ``memorization_share`` row (its share would be noise over noise)."""


def ablated_sequence_losses(
    model: HookedTransformer, tokens: Int[Tensor, "n pos"], fwd_hooks: list, batch_size: int = 32, device=None
) -> Float[Tensor, "n"]:
    """Mean next-token loss of every sequence through the hooked forward with ``fwd_hooks``
    (sequences cut to ``n_ctx``), batched, under inference mode: one complete forward (see
    :func:`sequence_deltas` for every head at once)."""
    return full_logits_path.ablated_sequence_losses(model, tokens, fwd_hooks, batch_size, device)


def patched_sequence_deltas(
    model: HookedTransformer, tokens: Int[Tensor, "n pos"], means: Sequence[Tensor], batch_size: int = 32, device=None
) -> Float[Tensor, "layer head n"]:
    """Attribution patching of the mean ablation, per head and sequence.

    ``delta[l, h, b] = sum_{t, d} (means[l][h] - z[b, t, h, d]) * dL_b / dz[b, t, h, d]``,
    ``L_b`` the mean next-token loss of sequence ``b``. Sequences do not interact, so one
    backward pass of ``sum_b L_b`` gives every sequence's gradient. Gradients are taken with
    :func:`torch.autograd.grad` with respect to the activations only: the model's parameters
    and their ``.grad`` are left as they were.
    """
    cfg = model.cfg
    names = [z_hook_name(layer) for layer in range(cfg.n_layers)]
    if tokens.shape[0] == 0:
        return torch.zeros(cfg.n_layers, cfg.n_heads, 0, dtype=torch.float64)

    def deltas(x: Int[Tensor, "b pos"]) -> Float[Tensor, "layer head b"]:
        x = x.clone()  # a normal tensor, also if given an inference one
        kept: dict[str, Tensor] = {}

        def leaf(e: Tensor, hook) -> Tensor:  # a graph to differentiate even if the weights are frozen
            return e if e.requires_grad else e.detach().requires_grad_(True)

        def keep(z: Tensor, hook) -> Tensor:
            kept[hook.name] = z
            return z

        hooks = [("hook_embed", leaf)] + [(n, keep) for n in names]
        loss = token_losses(model.run_with_hooks(x, return_type="logits", fwd_hooks=hooks), x).mean(-1)  # [b]
        grads = torch.autograd.grad(loss.sum(), [kept[n] for n in names])
        return torch.stack([((means[layer].detach() - kept[n].detach()) * g).double().sum(dim=(1, 3)).T  # [head, b]
                            for layer, (n, g) in enumerate(zip(names, grads))])

    with torch.inference_mode(False), torch.enable_grad():
        return batched_losses(deltas, tokens[:, : cfg.n_ctx], batch_size, device, row_dim=-1)


def sequence_deltas(
    model: HookedTransformer,
    tokens: Int[Tensor, "n pos"],
    reference: Int[Tensor, "n_ref pos_ref"],
    estimator: Estimator,
    batch_size: int = 32,
    device=None,
    means: Optional[Sequence[Tensor]] = None,
) -> Float[Tensor, "layer head n"]:
    """Per head and sequence of ``tokens``, the rise of its mean next-token loss when the
    head is knocked out by ``estimator`` (``mean``/``patch``: to its mean ``z`` over every
    position of ``reference``, or ``means`` when given, see :func:`z_means`; ``zero``: to
    zero). See the module docstring. The exact estimators re-run the blocks from the
    head's layer onward from one clean pass per batch (:func:`head_ablation_losses`)."""
    if estimator != "zero" and means is None:
        means = z_means(model, reference[:, : model.cfg.n_ctx], batch_size, device)
    if estimator == "zero":
        means = None
    if estimator == "patch":
        return patched_sequence_deltas(model, tokens, means, batch_size, device)
    if full_logits_path.active():
        return full_logits_path.sequence_deltas(model, tokens, means, batch_size, device)
    every = torch.arange(max(0, min(tokens.shape[1], model.cfg.n_ctx) - 1))
    clean, ablated = head_ablation_losses(model, tokens, means, every, batch_size, device)
    return ablated.double().mean(-1) - clean.double().mean(-1)


def _rows(mask: Optional[Bool[Tensor, "n"]], split: Split) -> Optional[Tensor]:
    """Which rows a split holds (None: every row), or an empty selection when the data has
    no such split."""
    if split == "all":
        return None
    if mask is None:
        return torch.zeros(0, dtype=torch.bool)
    mask = mask.bool().cpu()
    return mask if split == "synthetic" else ~mask


def _delta(ctx: ScoreContext, data: Literal["test", "repeated"], estimator: Estimator, split: Split = "all") -> Optional[Float[Tensor, "layer head"]]:
    """``delta_h`` on one set (and split): the per-sequence deltas, computed once per
    context and estimator for every split, averaged over the split's rows."""
    tokens = ctx.test_tokens if data == "test" else ctx.repeated_tokens
    if ctx.test_tokens is None or tokens is None or tokens.shape[0] == 0:
        return None
    rows = _rows(ctx.test_synthetic if data == "test" else ctx.repeated_synthetic, split)
    if rows is not None and not rows.any():
        return None
    reference = ctx.test_tokens[:, : ctx.model.cfg.n_ctx]
    means = None if estimator == "zero" else ctx.memo("head_z_means", lambda: z_means(ctx.model, reference, ctx.batch_size, ctx.device))
    per_seq = ctx.memo(
        ("head_deltas", data, estimator),
        lambda: sequence_deltas(ctx.model, tokens, reference, estimator, ctx.batch_size, ctx.device, means),
    )
    return (per_seq if rows is None else per_seq[..., rows]).mean(-1).float()


@register("ablation_repeated_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("repeated-loss rise when mean-ablated"))
def ablation_repeated_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """Rise of the repeated-subset loss when one head is mean-ablated (nats).

    ``delta_h = repeated_loss(z_h := mean_test z_h) - repeated_loss``, the head's ``z`` set
    at every position to its mean over the held-out test sequences (module docstring). A
    head that carries memorized sequences scores high here and low on
    ``ablation_test_loss``. Hernandez et al. 2022, "Scaling Laws and Interpretability of
    Learning from Repeated Data"; Olsson et al. 2022 (mean ablations of heads). Needs
    ``test_tokens`` and ``repeated_tokens``.
    """
    return _delta(ctx, "repeated", "mean")


@register("ablation_repeated_text_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("natural-text repeated-loss rise when mean-ablated"))
def ablation_repeated_text_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """``ablation_repeated_loss`` on the repeated sequences drawn from the corpus (natural
    text), for a run mixing a corpus with the synthetic source. Hernandez et al. 2022."""
    return _delta(ctx, "repeated", "mean", "text")


@register("ablation_repeated_synthetic_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("synthetic repeated-loss rise when mean-ablated"))
def ablation_repeated_synthetic_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """``ablation_repeated_loss`` on the repeated sequences drawn from the synthetic source
    (in-context repeats: copying helps there without memorization). Hernandez et al. 2022."""
    return _delta(ctx, "repeated", "mean", "synthetic")


@register("ablation_test_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("test-loss rise when mean-ablated"))
def ablation_test_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """Rise of the held-out test loss when one head is mean-ablated (nats).

    ``delta_h = test_loss(z_h := mean_test z_h) - test_loss``: what the head does for data
    the model never saw (generalization, in-context copying included). Hernandez et al.
    2022; Olsson et al. 2022. Needs ``test_tokens``.
    """
    return _delta(ctx, "test", "mean")


@register("ablation_test_text_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("natural-text test-loss rise when mean-ablated"))
def ablation_test_text_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """``ablation_test_loss`` on the held-out natural-text rows (split ``test_text``) of a run
    mixing a corpus with the synthetic source. Hernandez et al. 2022."""
    return _delta(ctx, "test", "mean", "text")


@register("ablation_test_synthetic_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("synthetic test-loss rise when mean-ablated"))
def ablation_test_synthetic_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """``ablation_test_loss`` on the held-out synthetic rows (split ``test_synthetic``:
    in-context repeats, where copying heads matter most). Olsson et al. 2022."""
    return _delta(ctx, "test", "mean", "synthetic")


@register("zero_ablation_repeated_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("repeated-loss rise when zero-ablated"))
def zero_ablation_repeated_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """Rise of the repeated-subset loss when one head's ``z`` is set to zero (nats): the
    second estimator of ``ablation_repeated_loss``. Olsson et al. 2022; Hernandez et al.
    2022. Needs ``test_tokens`` and ``repeated_tokens``."""
    return _delta(ctx, "repeated", "zero")


@register("zero_ablation_test_loss", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts.loss_change("test-loss rise when zero-ablated"))
def zero_ablation_test_loss(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """Rise of the held-out test loss when one head's ``z`` is set to zero (nats): the
    second estimator of ``ablation_test_loss``. Olsson et al. 2022. Needs ``test_tokens``."""
    return _delta(ctx, "test", "zero")


def memorization_share_index(d_repeated: Tensor, d_test: Tensor, floor: float = SHARE_FLOOR) -> Tensor:
    """``r+ / (r+ + g+)`` elementwise, ``r+ = max(d_repeated, 0)``, ``g+ = max(d_test, 0)``;
    NaN where ``r+ + g+ < floor``.

    >>> memorization_share_index(torch.tensor([0.3, 0.1, -0.2, 0.0]), torch.tensor([0.1, 0.1, 0.4, 0.0]))
    tensor([0.7500, 0.5000, 0.0000,    nan])
    """
    r, g = d_repeated.clamp(min=0), d_test.clamp(min=0)
    total = r + g
    return torch.where(total >= floor, r / total.clamp(min=floor), torch.full_like(total, float("nan")))


@register("memorization_share", kind="behaviour", per_head=True, default=False, group="attribution",
          facts=MetricFacts("memorization share", "repeated / (repeated + test) ablation cost", range=(0.0, 1.0)))
def memorization_share(ctx: ScoreContext) -> Optional[Float[Tensor, "layer head"]]:
    """Memorization share of a head: the part of what it does that is for the repeated subset.

    ``share_h = r_h / (r_h + g_h)`` with ``r_h = max(delta_h(repeated), 0)`` and
    ``g_h = max(delta_h(test), 0)``, the mean-ablation deltas (``ablation_repeated_loss``,
    ``ablation_test_loss``); on a run mixing a corpus with the synthetic source both are
    the natural-text splits (``ablation_repeated_text_loss``, ``ablation_test_text_loss``),
    so that in-context copying on synthetic rows does not count as generalization or as
    memorization. In ``[0, 1]``: 1 = the head matters only for the repeated subset, 0.5 = as
    much for both (general language modelling helps the repeated sequences too), 0 = only
    for held-out data. No row where ``r_h + g_h <`` :data:`SHARE_FLOOR` nats (the head
    matters to neither). Hernandez et al. 2022, "Scaling Laws and Interpretability of
    Learning from Repeated Data" (repeated data displaces generalizing circuits).
    """
    text = ctx.test_synthetic is not None and ctx.repeated_synthetic is not None
    r = _delta(ctx, "repeated", "mean", "text" if text else "all")
    g = _delta(ctx, "test", "mean", "text" if text else "all")
    if r is None or g is None:
        return None
    return memorization_share_index(r, g)
