"""Reductions of the tidy scores table that the study, the figures and the report share.

The scores table is long (:mod:`repeatlens.results.schema`): one row per (run, checkpoint,
metric, head, offset, probe), with the run's coordinates (f, E, D, model preset, parameter
counts, seed) joined in. Model-level metrics have ``layer``/``head`` = NA. Every reduction
here reads ONE probe: :func:`check_scores` picks it through :func:`select_probe` (a default
when the caller names none, recorded in ``df.attrs["probe"]`` so figures can say which), so
no figure or target ever averages over probes silently.

* per checkpoint (:func:`per_checkpoint`: per-head metrics reduced by the max over heads),
  final per run (:func:`final_values`, :func:`quantities_table`), seed statistics
  (:func:`seed_stats`), relative damage against the control of the same size
  (:func:`relative_damage`);
* probes (:func:`select_probe`) and named copying circuits (:func:`circuits`).

The scaling fits (where the damage peaks, E* against N, effective model size) live in
:mod:`repeatlens.results.fits`; their old names here are deprecated aliases.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from repeatlens.deprecation import renamed
from repeatlens.errors import ConfigError, RepeatlensError
from repeatlens.results.keys import row_keys
from repeatlens.results.metric_facts import MetricFacts, known, metric_facts
from repeatlens.results.schema import RUN_COLUMNS, RUN_DEFAULTS, parse_key

__all__ = [
    "TableError",
    "MissingDataError",
    "Quantity",
    "QUANTITIES",
    "get_quantity",
    "RUN_DEFAULTS",
    "PROBE_PREFERENCE",
    "require_columns",
    "check_scores",
    "run_table",
    "metric_rows",
    "is_per_head",
    "per_checkpoint",
    "final_values",
    "quantities_table",
    "control_mask",
    "seed_stats",
    "relative_damage",
    "default_run",
    "matching_control",
    "probe_keys",
    "select_probe",
    "circuits",
]


class TableError(RepeatlensError, ValueError):
    """A table handed to a reduction or a figure lacks a column, a run or a value it needs."""


class MissingDataError(TableError):
    """The table holds no data this reduction or figure can use (a metric, the control, a 2nd size)."""


@dataclass(frozen=True)
class Quantity:
    """A per-run quantity read off the scores table: a level metric whose direction its facts
    state (:class:`~repeatlens.results.metric_facts.MetricFacts`).

    Attributes:
        metric: the metric it reads (per-head metrics: the best head, the max over heads).
        sign: +1 when higher is worse (a loss), -1 when higher is better (an ability).
        label: how damage to it reads on a figure (``"test-loss rise vs control"``).
    """

    metric: str
    sign: int
    label: str

    @classmethod
    def of(cls, metric: str, facts: MetricFacts) -> Optional["Quantity"]:
        """The quantity of ``metric`` with ``facts``; None when they state no direction or it
        is not a level."""
        if facts.sign is None or not facts.level:
            return None
        return cls(metric, facts.sign, f"{metric.replace('_', '-')} {'drop' if facts.higher_is_better else 'rise'} vs control")


class _Quantities(Mapping[str, Quantity]):
    """Every metric known here (:func:`~repeatlens.results.metric_facts.known`) that is a
    quantity, read off the facts at each access (a score registered later is one)."""

    def _all(self) -> dict[str, Quantity]:
        out = {name: Quantity.of(name, facts) for name, facts in known().items()}
        return {name: q for name, q in out.items() if q is not None}

    def __getitem__(self, name: str) -> Quantity:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


QUANTITIES: Mapping[str, Quantity] = _Quantities()
"""Every per-run quantity the study and the figures compare, by name: each level metric whose
facts say whether higher is better (``test_loss``, ``induction``, ``copying_gain``, ...). Damage
is the relative change against the control, signed so that positive means worse:
``sign * (value - control) / |control|``."""
_ALIASES = {"copying": "copying_loss"}  # the phase diagram's older name


def get_quantity(name: str, scores: Optional[pd.DataFrame] = None) -> Quantity:
    """The :class:`Quantity` named ``name`` (``"copying"`` is read as ``"copying_loss"``);
    ``scores``: the table it is read from, whose recorded facts name metrics this process does
    not know (:func:`~repeatlens.results.metric_facts.metric_facts`)."""
    metric = _ALIASES.get(name, name)
    q = Quantity.of(metric, metric_facts(metric, scores))
    if q is None:
        raise TableError(f"quantity must be one of {sorted(QUANTITIES)} (a level metric whose facts say whether higher "
                         f"is better), got {name!r}")
    return q


SCORE_NEEDS = ["run_id", "step", "tokens_seen", "metric", "layer", "head", "value"]


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise :class:`TableError` naming the columns ``table`` (``what``) lacks."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise TableError(f"{what} lacks column(s) {missing}; it has {list(table.columns)}")


def check_scores(scores: pd.DataFrame, probe: Optional[str] = None) -> pd.DataFrame:
    """Validate a scores table and return ONE probe's rows (plus those that read none),
    with tidy dtypes and every run column (missing ones get :data:`RUN_DEFAULTS`).

    Args:
        scores: the long scores table.
        probe: the probe to keep (see :func:`select_probe`); None: the table's default.

    Returns:
        A copy; ``attrs["probe"]`` holds the key of the probe kept (None if no row reads one).
    """
    require_columns(scores, SCORE_NEEDS, "scores table")
    out, key = select_probe(scores, probe)
    out = out.copy()
    if "control" not in out.columns and "repeated_fraction" in out.columns:  # a table written before data-matched controls
        f = out["repeated_fraction"].astype(float)
        out["control"] = np.where(f == 0, "full", np.where(f > 0, "none", ""))
    for column, default in RUN_DEFAULTS.items():
        if column not in out.columns:
            out[column] = default
        elif column not in ("repeated_fraction", "repeat_count", "total_tokens"):  # rows of a foreign run beside a sweep's
            out[column] = out[column].fillna(default)
    if "offset" in out.columns:
        out = out[out["offset"].isna() | (out["metric"] == "offset_profile")]
    out["repeated_fraction"] = out["repeated_fraction"].astype(float)
    out["repeat_count"] = out["repeat_count"].astype(float)
    out["n_params"] = out["n_params"].fillna(0)
    out["value"] = out["value"].astype(float)
    out["run_id"] = out["run_id"].astype(str)
    out.attrs["probe"] = key
    return out


def run_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its coordinates (``run_id`` + :data:`RUN_COLUMNS`), sorted by
    size, f, E, seed."""
    cols = ["run_id"] + [c for c in RUN_COLUMNS if c in scores.columns]
    runs = scores[cols].drop_duplicates("run_id")
    return runs.sort_values(["n_params", "repeated_fraction", "repeat_count", "seed", "run_id"]).reset_index(drop=True)


