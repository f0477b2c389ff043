"""What every reader of a metric needs to know about it, declared once, on its score.

A score declares its :class:`MetricFacts` on its ``@register`` line
(:func:`repeatlens.scores.register`, ``facts=``): the axis label and its unit, the range its
values can take, whether higher is better, its chance level, and whether it is a level (a
figure plots it over training; an offset profile, a shift or a standard error is not). The
figures, the reductions (damage signs, :data:`repeatlens.results.reduce.QUANTITIES`), the
report and the study read them from here, and this module imports neither torch nor
TransformerLens, so the code that only reads tables can.

A metric's facts are looked up (:func:`metric_facts`) in this order:

1. the scores registered in this process (:func:`declare`, which ``@register`` calls);
2. the built-in scores' facts, a snapshot generated from their ``@register`` lines
   (:mod:`repeatlens.results.builtin_facts`; a test checks it equals them), for a process
   that never imported the scores (``repeatlens figures``, ``repeatlens report``);
3. the facts a scores table recorded (:data:`TABLE_KEY` in its metadata, ``df.attrs`` once
   loaded): a table scored with someone's own score renders with that score's label later,
   in a process that never imported it;
4. otherwise the name itself (``"my_score"`` reads ``"my score"``), no unit, no range, no
   direction, no chance level, a level.

Besides the scores, the training metrics' losses (``train_loss`` and the natural-text and
synthetic splits, which no score computes) have their facts here (:data:`TRAINING_FACTS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

__all__ = [
    "MetricFacts",
    "UNIFORM_ATTENTION",
    "TABLE_KEY",
    "TRAINING_FACTS",
    "declare",
    "forget",
    "declared",
    "known",
    "metric_facts",
    "table_facts",
    "record_facts",
    "FactsView",
]

UNIFORM_ATTENTION = "uniform_attention"
"""A chance level: the score of causal uniform attention (query ``i`` gives ``1/(i+1)`` to each
earlier key) on the probe batch, the level a randomly initialised model sits near. It depends
on the probe, so each probe family has its own (:func:`repeatlens.scores.chance_levels`)."""

TABLE_KEY = "metric_facts"
"""Where a scores table's metadata (and ``df.attrs``) keeps the facts of the metrics it holds."""

Chance = Union[None, float, str, Callable[[Any], float]]


