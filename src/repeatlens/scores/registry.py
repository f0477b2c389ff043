"""The score registry: one decorator line registers a pure function by name.

A registered function has one of three signatures, fixed by its ``kind``:

* ``"attention"``: ``fn(pattern, probes) -> Float[Tensor, "head"]`` (or ``"head offset"``
  with ``per_offset=True``), a pure function of one layer's attention pattern
  ``[batch, head, query, key]`` on the shared probe batch. All attention scores of a
  checkpoint share ONE forward pass per probe (see :class:`ScoreContext`).
* ``"weights"``: ``fn(model) -> Float[Tensor, "layer head"]`` (NaN where undefined).
* ``"behaviour"``: ``fn(ctx) -> float | Float[Tensor, "layer head"] | None``; ``None``
  means the score cannot be computed from what was given (no data) and yields no row.

The registry wraps each function in a :class:`ScoreFn`, whose call returns tidy rows
``metric, layer, head, offset, value`` (layer and head NA for model-level scores, offset NA
except for per-offset scores). Every attention score reads the probe, and so do the
behaviour scores registered with ``probe=True`` (copying loss and gain, the ablation):
their rows also name the probe (:data:`PROBE_COLUMNS`), so a table never mixes probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Optional

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from repeatlens.errors import ConfigError
from repeatlens.model import HookedTransformer, hook_layer, is_pattern_hook
from repeatlens.results import metric_facts
from repeatlens.results.metric_facts import UNIFORM_ATTENTION, MetricFacts
from repeatlens.results.schema import PROBE_COLUMNS
from repeatlens.scores.probes import Probes

__all__ = [
    "Kind",
    "ScoreFn",
    "ScoreContext",
    "ProbeRun",
    "REGISTRY",
    "SCORE_VERSION",
    "register",
    "unregister",
    "MetricFacts",
    "UNIFORM_ATTENTION",
    "facts_snapshot",
    "resolve_metrics",
    "default_metrics",
    "available",
    "groups",
    "COLUMNS",
    "PROBE_COLUMNS",
]

Kind = Literal["attention", "weights", "behaviour"]
COLUMNS = ["metric", "layer", "head", "offset", "value"]
"""What a registered score's rows hold (:func:`score_model` adds :data:`PROBE_COLUMNS`)."""


@dataclass(eq=False)
class ProbeRun:
    """What the single forward pass over the probe batch leaves behind.

    Every layer's attention pattern, and the residual stream after the last block. Losses
    are finished from that residual (final LayerNorm, unembedding) at the positions a score
    reads, when it reads them (:func:`repeatlens.scores.behaviour.position_losses`), so a
    checkpoint scored only on attention patterns never unembeds anything and no score builds
    the ``[batch, pos, vocab]`` logits (benchmarks/README.md); the blocks run once either way.
    """

    patterns: list[Float[Tensor, "batch head query key"]]
    resid_final: Float[Tensor, "batch pos d_model"]
    model: HookedTransformer = field(repr=False)
    tokens: Int[Tensor, "batch pos"] = field(repr=False)


