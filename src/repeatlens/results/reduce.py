"""Reductions of the tidy scores table that the study, the figures and the report share.

The scores table is long (:mod:`repeatlens.results.schema`): one row per (run, checkpoint,
metric, head, offset, probe), with the run's coordinates joined in. Every reduction here
reads ONE probe: :func:`select_probe` picks it (a default when the caller names none, and
says which), so no figure or target ever averages over probes silently.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from repeatlens.errors import ConfigError

__all__ = [
    "PROBE_PREFERENCE",
    "probe_keys",
    "select_probe",
    "circuits",
]

PROBE_PREFERENCE = ("synthetic", "train", "text", "uniform")
"""The default probe when a table holds several: the family that sees learned circuits
first (the synthetic source's ids, then the training distribution, then held-out text;
uniform ids over the whole vocabulary hide heads a model learned on a sub-vocabulary)."""


def probe_keys(scores: pd.DataFrame) -> list[str]:
    """The distinct probe keys of the rows that read a probe, sorted."""
    from repeatlens.results.store import row_keys

    if "probe" not in scores.columns:
        return []
    keys = row_keys(scores[scores["probe"].astype(str) != ""])
    return sorted(set(keys))


def _matches(key: str, family: str, settings: dict[str, int]) -> bool:
    fam, L, B, s = key.split(":")
    got = {"copy_len": int(L[1:]), "batch": int(B[1:]), "seed": int(s[1:])}
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
    from repeatlens.results.store import row_keys

    keys = probe_keys(scores)
    if not keys:
        if probe is not None and "probe" in scores.columns and len(scores):
            raise ConfigError(f"probe {probe!r}: the table has no rows that read a probe")
        return scores, None
    row_key = row_keys(scores)
    if probe is None:
        family = next(f for f in PROBE_PREFERENCE + tuple(k.split(":")[0] for k in keys) if any(k.startswith(f + ":") for k in keys))
        candidates = [k for k in keys if k.startswith(family + ":")]
        runs = {k: scores.loc[row_key == k, "run_id"].nunique() for k in candidates}
        chosen = sorted(candidates, key=lambda k: (-runs[k], k))[0]
    else:
        from repeatlens.scores.probes import ProbeSpec

        spec = ProbeSpec.parse(probe)
        given = {k: v for k, v in (("copy_len", spec.copy_len),) if v is not None}
        text = str(probe)
        if ":B" in text:
            given["batch"] = spec.batch
        if ":s" in text:
            given["seed"] = spec.seed
        found = [k for k in keys if _matches(k, spec.family, given)]
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
    from repeatlens.results.store import row_keys

    cols = ["run_id", "step", "probe", "layer", "head", "d", "score", "partner_layer", "partner_head", "partner_score", "kind"]
    need = {"shifted_induction", "shifted_induction_shift", "offset_profile"}
    if not {"metric", "offset"} <= set(scores.columns) or not need <= set(scores["metric"].unique()):
        return pd.DataFrame({c: [] for c in cols})
    s = scores[scores["metric"].isin(need)].assign(key=lambda t: row_keys(t).to_numpy())
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