@dataclass(frozen=True)
class MetricFacts:
    """What a reader needs to know about a metric.

    Attributes:
        label: what the value is, as an axis names it (``"test loss"``).
        unit: its unit, or what it is measured in or against, shown in parentheses after the
            label (``"nats/token"``, ``"attention"``); ``""`` for a bare number.
        range: ``(lo, hi)``, the values it can take (either end may be infinite); None when
            unbounded on both sides. A heatmap of a metric bounded at both ends uses the fixed
            range, so that runs compare.
        higher_is_better: True for an ability (induction), False for a loss, None when neither
            (a cost of ablating a head, a fraction memorized). Fixes the sign of damage.
        chance: the chance level: None (none stated), a number, :data:`UNIFORM_ATTENTION`, or a
            callable of the probe batch returning the level (evaluated per probe batch, so per
            probe family).
        level: whether it is a level to plot over training and take the best head of; False
            for a profile over offsets, a shift or a standard error.

    >>> f = MetricFacts("test loss", "nats/token", range=(0.0, math.inf), higher_is_better=False)
    >>> f.axis_label, f.sign, f.bounded
    ('test loss (nats/token)', 1, False)
    """

    label: str
    unit: str = ""
    range: Optional[tuple[float, float]] = None
    higher_is_better: Optional[bool] = None
    chance: Chance = None
    level: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"MetricFacts.label: expected a non-empty string, got {self.label!r}")
        if not isinstance(self.unit, str):
            raise ValueError(f"MetricFacts.unit: expected a string, got {self.unit!r}")
        if self.range is not None:
            lo, hi = (float(v) for v in self.range)
            if math.isnan(lo) or math.isnan(hi) or not lo < hi:
                raise ValueError(f"MetricFacts.range: expected (lo, hi) with lo < hi, got {self.range!r}")
            object.__setattr__(self, "range", (lo, hi))
        if self.higher_is_better not in (None, True, False):
            raise ValueError(f"MetricFacts.higher_is_better: expected True, False or None, got {self.higher_is_better!r}")
        c = self.chance
        if isinstance(c, str) and c != UNIFORM_ATTENTION:
            raise ValueError(f"MetricFacts.chance: expected a number, {UNIFORM_ATTENTION!r} or a callable, got {c!r}")
        if isinstance(c, bool) or (c is not None and not isinstance(c, str) and not callable(c) and not isinstance(c, (int, float))):
            raise ValueError(f"MetricFacts.chance: expected a number, {UNIFORM_ATTENTION!r} or a callable, got {c!r}")

    @classmethod
    def loss(cls, label: str) -> "MetricFacts":
        """A mean next-token loss: nats/token, from 0, lower is better."""
        return cls(label, "nats/token", range=(0.0, math.inf), higher_is_better=False)

    @classmethod
    def loss_change(cls, label: str) -> "MetricFacts":
        """A change of a loss (an ablation's cost): nats/token, either sign, no better direction."""
        return cls(label, "nats/token")

    @classmethod
    def attention(cls, label: str, unit: str = "attention") -> "MetricFacts":
        """An attention score: an attention probability from 0 to 1, higher is better, at
        :data:`UNIFORM_ATTENTION` by chance."""
        return cls(label, unit, range=(0.0, 1.0), higher_is_better=True, chance=UNIFORM_ATTENTION)

    @property
    def axis_label(self) -> str:
        """The label with its unit: ``"test loss (nats/token)"``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def sign(self) -> Optional[int]:
        """+1 when higher is worse (a loss), -1 when higher is better, None when neither:
        damage is ``sign * (value - control) / |control|``, positive when worse."""
        return None if self.higher_is_better is None else (-1 if self.higher_is_better else 1)

    @property
    def bounded(self) -> bool:
        """Whether the range is finite at both ends."""
        return self.range is not None and all(math.isfinite(v) for v in self.range)

    def describe(self) -> str:
        """One sentence for a caption: ``"test loss (nats/token): lower is better, from 0."``"""
        parts = []
        if self.higher_is_better is not None:
            parts.append("higher is better" if self.higher_is_better else "lower is better")
        if self.range is not None:
            lo, hi = self.range
            if math.isfinite(lo) and math.isfinite(hi):
                parts.append(f"from {lo:g} to {hi:g}")
            elif math.isfinite(lo):
                parts.append(f"from {lo:g}")
            elif math.isfinite(hi):
                parts.append(f"up to {hi:g}")
        if isinstance(self.chance, (int, float)) and not isinstance(self.chance, bool):
            parts.append(f"chance level {self.chance:g}")
        elif self.chance is not None:
            parts.append("chance level: uniform attention on the probe" if self.chance == UNIFORM_ATTENTION
                         else "chance level computed on the probe")
        return f"{self.axis_label}{': ' + ', '.join(parts) if parts else ''}."

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (infinite ends as None; a callable chance level as ``"callable"``,
        which :meth:`from_json` reads as no stated level)."""
        chance = self.chance
        if callable(chance):
            chance = "callable"
        return {
            "label": self.label,
            "unit": self.unit,
            "range": None if self.range is None else [v if math.isfinite(v) else None for v in self.range],
            "higher_is_better": self.higher_is_better,
            "chance": chance,
            "level": self.level,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> "MetricFacts":
        """The facts :meth:`to_json` wrote.

        Raises:
            ValueError: a field of the wrong type or value (the message names it).
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"metric facts: expected a mapping, got {type(record).__name__}")
        rng = record.get("range")
        if rng is not None:
            if not isinstance(rng, (list, tuple)) or len(rng) != 2:
                raise ValueError(f"MetricFacts.range: expected [lo, hi], got {rng!r}")
            if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in rng):
                raise ValueError(f"MetricFacts.range: expected [lo, hi] numbers or null, got {rng!r}")
            rng = (-math.inf if rng[0] is None else float(rng[0]), math.inf if rng[1] is None else float(rng[1]))
        label, unit, better = record.get("label"), record.get("unit", ""), record.get("higher_is_better")
        chance, level = record.get("chance"), record.get("level", True)
        checks = [("label", label, isinstance(label, str)), ("unit", unit, isinstance(unit, str)),
                  ("higher_is_better", better, better is None or isinstance(better, bool)),
                  ("chance", chance, chance is None or isinstance(chance, str) or
                   (isinstance(chance, (int, float)) and not isinstance(chance, bool))),
                  ("level", level, isinstance(level, bool))]
        for what, value, ok in checks:
            if not ok:
                raise ValueError(f"MetricFacts.{what}: unexpected value {value!r}")
        return cls(label=label, unit=unit, range=rng, higher_is_better=better,
                   chance=None if chance == "callable" else chance, level=level)


TRAINING_FACTS: dict[str, MetricFacts] = {
    "train_loss": MetricFacts.loss("train loss"),
    "test_text": MetricFacts.loss("natural-text test loss"),
    "test_synthetic": MetricFacts.loss("synthetic test loss"),
    "repeated_text": MetricFacts.loss("natural-text repeated-subset loss"),
    "repeated_synthetic": MetricFacts.loss("synthetic repeated-subset loss"),
}
"""The losses of the training-metrics table that no score computes: the train loss and the
held-out and repeated sets' natural-text and synthetic splits (runs mixing a corpus with the
synthetic source)."""

_DECLARED: dict[str, MetricFacts] = {}
_BUILTIN: Optional[dict[str, MetricFacts]] = None


def declare(name: str, facts: MetricFacts) -> None:
    """Record ``name``'s facts for this process (``@register`` calls this)."""
    if not isinstance(facts, MetricFacts):
        raise TypeError(f"score {name!r}: facts must be a MetricFacts, got {type(facts).__name__}")
    _DECLARED[name] = facts