def metric_rows(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one metric with a finite value; :class:`MissingDataError` if there are none."""
    rows = scores[(scores["metric"] == metric) & scores["value"].notna()]
    if rows.empty:
        present = sorted(scores["metric"].unique())
        raise MissingDataError(f"the scores table has no {metric!r} rows; metrics present: {present}")
    return rows


def is_per_head(rows: pd.DataFrame) -> bool:
    """Whether a metric's rows are per head (head not NA)."""
    return bool(rows["head"].notna().any())


def per_checkpoint(scores: pd.DataFrame, metric: str, layer: Optional[int] = None, head: Optional[int] = None) -> pd.DataFrame:
    """One value per (run, checkpoint); per-head metrics reduced by the max over heads.

    With ``layer`` and ``head`` the single head is taken; with ``layer`` alone, the max
    over that layer's heads; with neither, the max over all heads. The returned
    ``layer``/``head`` columns name the head that attained the value (NA for model-level
    metrics).

    Args:
        scores: a validated scores table (:func:`check_scores`: one probe).
        metric: metric name.
        layer: optional layer restriction (per-head metrics only).
        head: optional head (needs ``layer``).

    Returns:
        Run columns + ``step``, ``tokens_seen``, ``layer``, ``head``, ``value``.
    """
    rows = metric_rows(scores, metric)
    if not is_per_head(rows):
        if layer is not None or head is not None:
            raise TableError(f"metric {metric!r} is model-level; layer/head do not apply")
        return rows.sort_values(["run_id", "step"]).reset_index(drop=True)
    if head is not None and layer is None:
        raise TableError("head given without layer; pass both to select one head")
    rows = rows[rows["head"].notna()]
    if layer is not None:
        rows = rows[rows["layer"] == layer]
    if head is not None:
        rows = rows[rows["head"] == head]
    if rows.empty:
        raise TableError(f"metric {metric!r} has no rows for layer={layer}, head={head}")
    best = rows.loc[rows.groupby(["run_id", "step"])["value"].idxmax()]
    return best.sort_values(["run_id", "step"]).reset_index(drop=True)


def final_values(scores: pd.DataFrame, metric: str, at: str = "last") -> pd.DataFrame:
    """The metric at each run's last (``at="last"``) or first (``"first"``) checkpoint
    that has it; per-head metrics: the max over heads.

    Returns:
        One row per run: run columns + ``step``, ``tokens_seen``, ``value``.
    """
    if at not in ("last", "first"):
        raise ValueError(f"at must be 'last' or 'first', got {at!r}")
    pc = per_checkpoint(scores, metric)
    pick = pc.groupby("run_id")["step"].idxmax() if at == "last" else pc.groupby("run_id")["step"].idxmin()
    return pc.loc[pick].reset_index(drop=True)


def quantities_table(scores: pd.DataFrame, quantities: Optional[Sequence[str]] = None, at: str = "last") -> pd.DataFrame:
    """One row per run: its coordinates and, per quantity present, :func:`final_values`.

    Args:
        scores: a validated scores table (one probe).
        quantities: names from :data:`QUANTITIES` (default: all; absent metrics are skipped).
        at: ``"last"`` or ``"first"`` checkpoint.

    Returns:
        ``run_id``, the run columns, ``step`` (the latest step of any quantity), then one
        column per quantity; sorted by size, f, E, seed.
    """
    runs = run_table(scores).set_index("run_id")
    steps = []
    present = set(scores["metric"].unique())
    for name in quantities or list(QUANTITIES):
        q = get_quantity(name, scores)
        if q.metric not in present:
            continue
        v = final_values(scores, q.metric, at).set_index("run_id")
        runs[name] = v["value"]
        steps.append(v["step"])
    runs["step"] = pd.concat(steps, axis=1).max(axis=1) if steps else np.nan
    return runs.reset_index()


def control_mask(table: pd.DataFrame) -> pd.Series:
    """Rows of the full-data f = 0 control (not the data-matched controls, which train on fewer tokens)."""
    full = table["repeated_fraction"].astype(float) == 0.0
    if "control" in table.columns:
        full &= table["control"].astype(str) != "data_matched"
    return full


def seed_stats(table: pd.DataFrame, keys: Sequence[str], values: str | Sequence[str] = "value") -> pd.DataFrame:
    """Per group of ``keys``, over its seeds: mean, sample std (0 for one seed), range
    (max - min, the "seed spread" the study compares differences against) and count.

    Returns:
        ``keys`` + for one value column (a string): ``mean``, ``std``, ``spread``, ``count``;
        for a list of columns, per column ``v``: ``v`` (the mean), ``v_std``, ``v_spread``,
        and one ``seeds`` count.
    """
    cols = [values] if isinstance(values, str) else list(values)
    g = table.groupby(list(keys))[cols]
    mean, std, spread = g.mean(), g.std().fillna(0.0), g.max() - g.min()
    if isinstance(values, str):
        out = pd.DataFrame({"mean": mean[values], "std": std[values], "spread": spread[values], "count": g.size()})
    else:
        out = mean.join(std.add_suffix("_std")).join(spread.add_suffix("_spread"))
        out["seeds"] = g.size()
    return out.reset_index()


def relative_damage(scores: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """Relative damage of every repeated-data (f > 0) run against its size's control.

    ``damage = sign * (value - control) / |control|`` (:data:`QUANTITIES`), with
    ``control`` the mean over seeds of the final value of the f = 0 runs of the same
    model size. Runs whose model size has no control are dropped.

    Returns:
        One row per non-control run: run columns + ``value``, ``control_value``, ``damage``.
    """
    q = get_quantity(quantity, scores)
    final = final_values(scores, q.metric)
    ctrl = final[control_mask(final)].groupby("n_params")["value"].mean().rename("control_value")
    if ctrl.empty:
        raise MissingDataError(f"no f = 0 control run has {q.metric!r}; relative damage needs one")
    runs = final[final["repeated_fraction"] > 0].join(ctrl, on="n_params", how="inner")
    if runs.empty:
        raise MissingDataError(f"no repeated-data run shares a model size with a control run that has {q.metric!r}")
    runs = runs.copy()
    runs["damage"] = q.sign * (runs["value"] - runs["control_value"]) / runs["control_value"].abs()
    return runs.reset_index(drop=True)


def default_run(scores: pd.DataFrame) -> str:
    """The run a single-run figure shows by default: the most damaged one.

    The repeated-data run with the largest relative test-loss rise; without test loss or
    control, the run with the largest f, then E; a sweep of controls only gives its first run.
    """
    try:
        dmg = relative_damage(scores, "test_loss")
        return str(dmg.sort_values(["damage", "run_id"], ascending=[False, True]).iloc[0]["run_id"])
    except MissingDataError:
        pass
    runs = run_table(scores)
    runs = runs.sort_values(["repeated_fraction", "repeat_count", "seed"], ascending=[False, False, True])
    return str(runs.iloc[0]["run_id"])


def matching_control(scores: pd.DataFrame, run_id: str) -> Optional[str]:
    """The control run of the same model size (same seed if there is one), or None."""
    runs = run_table(scores)
    this = runs[runs["run_id"] == run_id].iloc[0]
    ctrl = runs[control_mask(runs) & (runs["n_params"] == this["n_params"]) & (runs["run_id"] != run_id)]
    if ctrl.empty:
        return None
    same_seed = ctrl[ctrl["seed"] == this["seed"]]
    return str((same_seed if not same_seed.empty else ctrl).iloc[0]["run_id"])


PROBE_PREFERENCE = ("synthetic", "train", "text", "uniform")
"""The default probe when a table holds several: the family that sees learned circuits
first (the synthetic source's ids, then the training distribution, then held-out text;
uniform ids over the whole vocabulary hide heads a model learned on a sub-vocabulary)."""


def probe_keys(scores: pd.DataFrame) -> list[str]:
    """The distinct probe keys of the rows that read a probe, sorted."""
    if "probe" not in scores.columns:
        return []
    return sorted(set(row_keys(scores).unique()) - {""})


def _matches(key: str, family: str, settings: dict[str, int]) -> bool:
    fam, got = parse_key(key)
    return fam == family and all(got[k] == v for k, v in settings.items())


def select_probe(scores: pd.DataFrame, probe: Optional[str] = None) -> tuple[pd.DataFrame, Optional[str]]:
    """The rows of one probe, plus the rows that read none, and the probe's key.

    Args:
        scores: a tidy scores table (any number of probes).
        probe: a family (``"synthetic"``) or a key, complete or partial
            (``"synthetic:L30"``, ``"synthetic:L30:B16:s0"``); unnamed settings match any.
            None: the table's only probe, or else the default: the first family of
            :data:`PROBE_PREFERENCE` present, at the setting scored for the most runs.

    Returns:
        ``(rows, key)``; ``key`` is None when no row reads a probe.

    Raises:
        ConfigError: ``probe`` matches no probe of the table, or several (they are listed).
    """
    keys = probe_keys(scores)
    if not keys:
        if probe is not None and "probe" in scores.columns and len(scores):
            raise ConfigError(f"probe {probe!r}: the table has no rows that read a probe")
        return scores, None
    row_key = row_keys(scores)
    if probe is None:
        families = {k: parse_key(k)[0] for k in keys}
        family = next(f for f in PROBE_PREFERENCE + tuple(families.values()) if f in families.values())
        candidates = [k for k in keys if families[k] == family]
        runs = {k: scores.loc[row_key == k, "run_id"].nunique() for k in candidates}
        chosen = sorted(candidates, key=lambda k: (-runs[k], k))[0]
    else:
        from repeatlens.results.schema import check_family

        family, given = parse_key(probe)
        check_family(family)  # an unknown family is one line
        found = [k for k in keys if _matches(k, family, given)]
        if not found:
            raise ConfigError(f"probe {probe!r}: not in this table; it holds {', '.join(keys)}")
        if len(found) > 1:
            raise ConfigError(f"probe {probe!r} matches {len(found)} probes of this table ({', '.join(found)}); name one")
        chosen = found[0]
    keep = (scores["probe"].astype(str) == "") | (row_key == chosen)
    return scores[keep], chosen


def circuits(scores: pd.DataFrame, min_score: float = 0.3) -> pd.DataFrame:
    """Copying circuits named from the offset profile: a later head at offset L-1-d, paired
    with an earlier head attending d + 1 back.

    For every checkpoint and probe, every head of layer >= 1 whose ``shifted_induction``
    is at least ``min_score`` is a candidate, with ``d`` its ``shifted_induction_shift``.
    Its partner is the head of an earlier layer with the largest ``offset_profile`` at
    offset ``d + 1`` (attention ``d + 1`` tokens back from the second-copy queries). The
    pair copies when both read at least ``min_score``: the later head finds the position
    whose token ``d + 1`` back matches the current one and reads what the earlier head
    wrote there, the token after the earlier occurrence. ``d = 0`` is the canonical
    induction circuit (a previous-token head and an induction head, Olsson et al. 2022);
    ``d > 0`` is induction shifted by ``d`` (seen in this project's study, NOTES.md).

    Returns:
        One row per pair: ``run_id, step, probe`` (the key), ``layer, head, d, score``
        (the later head), ``partner_layer, partner_head, partner_score``, and ``kind``
        (``"canonical"`` or ``"shifted"``). Candidates without a partner reading at least
        ``min_score`` are left out.
    """
    cols = ["run_id", "step", "probe", "layer", "head", "d", "score", "partner_layer", "partner_head", "partner_score", "kind"]
    need = {"shifted_induction", "shifted_induction_shift", "offset_profile"}
    if not {"metric", "offset"} <= set(scores.columns) or not need <= set(scores["metric"].unique()):
        return pd.DataFrame({c: [] for c in cols})
    s = scores[scores["metric"].isin(need)]
    s = s.assign(key=row_keys(s).to_numpy())
    if "run_id" not in s.columns:
        s = s.assign(run_id="")
    head_cols = ["run_id", "step", "key", "layer", "head"]
    best = s[s.metric == "shifted_induction"][head_cols + ["value"]].rename(columns={"value": "score"})
    shift = s[s.metric == "shifted_induction_shift"][head_cols + ["value"]].rename(columns={"value": "d"})
    cand = best.merge(shift, on=head_cols)
    cand = cand[(cand["layer"] >= 1) & (cand["score"] >= min_score)]
    if cand.empty:
        return pd.DataFrame({c: [] for c in cols})
    cand = cand.assign(d=cand["d"].round().astype(int), partner_offset=cand["d"].round().astype(int) + 1)
    prof = s[s.metric == "offset_profile"][head_cols + ["offset", "value"]]
    prof = prof.rename(columns={"layer": "partner_layer", "head": "partner_head", "offset": "partner_offset", "value": "partner_score"})
    prof = prof.astype({"partner_offset": int})
    pairs = cand.merge(prof, on=["run_id", "step", "key", "partner_offset"])
    pairs = pairs[pairs["partner_layer"] < pairs["layer"]]
    if pairs.empty:
        return pd.DataFrame({c: [] for c in cols})
    pairs = pairs.loc[pairs.groupby(head_cols)["partner_score"].idxmax()]
    pairs = pairs[pairs["partner_score"] >= min_score]
    out = pairs.assign(probe=pairs["key"], kind=np.where(pairs["d"] == 0, "canonical", "shifted"))[cols]
    return out.sort_values(["run_id", "step", "probe", "layer", "head"]).reset_index(drop=True)


# ------------------------------------------------------------------------------ moved: the scaling fits

_MOVED = {
    "Peak": "Peak",
    "peak_of": "fit_peak",
    "effective_sizes": "effective_sizes",
    "PowerLaw": "LogLogLaw",
    "fit_power_law": "fit_loglog",
    "peak_scaling": "fit_scaling",
}
"""Names the scaling fits had here, and their replacements in :mod:`repeatlens.results.fits`.
The replacements fit differently (a bump fitted to every run instead of a 3-point parabola
vertex; L = L_inf + (N_c/N)^a instead of a pure power law; intervals at the right degrees of
freedom), so the old call signatures do not carry over: each old name warns and gives the new
object."""


def _moved_or_missing(name: str):
    if name in _MOVED:
        import warnings

        from repeatlens.results import fits

        new = _MOVED[name]
        warnings.warn(f"repeatlens.results.reduce.{name} is deprecated: the scaling fits moved to repeatlens.results.fits "
                      f"(use fits.{new}, or repeatlens.fit_scaling for the whole sweep)", DeprecationWarning, stacklevel=2)
        return getattr(fits, new)
    if name == "effective_size":
        import warnings

        warnings.warn("repeatlens.results.reduce.effective_size is deprecated: a pure power law has no irreducible term; "
                      "use repeatlens.results.fits.ControlLaw.n_eff", DeprecationWarning, stacklevel=2)
        return _effective_size_power_law
    raise AttributeError(f"module 'repeatlens.results.reduce' has no attribute {name!r}")


RENAMED = {"final_table": "quantities_table"}
"""Old names of this module's functions (deprecated aliases; study.final_table adds the losses)."""

__getattr__ = renamed(__name__, RENAMED, _moved_or_missing)


def _effective_size_power_law(loss: float | np.ndarray, a: float, alpha: float) -> float | np.ndarray:
    """The old ``effective_size``: ``N_eff = (loss / a)^(-1/alpha)`` on ``L(N) = a N^(-alpha)``."""
    return (np.asarray(loss, dtype=float) / a) ** (-1.0 / alpha)