@dataclass
class ScoreContext:
    """Everything a score may read, with the probe forward pass run at most once.

    Attributes:
        model: the model being scored.
        probes: the shared probe batch, already on ``device``.
        test_tokens / repeated_tokens: optional held-out and repeated-subset sequences.
        test_synthetic / repeated_synthetic: per row of ``test_tokens`` / ``repeated_tokens``,
            whether it came from the synthetic source (a run mixing a corpus with it); None
            when the run has no such split. The per-head attribution scores read the
            natural-text and synthetic splits from them.
        memorization_prefix / memorization_k: ``p`` and ``k`` of the memorization score.
        batch_size: rows per forward pass for the data-driven scores.
        icl_positions: ``(early, late)`` token positions of the ICL score, or None for
            the default scaled to the context.
        device: where tensors go.
    """

    model: HookedTransformer
    probes: Optional[Probes] = None
    test_tokens: Optional[Int[Tensor, "n_test pos_test"]] = None
    repeated_tokens: Optional[Int[Tensor, "n_rep pos_rep"]] = None
    test_synthetic: Optional[Bool[Tensor, "n_test"]] = None
    repeated_synthetic: Optional[Bool[Tensor, "n_rep"]] = None
    memorization_prefix: int = 32
    memorization_k: int = 32
    batch_size: int = 32
    icl_positions: Optional[tuple[int, int]] = None
    device: Any = "cpu"
    _probe_run: Optional[ProbeRun] = field(default=None, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)

    def memo(self, key: Any, compute: Callable[[], Any], *, shared: bool = False) -> Any:
        """``compute()``, once per ``key``: scores that share an expensive intermediate (the
        copy losses, the per-head ablation passes, a data set's forward pass) compute it once
        between them. The store is shared by every context of one checkpoint
        (:func:`repeatlens.scores.score_model` hands them one dict); ``key`` is taken per probe
        batch unless ``shared`` (what does not depend on the probe, such as the test set's
        losses, is then computed once for every probe family)."""
        full = ("*", key) if shared else (self.probes.spec.key if self.probes is not None else "", key)
        if full not in self._memo:
            self._memo[full] = compute()
        return self._memo[full]

    def probe_run(self) -> ProbeRun:
        """Run the probe batch through the model once, caching only ``hook_pattern``.

        Every attention score and the copying loss of this context come from this one
        call (through the blocks; the loss adds the final LayerNorm and unembedding only
        when read, see :class:`ProbeRun`); later calls return the stored result.
        """
        if self.probes is None:
            raise ValueError("this score reads a probe batch, but the ScoreContext has none")
        if self._probe_run is None:
            with torch.inference_mode():
                tokens = self.probes.tokens
                n_layers = self.model.cfg.n_layers
                resid, cache = self.model.run_with_cache(tokens, names_filter=is_pattern_hook, stop_at_layer=n_layers)
                by_layer = {hook_layer(name): pattern for name, pattern in cache.items()}
                patterns = [by_layer[layer] for layer in range(n_layers)]
            self._probe_run = ProbeRun(patterns=patterns, resid_final=resid, model=self.model, tokens=tokens)
        return self._probe_run


@dataclass(frozen=True)
class ScoreFn:
    """A registered score: the pure function plus how to call it and shape its rows."""

    name: str
    kind: Kind
    per_head: bool
    fn: Callable[..., Any]
    version: int = 1
    per_offset: bool = False
    reads_probe: bool = False
    default_max_heads: Optional[int] = None
    default: bool = True
    settings: Optional[dict[str, Any]] = None
    unavailable: Optional[Callable[[], Optional[str]]] = None
    group: Optional[str] = None
    facts: Optional[MetricFacts] = None

    def compute(self, ctx: ScoreContext) -> Optional[Tensor | float]:
        """The raw value: ``[layer, head]`` for per-head scores (``[layer, head, offset]``
        for per-offset ones), a float otherwise."""
        if self.kind == "attention":
            run = ctx.probe_run()
            return torch.stack([self.fn(p, ctx.probes).float().cpu() for p in run.patterns])
        if self.kind == "weights":
            return self.fn(ctx.model)
        return self.fn(ctx)

    def __call__(self, ctx: ScoreContext) -> pd.DataFrame:
        """Tidy rows ``metric, layer, head, offset, value`` (none when the score was skipped)."""
        return rows(self.name, self.compute(ctx))


