"""The score battery: attention, weight and behaviour scores registered by name.

``score_model(model)`` computes every registered score (or the ones named) and returns a
tidy table ``metric, layer, head, offset, value`` plus the probe each row read
(``probe, probe_len, probe_batch, probe_seed``; see :mod:`.probes`).

Adding a score is one function and one ``@register(...)`` line (in :mod:`.attention`,
:mod:`.weights` or :mod:`.behaviour`, or in your own module imported before scoring)::

    @register("bos_attention", kind="attention", per_head=True,
              facts=MetricFacts("attention to BOS", "attention", range=(0.0, 1.0),
                                higher_is_better=False, chance=UNIFORM_ATTENTION))
    def bos_attention(pattern, probes):
        return pattern[:, :, 1:, 0].mean(dim=(0, 2))

Its ``facts`` (:class:`~repeatlens.results.metric_facts.MetricFacts`: label, unit, range,
whether higher is better, chance level, whether it is a level) are all the figures, the
reductions, the report and the study read about it; the scores table records them, so a
later process that never imports the score still labels it.

Definitions follow Olsson et al. 2022, "In-context Learning and Induction Heads"; Elhage
et al. 2021, "A Mathematical Framework for Transformer Circuits"; and Hernandez et al.
2022, "Scaling Laws and Interpretability of Learning from Repeated Data".
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Sequence

import pandas as pd
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from repeatlens.model import HookedTransformer
from repeatlens.scores import attention, attribution, behaviour, llc, weights  # noqa: F401  (registers the scores)
from repeatlens.scores.behaviour import icl_positions, memorized, sequence_losses
from repeatlens.scores.probes import (
    FAMILIES,
    ProbeSource,
    Probes,
    ProbeSpec,
    allowed_tokens,
    build_probes,
    default_copy_len,
    get_probes,
    make_probes,
    uniform_pattern,
)
from repeatlens.results.schema import ROW_COLUMNS
from repeatlens.scores.registry import (
    COLUMNS,
    PROBE_COLUMNS,
    REGISTRY,
    SCORE_VERSION,
    UNIFORM_ATTENTION,
    MetricFacts,
    ScoreContext,
    available,
    default_metrics,
    ScoreFn,
    register,
    resolve_metrics,
    rows,
    unregister,
)
from repeatlens.scores.weights import composition_matrix, ov_copying_score, ov_eigenvalues

__all__ = [
    "REGISTRY",
    "SCORE_VERSION",
    "COLUMNS",
    "PROBE_COLUMNS",
    "ScoreFn",
    "ScoreContext",
    "FAMILIES",
    "Probes",
    "ProbeSpec",
    "ProbeSource",
    "register",
    "unregister",
    "MetricFacts",
    "UNIFORM_ATTENTION",
    "resolve_metrics",
    "default_metrics",
    "available",
    "rows",
    "score_model",
    "model_probes",
    "special_ids",
    "chance_levels",
    "make_probes",
    "build_probes",
    "get_probes",
    "default_copy_len",
    "allowed_tokens",
    "uniform_pattern",
    "composition_matrix",
    "ov_copying_score",
    "ov_eigenvalues",
    "icl_positions",
    "memorized",
    "sequence_losses",
]


def special_ids(model: HookedTransformer) -> tuple[int, tuple[int, ...]]:
    """BOS id and special ids to exclude, from the model's tokenizer when it has one.

    Ids outside the model's vocabulary are ignored (a config may name a BOS its model does
    not have); BOS falls back to 0 then, as it does without a tokenizer.
    """
    d_vocab = int(model.cfg.d_vocab)
    tok = getattr(model, "tokenizer", None)
    bos = getattr(tok, "bos_token_id", None) if tok is not None else None
    bos = int(bos) if bos is not None and 0 <= int(bos) < d_vocab else 0
    special = getattr(tok, "all_special_ids", None) if tok is not None else None
    return bos, tuple(sorted({bos, *(int(i) for i in (special or ()) if 0 <= int(i) < d_vocab)}))


def model_probes(model: HookedTransformer, seed: int = 0) -> Probes:
    """The cached default (``uniform``) probes for ``model``'s vocabulary and context.

    BOS is the tokenizer's ``bos_token_id`` (0 without a tokenizer); the tokenizer's special
    ids are excluded from random tokens. Cached per (d_vocab, n_ctx, seed, BOS, exclusions).
    """
    bos, exclude = special_ids(model)
    return get_probes(int(model.cfg.d_vocab), int(model.cfg.n_ctx), int(seed), bos, exclude)


def chance_levels(probes: Probes) -> dict[str, float]:
    """The chance level of every score that declares one (``MetricFacts.chance``) on
    ``probes``: a number as declared, a callable of the probes evaluated on them, and
    :data:`UNIFORM_ATTENTION` the score of causal uniform attention (query ``i`` gives
    ``1/(i+1)`` to each earlier key), the level a randomly initialised model sits near.

    The built-in ones are the per-head attention levels (the offset profile and the shift are
    not levels, and have none).
    """
    pattern = None
    out: dict[str, float] = {}
    for n, f in REGISTRY.items():
        chance = f.facts.chance if f.facts is not None else None
        if chance is None:
            continue
        if chance == UNIFORM_ATTENTION:
            if pattern is None:
                pattern = uniform_pattern(probes.tokens.shape[0], 1, probes.seq_len)
            out[n] = float(f.fn(pattern, probes)[0])
        elif callable(chance):
            out[n] = float(chance(probes))
        else:
            out[n] = float(chance)
    return out


def _model_device(model: HookedTransformer) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _with_probe(frame: pd.DataFrame, probes: Optional[Probes]) -> pd.DataFrame:
    """``frame`` with the probe columns: ``probes``' spec, or ``""`` / NA for no probe."""
    n = len(frame)
    spec = probes.spec if probes is not None else None
    def col(v: Optional[int]) -> pd.arrays.IntegerArray:
        return pd.array([v] * n if v is not None else [pd.NA] * n, dtype="Int64")
    return frame.assign(
        probe=pd.Series([spec.family if spec else ""] * n, dtype="object", index=frame.index),
        probe_len=col(spec.copy_len if spec else None),
        probe_batch=col(spec.batch if spec else None),
        probe_seed=col(spec.seed if spec else None),
    )