def forget(name: str) -> None:
    """Drop ``name``'s facts declared in this process (the score was unregistered)."""
    _DECLARED.pop(name, None)


def declared() -> dict[str, MetricFacts]:
    """The facts declared in this process, by metric, in registration order."""
    return dict(_DECLARED)


def _builtin() -> dict[str, MetricFacts]:
    global _BUILTIN
    if _BUILTIN is None:
        from repeatlens.results.builtin_facts import FACTS

        _BUILTIN = {name: MetricFacts.from_json(record) for name, record in FACTS.items()}
    return _BUILTIN


def known() -> dict[str, MetricFacts]:
    """Every metric whose facts this process knows without a table: the built-in scores (their
    snapshot), the training losses, then the scores registered here (which win)."""
    return {**_builtin(), **TRAINING_FACTS, **_DECLARED}


def table_facts(table: Any) -> dict[str, MetricFacts]:
    """The facts a scores table recorded: ``table.attrs[TABLE_KEY]`` of a DataFrame (or the
    mapping itself); entries that do not parse are left out (their metric reads as its name)."""
    raw = getattr(table, "attrs", table) if table is not None else None
    records = raw.get(TABLE_KEY) if isinstance(raw, Mapping) else None
    out: dict[str, MetricFacts] = {}
    for name, record in (records or {}).items():
        try:
            out[str(name)] = MetricFacts.from_json(record)
        except ValueError:
            continue
    return out


def metric_facts(name: str, table: Any = None) -> MetricFacts:
    """The facts of metric ``name``: declared in this process, else built in, else recorded
    by ``table`` (a scores DataFrame, or its ``attrs``), else the name alone.

    >>> metric_facts("test_loss").axis_label
    'test loss (nats/token)'
    >>> metric_facts("my_score").axis_label
    'my score'
    """
    found = _DECLARED.get(name) or _builtin().get(name) or TRAINING_FACTS.get(name)
    if found is not None:
        return found
    return table_facts(table).get(name) or MetricFacts(str(name).replace("_", " "))


def record_facts(meta: dict[str, Any], names: Any) -> None:
    """Write the facts of ``names`` that this process knows into a table's metadata
    ``meta[TABLE_KEY]`` (kept for the others), so the table carries them to a process that
    never imported their scores."""
    facts = known()
    recorded = meta.setdefault(TABLE_KEY, {})
    for name in names:
        if name in facts:
            recorded[name] = facts[name].to_json()


class FactsView(Mapping[str, Any]):
    """A read-only live view of one fact of every known metric (``get(facts) -> value``):
    what an older module-level dict (``theme.METRIC_LABELS``) now shows."""

    def __init__(self, get: Callable[[MetricFacts], Any]):
        self._get = get

    def __getitem__(self, name: str) -> Any:
        facts = known()
        if name not in facts:
            raise KeyError(name)
        return self._get(facts[name])

    def __iter__(self) -> Iterator[str]:
        return iter(known())

    def __len__(self) -> int:
        return len(known())