def rows(metric: str, value: Optional[Tensor | float]) -> pd.DataFrame:
    """Tidy rows for one metric: per head for a ``[layer, head]`` tensor, per head and
    offset for ``[layer, head, offset]`` (NaN entries dropped), one model-level row
    (layer/head NA) for a scalar, none for ``None``."""
    layer: list = []
    head: list = []
    offset: list = []
    vals: list = []
    if isinstance(value, Tensor) and value.ndim in (2, 3):
        v = value.detach().double().cpu()
        idx = (~torch.isnan(v)).nonzero()
        layer, head = idx[:, 0].tolist(), idx[:, 1].tolist()
        offset = idx[:, 2].tolist() if v.ndim == 3 else [pd.NA] * len(layer)
        vals = v[tuple(idx.T)].tolist()
    elif value is not None:
        x = float(value)
        if not math.isnan(x):
            layer, head, offset, vals = [pd.NA], [pd.NA], [pd.NA], [x]
    return pd.DataFrame(
        {
            "metric": pd.Series([metric] * len(vals), dtype="object"),
            "layer": pd.array(layer, dtype="Int64"),
            "head": pd.array(head, dtype="Int64"),
            "offset": pd.array(offset, dtype="Int64"),
            "value": pd.Series(vals, dtype="float64"),
        },
        columns=COLUMNS,
    )


REGISTRY: dict[str, ScoreFn] = {}
SCORE_VERSION: dict[str, int] = {}