def score_model(
    model: HookedTransformer,
    metrics: Optional[Sequence[str]] = None,
    *,
    probes: Optional[Probes | Sequence[Probes]] = None,
    test_tokens: Optional[Int[Tensor, "n_test pos_test"]] = None,
    repeated_tokens: Optional[Int[Tensor, "n_rep pos_rep"]] = None,
    test_synthetic: Optional[Bool[Tensor, "n_test"]] = None,
    repeated_synthetic: Optional[Bool[Tensor, "n_rep"]] = None,
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
    over each probe batch (caching only ``hook_pattern``). Scores that read a probe run
    once per probe batch given; the others (weights, test and repeated-subset losses, ICL,
    memorization) once. Weight scores run no forward pass. Behaviour scores that need data
    are skipped, with no row, when their tokens are None: ``test_loss`` and ``icl_score``
    need ``test_tokens``, ``repeated_loss`` and ``memorization`` need ``repeated_tokens``.
    Everything else runs on any ``HookedTransformer``, with or without a tokenizer.

    Args:
        model: the model to score (left in place; its weights are not changed).
        metrics: names from :data:`REGISTRY`; None for the default battery, in registry
            order: all of them, but for the per-head ablations on models with more than 64
            heads and the opt-in learning coefficient (:func:`default_metrics`). A named score
            whose optional extra is missing is skipped with one line (:func:`available`).
        probes: one probe batch or several (e.g. one per family, :func:`build_probes`);
            default :func:`model_probes` (``uniform``, cached per vocabulary/context/seed,
            so scoring N checkpoints builds it once).
        test_tokens: held-out sequences for ``test_loss`` and ``icl_score``.
        repeated_tokens: the repeated training subset for ``repeated_loss`` and
            ``memorization``.
        test_synthetic / repeated_synthetic: per row of ``test_tokens`` / ``repeated_tokens``,
            True where it came from the synthetic source (a run mixing a corpus with it):
            the natural-text and synthetic splits of the per-head attribution scores
            (:mod:`.attribution`); None: no split.
        memorization_prefix: ``p``, prompt length of the memorization score.
        memorization_k: ``k``, tokens that must be reproduced exactly.
        batch_size: sequences per forward pass for the data-driven scores.
        device: where to compute; default the model's device. The model is moved there
            when it is elsewhere, and back when scoring ends.
        seed: probe seed when ``probes`` is None.
        icl_positions: ``(early, late)`` token positions of the ICL score; default scaled
            to the test sequence length (:func:`icl_positions`).
        progress: show a progress bar over the metrics.

    Returns:
        DataFrame with columns ``metric`` (str), ``layer``, ``head``, ``offset`` (nullable
        Int64; NA for model-level metrics, offset NA but for per-offset ones), ``value``
        (float64) and :data:`PROBE_COLUMNS` (``probe`` is ``""`` on rows that read none).

    Raises:
        ConfigError: an unknown metric name.
    """
    names = resolve_metrics(metrics) if metrics is not None else default_metrics(model.cfg.n_layers * model.cfg.n_heads)[0]
    names = available(names)
    dev = torch.device(device) if device is not None else _model_device(model)
    with _on_device(model, dev):
        return _score_on_device(model, names, dev, probes, seed, progress, dict(
            test_tokens=test_tokens, repeated_tokens=repeated_tokens, test_synthetic=test_synthetic,
            repeated_synthetic=repeated_synthetic, memorization_prefix=memorization_prefix,
            memorization_k=memorization_k, batch_size=batch_size, icl_positions=icl_positions,
        ))


@contextlib.contextmanager
def _on_device(model: HookedTransformer, dev: torch.device) -> Iterator[None]:
    """``model`` on ``dev`` inside the block, and back where the caller had it (weights and
    ``cfg.device``) after it, even when scoring fails: scoring does not move a caller's model."""
    home, home_cfg = _model_device(model), model.cfg.device
    if home == dev:
        yield
        return
    model.cfg.device = dev
    torch.nn.Module.to(model, dev)  # nn.Module.to: HookedTransformer.to prints a line per move
    try:
        yield
    finally:
        torch.nn.Module.to(model, home)
        model.cfg.device = home_cfg


def _score_on_device(
    model: HookedTransformer, names: list[str], dev: torch.device, probes: Optional[Probes | Sequence[Probes]],
    seed: int, progress: bool, data: dict[str, Any],
) -> pd.DataFrame:
    """:func:`score_model`'s loop, with ``model`` already on ``dev``."""
    batches = [probes] if isinstance(probes, Probes) else list(probes) if probes is not None else []
    probe_names = [m for m in names if REGISTRY[m].reads_probe]
    if probe_names and not batches:
        batches = [model_probes(model, seed)]
    base = dict(model=model, **data, device=dev)
    # per context, attention scores first, so their shared forward pass runs before anything else;
    # one memo for every context of this checkpoint (ScoreContext.memo keys it by probe)
    base["_memo"] = {}
    jobs = [(ScoreContext(probes=p.to(dev), **base), p, sorted(probe_names, key=lambda m: REGISTRY[m].kind != "attention")) for p in batches]
    jobs.append((ScoreContext(**base), None, [m for m in names if not REGISTRY[m].reads_probe]))
    frames = []
    total = sum(len(j[2]) for j in jobs)
    with torch.inference_mode(), tqdm(total=total, desc="scores", disable=not progress, leave=False) as bar:
        for ctx, p, todo in jobs:
            for name in todo:
                frame = REGISTRY[name](ctx)
                if len(frame):
                    frames.append(_with_probe(frame, p))
                bar.update(1)
    if not frames:
        return _with_probe(rows("", None), None)[ROW_COLUMNS]
    out = pd.concat(frames, ignore_index=True)[ROW_COLUMNS]
    rank = {m: i for i, m in enumerate(names)}
    return out.sort_values("metric", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)
