"""The score battery: attention, weight and behaviour scores registered by name.

``score_model(model)`` computes every registered score (or the ones named) and returns a
tidy table ``metric, layer, head, value``. Adding a score is one function and one
``@register(...)`` line in :mod:`.attention`, :mod:`.weights` or :mod:`.behaviour`.

Definitions follow Olsson et al. 2022, "In-context Learning and Induction Heads"; Elhage
et al. 2021, "A Mathematical Framework for Transformer Circuits"; and Hernandez et al.
2022, "Scaling Laws and Interpretability of Learning from Repeated Data".
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from repeatlens.errors import ConfigError
from repeatlens.model import HookedTransformer
from repeatlens.scores import attention, behaviour, weights  # noqa: F401  (registers the scores)
from repeatlens.scores.behaviour import icl_positions, memorized, sequence_losses
from repeatlens.scores.probes import Probes, allowed_tokens, get_probes, make_probes, uniform_pattern
from repeatlens.scores.registry import COLUMNS, REGISTRY, SCORE_VERSION, ScoreContext, ScoreFn, register, rows
from repeatlens.scores.weights import composition_matrix, ov_copying_score, ov_eigenvalues

__all__ = [
    "REGISTRY",
    "SCORE_VERSION",
    "COLUMNS",
    "ScoreFn",
    "ScoreContext",
    "Probes",
    "register",
    "rows",
    "score_model",
    "model_probes",
    "make_probes",
    "get_probes",
    "allowed_tokens",
    "uniform_pattern",
    "composition_matrix",
    "ov_copying_score",
    "ov_eigenvalues",
    "icl_positions",
    "memorized",
    "sequence_losses",
]


def _special_ids(model: HookedTransformer) -> tuple[int, tuple[int, ...]]:
    """BOS id and special ids to exclude, from the model's tokenizer when it has one."""
    tok = getattr(model, "tokenizer", None)
    bos = getattr(tok, "bos_token_id", None) if tok is not None else None
    bos = 0 if bos is None else int(bos)
    special = getattr(tok, "all_special_ids", None) if tok is not None else None
    return bos, tuple(sorted({bos, *(int(i) for i in (special or ()))}))


def model_probes(model: HookedTransformer, seed: int = 0) -> Probes:
    """The cached default probes for ``model``'s vocabulary and context.

    BOS is the tokenizer's ``bos_token_id`` (0 without a tokenizer); the tokenizer's special
    ids are excluded from random tokens. Cached per (d_vocab, n_ctx, seed, BOS, exclusions).
    """
    bos, exclude = _special_ids(model)
    return get_probes(int(model.cfg.d_vocab), int(model.cfg.n_ctx), int(seed), bos, exclude)


def _model_device(model: HookedTransformer) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def score_model(
    model: HookedTransformer,
    metrics: Optional[Sequence[str]] = None,
    *,
    probes: Optional[Probes] = None,
    test_tokens: Optional[Int[Tensor, "n pos"]] = None,
    repeated_tokens: Optional[Int[Tensor, "n pos"]] = None,
    memorization_prefix: int = 32,
    memorization_k: int = 32,
    batch_size: int = 32,
    device: Any = None,
    seed: int = 0,
    icl_positions: Optional[tuple[int, int]] = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Score one model (one checkpoint) with the named metrics.

    All attention scores, the copying loss and the copying gain come from ONE forward pass
    over the probe batch (caching only ``hook_pattern``). Weight scores run no forward
    pass. Behaviour scores that need data are skipped, with no row, when their tokens are
    None: ``test_loss`` and ``icl_score`` need ``test_tokens``, ``repeated_loss`` and
    ``memorization`` need ``repeated_tokens``. Everything else runs on any
    ``HookedTransformer``, with or without a tokenizer.

    Args:
        model: the model to score (left in place; its weights are not changed).
        metrics: names from :data:`REGISTRY`; None for all of them, in registry order.
        probes: probe batch; default :func:`model_probes` (cached per vocabulary/context/
            seed, so scoring N checkpoints builds it once).
        test_tokens: held-out sequences for ``test_loss`` and ``icl_score``.
        repeated_tokens: the repeated training subset for ``repeated_loss`` and
            ``memorization``.
        memorization_prefix: ``p``, prompt length of the memorization score.
        memorization_k: ``k``, tokens that must be reproduced exactly.
        batch_size: sequences per forward pass for the data-driven scores.
        device: where to compute; default the model's device. The model is moved there
            when it is elsewhere.
        seed: probe seed when ``probes`` is None.
        icl_positions: ``(early, late)`` token positions of the ICL score; default scaled
            to the test sequence length (:func:`icl_positions`).
        progress: show a progress bar over the metrics.

    Returns:
        DataFrame with columns ``metric`` (str), ``layer``, ``head`` (nullable Int64, NA for
        model-level metrics) and ``value`` (float64).

    Raises:
        ConfigError: an unknown metric name.
    """
    names = list(REGISTRY) if metrics is None else list(dict.fromkeys(metrics))
    unknown = [m for m in names if m not in REGISTRY]
    if unknown:
        raise ConfigError(f"metrics: unknown {', '.join(map(repr, unknown))}; expected any of {', '.join(REGISTRY)}")
    dev = torch.device(device) if device is not None else _model_device(model)
    if _model_device(model) != dev:
        model.cfg.device = dev
        torch.nn.Module.to(model, dev)
    probes = (probes if probes is not None else model_probes(model, seed)).to(dev)
    ctx = ScoreContext(
        model=model,
        probes=probes,
        test_tokens=test_tokens,
        repeated_tokens=repeated_tokens,
        memorization_prefix=memorization_prefix,
        memorization_k=memorization_k,
        batch_size=batch_size,
        icl_positions=icl_positions,
        device=dev,
    )
    # Attention scores first, so their shared forward pass runs before anything else.
    order = sorted(names, key=lambda m: REGISTRY[m].kind != "attention")
    frames = []
    with torch.inference_mode():
        for name in tqdm(order, desc="scores", disable=not progress, leave=False):
            frames.append(REGISTRY[name](ctx))
    frames = [f for f in frames if len(f)]
    if not frames:
        return rows("", None)
    out = pd.concat(frames, ignore_index=True)
    rank = {m: i for i, m in enumerate(names)}
    return out.sort_values("metric", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)