def register(
    name: str, *, kind: Kind, per_head: bool, version: int = 1, per_offset: bool = False, probe: bool = False,
    default_max_heads: Optional[int] = None, default: bool = True, settings: Optional[dict[str, Any]] = None,
    unavailable: Optional[Callable[[], Optional[str]]] = None, group: Optional[str] = None,
    facts: Optional[MetricFacts] = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` under ``name``; the function itself is returned unchanged.

    A new score is this decorator on one function: it is then scored by ``repeatlens
    analyze -m NAME``, written to the scores table (with its facts in the table's metadata),
    plotted over training and per head (a per-head level), named in the report and compared
    against the control when its direction is known, all from ``facts``.

    Args:
        name: metric name written to the ``metric`` column.
        kind: ``"attention"``, ``"weights"`` or ``"behaviour"`` (fixes the signature).
        per_head: whether the score has one value per head (else one per model).
        version: bump when the definition changes; :data:`SCORE_VERSION` records it.
        per_offset: an attention score with one value per head and query-key offset.
        probe: a behaviour score that reads the probe batch (attention scores always do).
        default_max_heads: the score is in the default battery only for models with at most
            this many heads in all (its cost grows as heads x forward passes); naming it
            computes it on any model.
        default: False: never in the default battery (computed only when named).
        settings: the fixed settings the score's value depends on beyond the checkpoint and
            its data (e.g. a sampler's); they are part of its definition at this
            ``version`` (bump it when they change), and :func:`repeatlens.analyze` writes
            them into the table's metadata (``meta["settings"][name]``).
        unavailable: returns why the score cannot run here (a missing optional extra), or
            None; such a score is skipped with that one line (:func:`available`).
        group: a name that stands for every score registered with it in a metric list
            (``-m attribution``); never the name of a score.
        facts: what every reader needs to know about the metric (label, unit, range, whether
            higher is better, chance level, whether it is a level:
            :class:`~repeatlens.results.metric_facts.MetricFacts`); None: the name is its
            label (``my_score``: "my score") and nothing else is known.
    """
    if kind not in ("attention", "weights", "behaviour"):
        raise ValueError(f"unknown score kind {kind!r}")
    if per_offset and kind != "attention":
        raise ValueError(f"score {name!r}: per_offset applies to attention scores only")

    if facts is not None and facts.chance == UNIFORM_ATTENTION and (kind != "attention" or per_offset):
        raise ValueError(f"score {name!r}: a uniform-attention chance level needs an attention score with one value per head")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY or name in groups():
            raise ValueError(f"score {name!r} registered twice, or named like a group")
        REGISTRY[name] = ScoreFn(
            name=name, kind=kind, per_head=per_head, fn=fn, version=version, per_offset=per_offset,
            reads_probe=probe or kind == "attention", default_max_heads=default_max_heads, default=default,
            settings=dict(settings) if settings is not None else None, unavailable=unavailable, group=group,
            facts=facts,
        )
        SCORE_VERSION[name] = version
        if facts is not None:
            metric_facts.declare(name, facts)
        return fn

    return deco


def unregister(name: str) -> None:
    """Remove the score ``name`` (and its facts) from this process's registry.

    Raises:
        KeyError: no score of that name is registered.
    """
    if name not in REGISTRY:
        raise KeyError(f"no score {name!r} is registered")
    del REGISTRY[name]
    SCORE_VERSION.pop(name, None)
    metric_facts.forget(name)


def facts_snapshot() -> str:
    """The source of :mod:`repeatlens.results.builtin_facts`: the facts of every score
    registered by repeatlens itself, in registry order, as torch-free readers find them
    (``tests/scores/test_registry.py`` checks the file equals it)."""
    lines = [f"    {name!r}: {f.facts.to_json()!r},\n" for name, f in REGISTRY.items()
             if f.facts is not None and f.fn.__module__.startswith("repeatlens.")]
    body = "{\n" + "".join(lines) + "}"
    return (
        '"""The built-in scores\' facts (:class:`repeatlens.results.metric_facts.MetricFacts`), for readers that do not\n'
        "import the scores (and so torch): GENERATED from their ``@register`` lines, do not edit. Regenerate with\n\n"
        "    python -c 'from repeatlens.scores.registry import write_facts_snapshot; write_facts_snapshot()'\n"
        '"""\n\n'
        "from typing import Any\n\n"
        f"FACTS: dict[str, dict[str, Any]] = {body}\n"
    )


def write_facts_snapshot() -> None:
    """Write :func:`facts_snapshot` over :mod:`repeatlens.results.builtin_facts`."""
    from pathlib import Path

    from repeatlens.io import atomic_write_text

    atomic_write_text(Path(metric_facts.__file__).with_name("builtin_facts.py"), facts_snapshot())


def default_metrics(n_heads: int) -> tuple[list[str], list[str]]:
    """The default battery for a model with ``n_heads`` heads in all: (names, names left
    out because they cost a forward pass per head on a model that size). Scores registered
    with ``default=False`` (the learning coefficient) are in neither: name them."""
    out = [m for m, f in REGISTRY.items() if f.default_max_heads is not None and n_heads > f.default_max_heads]
    return [m for m, f in REGISTRY.items() if m not in out and f.default], out


def available(names: Iterable[str], say: Optional[Callable[[str], None]] = None) -> list[str]:
    """``names`` less the scores that cannot run here (an optional extra missing), each
    skipped with one line through ``say`` (default: standard error)."""
    import sys

    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    keep = []
    for m in names:
        why = REGISTRY[m].unavailable() if REGISTRY[m].unavailable is not None else None
        if why:
            say(f"{m}: skipped: {why}")
        else:
            keep.append(m)
    return keep


def groups() -> dict[str, list[str]]:
    """Every group name and the scores registered with it, in registry order."""
    out: dict[str, list[str]] = {}
    for m, f in REGISTRY.items():
        if f.group is not None:
            out.setdefault(f.group, []).append(m)
    return out


def resolve_metrics(metrics: Optional[Iterable[str]]) -> list[str]:
    """Metric names to compute: every registered one for None, else the names given, a
    group name (``attribution``) standing for its scores (duplicates dropped, order kept).

    Raises:
        ConfigError: an unknown name (the registered ones are listed) or an empty list.
    """
    grouped = groups()
    given = list(REGISTRY) if metrics is None else list(metrics)
    names = list(dict.fromkeys(n for m in given for n in grouped.get(m, [m])))
    unknown = [m for m in names if m not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"metrics: unknown {', '.join(map(repr, unknown))}; expected any of {', '.join(REGISTRY)} "
            f"(or a group: {', '.join(grouped) or 'none'})"
        )
    if not names:
        raise ConfigError("metrics: empty list; name at least one metric or leave it out for all")
    return names
