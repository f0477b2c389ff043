"""The redesigned scaling study's results (issue 21): tables, the scaling fit, T1-T6,
figures and RESULTS.md, from whatever runs of ``design.py`` are complete.

    python analyses/repeated_data_scaling/report.py --out runs/repeated_data_scaling_v2
    python analyses/repeated_data_scaling/report.py --out RUNS --results /tmp/scratch   # write elsewhere
    python analyses/repeated_data_scaling/report.py --out RUNS --archive-only           # only archive new runs

``run_study.py`` calls :func:`write_results` after training. The run directories are only
read (never written), so this can run beside a study that is still training: a run counts
once it has ``complete.json`` and every checkpoint scored on the study's probe. Every run
read is also kept in ``results/runs/`` (:func:`write_archive`: its scores, metrics and
facts, about 40 KB a run), which is committed: run directories do not outlive the machine
that trained them, and a later call on another machine reads from there the runs it lacks.
A size whose grid (its full-data controls, data-matched controls and repeated runs) is
incomplete is reported as incomplete, with a provisional peak fit labelled as such, and is
left out of the scaling fit and the targets; the T4 arm is read only when all its runs are complete.

What is computed where: :func:`analyse` (tables -> :class:`Study`: fits and typed verdicts,
no I/O), :func:`write_outputs` (a :class:`Study` -> files), :func:`collect` (run
directories and the archive -> tables). Every verdict line in RESULTS.md is a target
object's own ``line``; the prose around it quotes numbers from the objects, never decides.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import design  # noqa: E402
from repeatlens import study  # noqa: E402
from repeatlens.config import ModelConfig, read_yaml  # noqa: E402
from repeatlens.errors import RepeatlensError  # noqa: E402
from repeatlens.io import atomic_write_text  # noqa: E402
from repeatlens.results import fits, reduce  # noqa: E402
from repeatlens.results.metric_facts import TABLE_KEY as FACTS  # noqa: E402
from repeatlens.sweep import SweepPoint, expand_grid  # noqa: E402

LOSS = "test_text"
"""The loss every fit and target reads: held-out natural text (Shakespeare)."""
PROBE = design.ANALYZE["probes"]
SPLITS = ("test_text", "test_synthetic", "test", "repeated", "repeated_text", "repeated_synthetic")
"""The training evaluation's splits reported per run (each the first 512 sequences of its kind), with ``*_se``."""
SCORES = ("induction", "prefix_matching", "shifted_induction", "previous_token", "copying_gain", "copying_loss")
MAIN_ARMS = ("controls", "data-matched", "repeated")
T4_ARM = "T4 arm"
PILOT = "pilot"
PAPER_S_PER_N = 100e6 / 800e6
"""Hernandez et al. 2022's example: 100M repeated tokens degrade an 800M-parameter model (S/N = 0.125)."""
HERNANDEZ_EDGES = {"left": (4.2e6, -0.56), "right": (5.1e7, -0.50)}
"""E = a·N^b of the poor-performance region's half-maximum edges at D = 100B, as a secondary source quotes them."""
HERNANDEZ_D = 100e9
FIGURES = ("loss_vs_repeat_count", "peak_vs_size", "effective_size_vs_size", "effective_model_size", "t4_arm_trajectories")


# ------------------------------------------------------------------------------ chance levels


def same_head_chance(k: int, n: int, heads: int) -> float:
    """The chance that ``k`` or more of ``n`` seeds choose the same head, when each seed
    chooses one of ``heads`` heads uniformly and independently.

    1 - P(no head chosen k times) with P(every head at most k-1 times) =
    n!/H^n · [x^n] (sum_{j<k} x^j / j!)^H (exact, in fractions).

    >>> round(same_head_chance(2, 3, 4), 4), same_head_chance(3, 3, 4), same_head_chance(1, 2, 4)
    (0.625, 0.0625, 1.0)
    """
    if n < 1 or heads < 1 or k < 1:
        raise ValueError(f"need k, n, heads >= 1; got k={k}, n={n}, heads={heads}")
    if k > n:
        return 0.0
    if k == 1:
        return 1.0
    term = [Fraction(1, math.factorial(j)) for j in range(k)]
    poly = [Fraction(1)]
    for _ in range(heads):
        out = [Fraction(0)] * min(len(poly) + k - 1, n + 1)
        for i, a in enumerate(poly):
            for j, b in enumerate(term):
                if i + j <= n:
                    out[i + j] += a * b
        poly = out
    below = poly[n] * math.factorial(n) / Fraction(heads) ** n if n < len(poly) else Fraction(0)
    return float(1 - below)


# ------------------------------------------------------------------------------ the design


def _point_row(p: SweepPoint, preset: str, arm: str) -> dict[str, Any]:
    mix, model = p.config["mixture"], ModelConfig(**p.config["model"])
    f = float(mix["repeated_fraction"])
    control = "data_matched" if mix.get("data_matched") else ("full" if f == 0 else "none")
    vocab = int(p.config["data"]["vocab_size"])
    return {"run_id": p.name, "preset": preset, "arm": arm, "repeated_fraction": f, "repeat_count": float(mix["repeat_count"]),
            "seed": int(p.config["seed"]), "control": control, "N": model.n_params(vocab, embeddings=False),
            "N_total": model.n_params(vocab), "n_layers": model.n_layers, "n_heads": model.n_heads}


def expected_runs() -> pd.DataFrame:
    """Every run of ``design.py`` (arm: controls, data-matched, repeated, T4 arm) and of the
    pilots' grids outside it (arm ``pilot``), with its coordinates, its size (``N``, ``N_total``
    counted from the config, ``n_layers``, ``n_heads``) and ``pilot``: whether a pilot grid holds it."""
    rows = []
    for name, spec in design.sweeps().items():
        preset, arm = (design.T4_SIZE, T4_ARM) if name == T4_ARM else name.split(" ", 1)
        rows += [_point_row(p, preset, arm) for p in spec.points]
    piloted: set[str] = set()
    for path in sorted((HERE / "pilot").glob("*.yaml")):
        grid = read_yaml(path)["grid"]
        for p in expand_grid(design.base(), grid, where=str(path), progress=False):
            piloted.add(p.name)
            if p.name not in {r["run_id"] for r in rows}:
                rows.append(_point_row(p, p.config["model"]["preset"], PILOT))
    out = pd.DataFrame(rows)
    return out.assign(pilot=out["run_id"].isin(piloted))


# ------------------------------------------------------------------------------ the study, from tables


@dataclass
class NotRead(study.Target):
    """T2 at a size whose full-data controls do not form a copying circuit in most seeds: nothing to damage."""

    with_circuit: int = 0
    seeds: int = 0

    def render(self) -> str:
        return (f"T2 is read only where most full-data control seeds form a copying circuit (canonical or shifted "
                f"induction); here {self.with_circuit} of {self.seeds} did, so there is no circuit for repetition to "
                "damage. T5 and T6 read the loss at every size.")


@dataclass
class SizePeak:
    """One size's fitted peak outside the scaling fit: provisional (incomplete grid) or with the pilots' extra points."""

    preset: str
    N: float
    peak: Optional[fits.Peak]
    reason: Optional[str]
    runs: int
    expected: int
    grid: tuple[float, ...]


@dataclass
class Study:
    """Everything RESULTS.md reports, computed from the tables (:func:`analyse`)."""

    final: pd.DataFrame
    expected: pd.DataFrame
    status: pd.DataFrame
    probe: str
    complete_sizes: list[str]
    fit: Optional[fits.ScalingFit]
    scaling: list[study.Target]
    per_size: dict[str, list[study.Target]]
    """T1-T3 per complete size (T4 is read on the T4 arm: :attr:`t4`)."""
    provisional: dict[str, SizePeak]
    with_pilots: dict[str, SizePeak]
    t4: list[study.Target]
    t4_status: tuple[int, int]
    circuits: pd.DataFrame
    controls_circuits: pd.DataFrame
    points: pd.DataFrame
    metrics: pd.DataFrame
    chance: Optional[dict[str, float]]
    loss: str = LOSS
    outside: list[str] = field(default_factory=list)

    def all_targets(self) -> list[study.Target]:
        return self.scaling + [t for ts in self.per_size.values() for t in ts] + self.t4


def _final_splits(final: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """``final`` with each run's last evaluation of every split in :data:`SPLITS` (loss and ``*_se``)."""
    out = final.copy()
    for split in SPLITS:
        m = metrics[metrics["split"] == split].dropna(subset=["loss"])
        if m.empty:
            continue
        last = m.loc[m.groupby("run_id")["step"].idxmax()].set_index("run_id")
        out[split] = out["run_id"].map(last["loss"])
        out[f"{split}_se"] = out["run_id"].map(last["loss_se"]) if "loss_se" in last else np.nan
    return out


def _circuit_columns(circ: pd.DataFrame) -> pd.DataFrame:
    return circ[["run_id", "kind", "d", "head", "partner", "formed_at"]].rename(columns={
        "kind": "circuit", "d": "circuit_shift", "head": "circuit_head", "partner": "circuit_partner",
        "formed_at": "circuit_formed_at"})


def _status(expected: pd.DataFrame, done: set[str]) -> pd.DataFrame:
    """Per size and arm of the design: runs expected and complete."""
    rows = expected[expected["arm"] != PILOT].assign(complete=lambda t: t["run_id"].isin(done))
    return rows.groupby(["preset", "N", "arm"], sort=False).agg(expected=("run_id", "size"), complete=("complete", "sum")).reset_index()


def _size_peak(runs: pd.DataFrame, preset: str, expected: int) -> SizePeak:
    n = float(runs[study.SIZE].iloc[0]) if len(runs) else float("nan")
    grid = tuple(sorted(float(e) for e in runs["repeat_count"].unique()))
    try:
        peak = fits.fit_peak(runs["repeat_count"].to_numpy(), runs[LOSS].to_numpy(), N=n)
        reason = None
    except fits.ScalingDataError as e:
        peak, reason = None, str(e)
    return SizePeak(preset, n, peak, reason, len(runs), expected, grid)


def _controls_circuits(final: pd.DataFrame) -> pd.DataFrame:
    """Per size and control kind (main arms): seeds, seeds with a copying circuit, the most common later
    head among them and the chance that as many seeds pick one head if each picked uniformly."""
    rows = []
    ctrl = final[final["arm"].isin(["controls", "data-matched"])]
    for (preset, kind), g in ctrl.groupby(["model_preset", "control"], sort=False):
        formed = g[g["circuit"] != "none"]
        kinds = Counter("canonical" if k == "canonical" else f"shifted {int(d)}" for k, d in zip(formed["circuit"], formed["circuit_shift"]))
        heads = int(g["n_heads"].iloc[0] * (g["n_layers"].iloc[0] - 1))
        row = {"preset": preset, "N": float(g[study.SIZE].iloc[0]), "control": kind, "seeds": len(g),
               "seed_list": ", ".join(str(int(s)) for s in sorted(g["seed"])), "with_circuit": len(formed),
               "kinds": "; ".join(f"{k} ({v})" for k, v in kinds.most_common()) or "none", "top_head": "", "top_count": 0,
               "heads": heads, "chance": np.nan}
        if len(formed) >= 2 and heads:
            head, count = Counter(formed["circuit_head"]).most_common(1)[0]
            row.update(top_head=head, top_count=count, chance=same_head_chance(count, len(formed), heads))
        rows.append(row)
    cols = ["preset", "N", "control", "seeds", "seed_list", "with_circuit", "kinds", "top_head", "top_count", "heads", "chance"]
    return pd.DataFrame(rows, columns=cols).sort_values(["N", "control"]).reset_index(drop=True)


def _t2_read(cc: pd.DataFrame, preset: str) -> tuple[bool, int, int]:
    full = cc[(cc["preset"] == preset) & (cc["control"] == "full")]
    if full.empty:
        return False, 0, 0
    k, n = int(full["with_circuit"].iloc[0]), int(full["seeds"].iloc[0])
    return 2 * k > n, k, n


def _scaling(in_fit: pd.DataFrame) -> tuple[Optional[fits.ScalingFit], list[study.Target]]:
    """The scaling fit of the complete sizes' runs and T5, T6 (cannot judge while no size is complete)."""
    if in_fit.empty:
        why = "no model size has its whole grid (controls, data-matched controls, repeated runs) complete yet"
        return None, [study.AlphaTarget(name="T5", statement="the poor-performance region moves with model size",
                                        verdict=study.Verdict.CANNOT_JUDGE, loss=LOSS, reason=why),
                      study.EffectiveSizeTarget(name="T6", statement="effective model size", verdict=study.Verdict.CANNOT_JUDGE,
                                                loss=LOSS, reason=why)]
    try:
        fit = fits.fit_scaling(in_fit, LOSS, fraction=design.FRACTION)
    except fits.ScalingDataError:
        return None, study.evaluate_scaling(in_fit, loss=LOSS, fraction=design.FRACTION)
    return fit, study.scaling_targets(fit)


def _per_size(needed: pd.DataFrame, metrics: pd.DataFrame, in_fit: pd.DataFrame, cc: pd.DataFrame, sizes: list[str],
              chance: Optional[dict[str, float]], probe: str) -> dict[str, list[study.Target]]:
    """T1-T3 at every complete size, on all complete sizes' tables (T2's yardstick fits the controls' laws across sizes);
    T2 replaced by :class:`NotRead` where most full-data control seeds form no copying circuit."""
    out: dict[str, list[study.Target]] = {}
    fit_scores, fit_metrics = needed[needed["run_id"].isin(in_fit["run_id"])], metrics[metrics["run_id"].isin(in_fit["run_id"])]
    n_of = in_fit.drop_duplicates("model_preset").set_index("model_preset")[study.SIZE].astype(float)
    for preset in sorted(sizes, key=lambda p: n_of[p]):
        ts = study.evaluate_targets(fit_scores, fit_metrics, fraction=design.FRACTION, chance=chance, probe=probe, loss=LOSS,
                                    size=float(n_of[preset]))
        read, k, seeds = _t2_read(cc, preset)
        if not read:
            ts[1] = NotRead(name="T2", statement=ts[1].statement, verdict=study.Verdict.CANNOT_JUDGE, where=ts[1].where,
                            with_circuit=k, seeds=seeds)
        out[preset] = ts[:3]  # T4 is read on the T4 arm, designed for it (dense evaluations, f = 0.5)
    return out


def _side_peaks(final: pd.DataFrame, expected: pd.DataFrame, status: pd.DataFrame,
                sizes: list[str]) -> tuple[dict[str, SizePeak], dict[str, SizePeak]]:
    """Peaks outside the scaling fit: provisional ones of incomplete sizes, and complete sizes refitted with the pilots' extra points."""
    provisional, with_pilots = {}, {}
    rep = final[(final["control"] == "none") & np.isclose(final["repeated_fraction"], design.FRACTION)]
    for preset in dict.fromkeys(expected.loc[expected["arm"] == "repeated", "preset"]):
        mine = rep[(rep["model_preset"] == preset) & (rep["arm"] == "repeated")]
        want = int(status.loc[(status["preset"] == preset) & (status["arm"] == "repeated"), "expected"].sum())
        if preset not in sizes and len(mine):
            provisional[preset] = _size_peak(mine, preset, want)
        extra = rep[(rep["model_preset"] == preset) & (rep["arm"] == PILOT)]
        if preset in sizes and len(extra):
            with_pilots[preset] = _size_peak(pd.concat([mine, extra]), preset, want + len(extra))
    return provisional, with_pilots


def _t4_arm(needed: pd.DataFrame, metrics: pd.DataFrame, final: pd.DataFrame, runs: pd.Series,
            chance: Optional[dict[str, float]], probe: str) -> list[study.Target]:
    """T4 at each of the arm's repeat counts, on the arm's own runs and controls (all of them complete)."""
    t4s, t4m = needed[needed["run_id"].isin(runs)], metrics[metrics["run_id"].isin(runs)]
    n = float(final.loc[final["run_id"].isin(runs), study.SIZE].iloc[0])
    out = []
    for e in design.T4_REPEATS:
        t = study.evaluate_targets(t4s, t4m, fraction=design.T4_FRACTION, chance=chance, probe=probe, loss=LOSS,
                                   repeat_count=float(e))[3]
        t.where = f"T4 arm ({design.T4_SIZE}, N = {n:,.0f}, evaluated every {design.T4_EVAL_EVERY} steps): "
        out.append(t)
    return out


def _points(final: pd.DataFrame) -> pd.DataFrame:
    """Per size, arm and grid point (pilot-only runs left out): mean, std, range and the seeds."""
    keys = [study.SIZE, "model_preset", "arm", "repeated_fraction", "repeat_count", "control"]
    cols = [c for c in (LOSS, f"{LOSS}_se", "repeated_text", "induction", "shifted_induction", "copying_gain") if c in final]
    runs = final[final["arm"] != PILOT]
    points = reduce.seed_stats(runs, keys, cols).sort_values(keys).reset_index(drop=True)
    seeds = runs.groupby(keys)["seed"].apply(lambda x: ", ".join(str(int(v)) for v in sorted(x))).rename("seed_list")
    return points.merge(seeds.reset_index(), on=keys)


def analyse(scores: pd.DataFrame, metrics: pd.DataFrame, expected: pd.DataFrame, *, chance: Optional[dict[str, float]] = None,
            info: Optional[pd.DataFrame] = None) -> Study:
    """The study from the complete runs' tables.

    Args:
        scores, metrics: the complete runs' tidy tables (:func:`repeatlens.results.store.join_run_tables`).
        expected: :func:`expected_runs` (the test passes its own design).
        chance: uniform-attention levels of the probe (T3's random-init check); None: not checked.
        info: per run (``run_id``) extra columns: ``train_seconds``, the synthetic shares (:func:`collect`).
    """
    s = reduce.check_scores(scores, PROBE)
    probe = s.attrs["probe"]
    final = _final_splits(study.final_table(s, None, probe).drop(columns=["test_loss", "repeated_loss"], errors="ignore"), metrics)
    circuits = study.circuit_table(s, probe)
    final = final.merge(_circuit_columns(circuits), on="run_id", how="left")
    if info is not None:
        final = final.merge(info, on="run_id", how="left")
    final = final.merge(expected[["run_id", "arm", "pilot", "n_layers", "n_heads"]], on="run_id", how="left")
    outside = sorted(final.loc[final["arm"].isna(), "run_id"])
    final = final.dropna(subset=["arm"]).reset_index(drop=True).assign(probe=probe)
    done = set(final["run_id"])
    status = _status(expected, done)
    main_status = status[status["arm"].isin(MAIN_ARMS)].groupby("preset", sort=False)[["expected", "complete"]].sum()
    complete_sizes = [p for p, r in main_status.iterrows() if r["complete"] == r["expected"]]
    in_fit = final[final["arm"].isin(MAIN_ARMS) & final["model_preset"].isin(complete_sizes)]
    needed = s[s["metric"].isin(study.STUDY_QUANTITIES)]  # what the targets read (not the offset profiles: most of the rows)

    fit, scaling = _scaling(in_fit)
    cc = _controls_circuits(final)
    per_size = _per_size(needed, metrics, in_fit, cc, complete_sizes, chance, probe)
    provisional, with_pilots = _side_peaks(final, expected, status, complete_sizes)
    t4_runs = expected.loc[expected["arm"] == T4_ARM, "run_id"]
    t4_done = int(t4_runs.isin(done).sum())
    t4 = _t4_arm(needed, metrics, final, t4_runs, chance, probe) if len(t4_runs) and t4_done == len(t4_runs) else []
    return Study(final=final, expected=expected, status=status, probe=probe, complete_sizes=complete_sizes, fit=fit,
                 scaling=scaling, per_size=per_size, provisional=provisional, with_pilots=with_pilots, t4=t4,
                 t4_status=(t4_done, len(t4_runs)), circuits=circuits, controls_circuits=cc, points=_points(final),
                 metrics=metrics, chance=chance, outside=outside)


# ------------------------------------------------------------------------------ the per-run table


CSV_COLUMNS = {
    "run_id": "run_id", "model_preset": "preset", "n_params_nonembedding": "N", "n_params": "N_total",
    "repeated_fraction": "repeated_fraction", "repeat_count": "repeat_count", "seed": "seed", "total_tokens": "total_tokens",
    "unique_tokens": "unique_tokens", "control": "control", "arm": "arm", "pilot": "pilot",
    **{c: c for s in SPLITS for c in (s, f"{s}_se")},
    **{c: c for c in SCORES}, "probe": "probe",
    "circuit": "circuit", "circuit_shift": "circuit_shift", "circuit_head": "circuit_head", "circuit_partner": "circuit_partner",
    "circuit_formed_at": "circuit_formed_at", "synthetic_share": "synthetic_share",
    "unique_synthetic_share": "unique_synthetic_share", "repeated_synthetic_share": "repeated_synthetic_share",
    "train_seconds": "train_seconds", "step": "step",
}
"""The columns of ``results/final_runs.csv`` (sweep-table name -> CSV name), in order; absent ones are skipped."""


def runs_table(s: Study) -> pd.DataFrame:
    """One row per complete run: ``results/final_runs.csv`` (``repeatlens fit`` reads it)."""
    cols = [c for c in CSV_COLUMNS if c in s.final.columns]
    order = ["n_params_nonembedding", "arm", "repeated_fraction", "repeat_count", "control", "seed"]
    return s.final.sort_values(order)[cols].rename(columns=CSV_COLUMNS).reset_index(drop=True)


# ------------------------------------------------------------------------------ markdown


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _e(v: Optional[float]) -> str:
    return "–" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.3g}")


def _status_md(s: Study) -> str:
    arms = list(dict.fromkeys(s.status["arm"]))
    head = ("| size | N | " + " | ".join(arms) + " | grid |\n|" + "---|" * (3 + len(arms)) + "\n")
    rows = []
    for (preset, n), g in s.status.groupby(["preset", "N"], sort=False):
        cells = {r.arm: f"{int(r.complete)} / {int(r.expected)}" for r in g.itertuples(index=False)}
        main = g[g["arm"].isin(MAIN_ARMS)]
        state = "complete" if preset in s.complete_sizes else ("–" if main.empty else "incomplete")
        rows.append(f"| {preset} | {n:,.0f} | " + " | ".join(cells.get(a, "") for a in arms) + f" | {state} |")
    return "Runs complete (and scored) of those the design expects:\n\n" + head + "\n".join(rows)


def _peak_row(p: fits.Peak, preset: str, f: float, d: float, note: str = "") -> str:
    s_star = f * d / p.e_star
    s_ci = (f"{f * d / p.e_star_ci95[1] / p.N:.3g}–{f * d / p.e_star_ci95[0] / p.N:.3g}" if p.e_star_ci95 else "no interval")
    ci = f"{_e(p.e_star_ci95[0])}–{_e(p.e_star_ci95[1])}" if p.e_star_ci95 else "no interval"
    amp = (f"{p.amplitude:+.3f} ({p.amplitude_ci95[0]:+.3f} to {p.amplitude_ci95[1]:+.3f})" if p.amplitude_ci95 else
           f"{p.amplitude:+.3f}")
    lof = p.lack_of_fit
    bump_fits = "not tested" if lof is None else f"{'yes' if lof.fits else 'NO'} (F({lof.dof_lack}, {lof.dof_pure}) = {lof.F:.2f}, p = {lof.p:.2g})"
    return (f"| {preset} | {p.N:,.0f} | {_e(p.e_star)} | {ci} | {amp} | {'yes' if p.interior else 'no'} | "
            f"{_e(p.e_left)} – {_e(p.e_right)} | {s_star:,.0f} | {s_star / p.N:.3g} ({s_ci}) | {p.runs}, {p.dof} | {bump_fits} | {note} |")


def _peaks_md(s: Study, d: float) -> str:
    f = design.FRACTION
    head = ("| size | N | E* | 95% | amplitude, nats (95%) | interior | half-max edges | S* = f·D/E* (tokens) | S*/N (95%) | "
            "runs, dof | bump fits the means | |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    presets = s.final.drop_duplicates(study.SIZE).set_index(study.SIZE)["model_preset"]
    rows = []
    if s.fit is not None:
        rows += [_peak_row(p, presets.get(p.N, "?"), f, d, "complete grid") for p in s.fit.peaks]
        rows += [f"| | | | | | | | | | | | complete grid, no peak: {u} |" for u in s.fit.unfitted]
    for label, table in (("PROVISIONAL: {runs} of {expected} repeated runs", s.provisional),
                         ("design grid + the pilots' runs outside it ({runs} runs)", s.with_pilots)):
        for sp in table.values():
            note = label.format(runs=sp.runs, expected=sp.expected) + f", E = {', '.join(f'{e:g}' for e in sp.grid)}"
            rows.append(_peak_row(sp.peak, sp.preset, f, d, note) if sp.peak is not None else
                        f"| {sp.preset} | {sp.N:,.0f} | | | | | | | | {sp.runs}, – | | {note}: no fit ({sp.reason}) |")
    return head + "\n".join(rows) if rows else "No size has enough complete repeated runs for a peak fit yet."


def _bump_fits_md(s: Study) -> str:
    """What the peak table's lack-of-fit column means, and how many of the design grid's fits it rejects."""
    tested = [p for p in (s.fit.peaks if s.fit is not None else ()) if p.lack_of_fit is not None]
    missed = [p for p in tested if not p.lack_of_fit.fits]
    what = ("\"Bump fits the means\" is the pure-error lack-of-fit F test (`repeatlens.results.fits.lack_of_fit`): the bump's "
            "misfit to the mean loss at each E against the seeds' scatter about those means, at the "
            f"{fits.LACK_OF_FIT_LEVEL:.0%} level (on exact bumps of this design's shape it rejects at about that rate).")
    if not tested:
        return what
    rep = s.points[(s.points["arm"] == "repeated") & (s.points["control"] == "none") & s.points["model_preset"].isin(s.complete_sizes)]
    tops, above, spread = [], [], 0.0
    for _, g in rep.groupby("model_preset", sort=False):
        g = g.sort_values("repeat_count")
        m = g[LOSS].to_numpy()
        i = int(np.argmax(m))
        tops.append((f"{g['repeat_count'].iloc[i]:g}", 0 < i < len(m) - 1))
        above.append(min(m[i] - m[0], m[i] - m[-1]))
        spread = max(spread, float(g[f"{LOSS}_spread"].max()))
    shape = ("" if not tops else
             " Without the model, the grid's mean loss peaks at E = " + ", ".join(t for t, _ in tops) + " (size by size; "
             + ("interior at every size" if all(i for _, i in tops) else "NOT interior at every size")
             + f"), {min(above):.2f} to {max(above):.2f} nats above both ends of the window, against seed ranges of at most "
             f"{spread:.2f} at any E.")
    if not missed:
        return what + f" It fits at all {len(tested)} sizes of the design grid." + shape
    return (what + f" It does not fit at {len(missed)} of {len(tested)} sizes of the design grid (N = "
            + ", ".join(f"{p.N:,.0f}" for p in missed) + "): there E* and its interval are the bump model's, the interval "
            "assumes a model these runs reject, and E* can move when the grid reaches further"
            + (" (the rows \"design grid + the pilots' runs outside it\")." if s.with_pilots else ".") + shape)


def _matched_md(s: Study, d: float) -> str:
    """What the data-matched controls train on, against the full-data ones (tokens and, where complete, steps)."""
    f = s.final
    steps = {k: sorted(set(f.loc[(f["control"] == k) & (f["arm"] != T4_ARM), "step"].dropna().astype(int))) for k in ("full", "data_matched")}
    seen = (f" ({', '.join(map(str, steps['data_matched']))} steps against {', '.join(map(str, steps['full']))})"
            if steps["full"] and steps["data_matched"] else "")
    return (f"A data-matched control trains on (1 − f)·D = {(1 - design.FRACTION) * d:,.0f} tokens, every one unique: the "
            f"unique tokens of a run at f = {design.FRACTION:g}, and also fewer tokens and steps in all{seen}, so against it "
            "a few repeats differ in repetition and in the extra f·D tokens trained on.")


def _share_md(s: Study) -> str:
    f = s.final
    need = {"synthetic_share", "unique_synthetic_share", "repeated_synthetic_share"}
    if not need <= set(f.columns) or f["synthetic_share"].isna().all():
        return "The synthetic shares were not measured (the runs' `data/` files were not readable)."
    rep = f[(f["control"] == "none") & np.isclose(f["repeated_fraction"], design.FRACTION)]
    ctrl = f[f["control"] == "full"]

    def rng(v: pd.Series) -> str:
        v = v.dropna()
        return "–" if v.empty else (f"{v.min():.1%}" if math.isclose(v.min(), v.max(), abs_tol=5e-4) else f"{v.min():.1%}–{v.max():.1%}")

    return (f"Measured from every complete run's `data/` (its schedule and which pool rows are synthetic): the unique "
            f"sequences are {rng(f['unique_synthetic_share'])} synthetic; the repeated subset is "
            f"{rng(rep['repeated_synthetic_share'])} synthetic (`mixture.repeated_source: corpus`); so at f = "
            f"{design.FRACTION:g} the training tokens are {rng(rep['synthetic_share'])} synthetic ((1 − f) · 75% = "
            f"{(1 - design.FRACTION) * 0.75:.2%} at exactly f; f is realised in whole repeated sequences, so it varies with "
            f"E), against {rng(ctrl['synthetic_share'])} in the full-data "
            f"controls. A run at f = {design.FRACTION:g} therefore trains on more natural text than either control (its "
            "repeated part is all text; both controls keep the unique data's mix). Against the data-matched control (the same "
            "unique tokens) it differs only by its f·D repeated tokens: their repetition, and their being extra natural text "
            "and extra steps. No control of this design has the repeated runs' mix without the repetition.")


def _circuits_md(s: Study) -> str:
    cc = s.controls_circuits
    if cc.empty:
        return "No control run is complete yet."
    head = ("| size | N | control | seeds | with a copying circuit | circuits | same later head | chance of that coincidence |\n"
            "|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in cc.itertuples(index=False):
        if r.top_count >= 2:  # a coincidence to weigh
            same = f"{r.top_head} in {r.top_count} of {r.with_circuit}"
            p = f"{r.chance:.3f} (≥ {r.top_count} of {r.with_circuit} seeds on one of {r.heads} later-layer heads, each uniform)"
        else:  # one seed with a circuit, or each on its own head: nothing shared, no chance level to give
            same, p = ("none: each seed on its own head" if r.with_circuit >= 2 else "–"), "–"
        rows.append(f"| {r.preset} | {r.N:,.0f} | {r.control} | {r.seeds} ({r.seed_list}) | {r.with_circuit} | {r.kinds} | "
                    f"{same} | {p} |")
    read = [p for p in s.complete_sizes if _t2_read(cc, p)[0]]
    return (head + "\n".join(rows) + "\n\nT2 is read at a complete size where most of its full-data control seeds form a "
            f"copying circuit: {', '.join(read) if read else 'no complete size so far'}. T5 and T6 read the loss at every size.")


def _points_md(s: Study) -> str:
    cols = [c for c in (LOSS, "repeated_text", "induction", "shifted_induction", "copying_gain") if c in s.points]
    head = ("Mean (range, max − min, over the seeds listed) at the last checkpoint; `results/points.csv` also has the standard "
            "deviations.\n\n| size | arm | f | E | control | seeds | " + " | ".join(c.replace("_", " ") for c in cols) + " |\n|"
            + "---|" * (6 + len(cols)) + "\n")
    rows = []
    for r in s.points.to_dict("records"):
        cells = [("–" if pd.isna(r[c]) else f"{r[c]:.3f}" if r["seeds"] == 1 else f"{r[c]:.3f} (range {r[c + '_spread']:.3f})")
                 for c in cols]
        rows.append(f"| {r['model_preset']} | {r['arm']} | {r['repeated_fraction']:g} | {r['repeat_count']:g} | {r['control']} | "
                    f"{r['seed_list']} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def _pilots_md(s: Study) -> str:
    pilots = s.expected[s.expected["pilot"]]
    got = s.final[s.final["pilot"].fillna(False).astype(bool)].sort_values([study.SIZE, "repeated_fraction", "repeat_count"])
    head = ("| size | point | seed | test text | copying gain | circuit | part of |\n|---|---|---|---|---|---|---|\n")
    rows = []
    for r in got.itertuples(index=False):
        point = "full-data control" if r.control == "full" else f"f = {r.repeated_fraction:g}, E = {r.repeat_count:g}"
        circuit = "none" if r.circuit == "none" else ("canonical" if r.circuit == "canonical" else f"shifted {int(r.circuit_shift)}")
        if r.circuit != "none":
            circuit += f" ({r.circuit_head} + {r.circuit_partner}, by step {int(r.circuit_formed_at)})"
        part = "design" if r.arm != PILOT else "pilot only"
        rows.append(f"| {r.model_preset} | {point} | {int(r.seed)} | {getattr(r, LOSS):.3f} | {r.copying_gain:.2f} | {circuit} | {part} |")
    missing = sorted(set(pilots["run_id"]) - set(got["run_id"]))
    tail = f"\n\nPilot runs not among these results' complete runs: {', '.join(missing)}." if missing else ""
    return ("The pilot grids' runs, recomputed from the run directories (NOTES.md reads them):\n\n" + head + "\n".join(rows) + tail
            if rows else "No pilot run is complete." + tail)


def _literature_md(s: Study, d: float) -> str:
    fit = s.fit
    design_n = s.expected.loc[s.expected["arm"].isin(MAIN_ARMS), "N"]
    n_lo, n_hi = float(design_n.min()), float(design_n.max())
    ours = {"alpha": "not identified" if fit is None or not fit.identified else
            f"{fit.alpha:+.3f} (95% {fit.alpha_ci95[0]:+.3f} to {fit.alpha_ci95[1]:+.3f})"}
    for side in ("left", "right"):
        e = fit.edges.get(side) if fit is not None else None
        ours[side] = "not fitted" if e is None else f"{e['slope']:+.3f}"
    if fit is not None and fit.identified:
        ours_line = (f"left edge {ours['left']}, right edge {ours['right']} (their intervals in the fit above), peak alpha "
                     f"{ours['alpha']} here")
    else:  # the edges' laws are fitted only where alpha is identified
        ours_line = "here no exponent is identified (the fit above says why), for the peak or its edges"
    seq_len = int(design.base()["data"]["seq_len"])
    at = []
    for n in (n_lo, n_hi):
        edges = ", ".join(f"{side} E = {a * n ** b:,.0f} ({design.FRACTION * d / (seq_len * a * n ** b):.2g} sequences)"
                          for side, (a, b) in HERNANDEZ_EDGES.items())
        at.append(f"N = {n:,.0f}: {edges}")
    return f"""Hernandez et al. 2022 fit the half-maximum edges of the poor-performance region at one D = 100B tokens,
E = 4.2e6·N^−0.56 (left) and 5.1e7·N^−0.50 (right) (as a secondary source quotes them; not checked against the
paper's Figure 4 here). This study also holds D fixed (D = {d:,.0f} tokens) and varies N, so **the exponent, the slope
in log N at fixed D, is the comparable number**: {ours_line}, against −0.56, −0.50 there. **The intercepts are not comparable**: at fixed f they depend on D
(a repeated subset of S = f·D/E tokens), and neither fit measures how. For scale only, their edges at the design's
smallest and largest size, with the repeated subset (f·D/(seq_len·E) sequences of {seq_len} tokens) each would leave
at our D: {'; '.join(at)}. The paper's example in per-parameter units,
100M repeated tokens for 800M parameters (S/N = {PAPER_S_PER_N:g}), is set beside S*/N in the peak table.

Chudnovsky et al. 2026 (arXiv 2606.24998, "Internal Data Repetition Destroys Language Models") fit the peak's repeat
count as a power law in model size at a fixed overtraining ratio (tokens per parameter), a different axis: along it D
grows with N, while here D is fixed and D/N falls {n_hi / n_lo:.0f}-fold across the sizes
({d / n_lo:,.0f} to {d / n_hi:,.0f} tokens per non-embedding parameter). Their exponent (quoted in `repeatlens.study.LITERATURE_ALPHA` from notes on the paper, not checked
against it) would convert to this axis only with the peak's dependence on D, which this study (one D) does not
measure."""


def _fit_lines(fit: fits.ScalingFit, effective: bool = True) -> list[str]:
    """:meth:`ScalingFit.lines`, without its last entry (every grid point's effective size) unless ``effective``."""
    lines = fit.lines()
    has_table = fit.effective is not None and len(fit.effective) > 0
    return lines if effective or not has_table else lines[:-1]


def _machine(s: Study) -> str:
    from importlib.metadata import version

    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"repeatlens {version('repeatlens')}")


def _figures_md(written: dict[str, list[Path]], root: Path, static: Optional[str]) -> str:
    lines = []
    for name, paths in written.items():
        png = [p for p in paths if p.suffix == ".png"]
        html = [p for p in paths if p.suffix == ".html"]
        if png:
            lines.append(f"![{name}]({os.path.relpath(png[0], root)})")
        if html:
            lines.append(f"[{name} (interactive)]({os.path.relpath(html[0], root)})")
    note = "" if static is None else f"\n\nNo PNG: {static}. The figures are HTML only."
    return "\n\n".join(lines) + note


def markdown(s: Study, *, command: str, elapsed: float, started: bool, figures: str, notes: str, skipped: list[str]) -> str:
    """RESULTS.md. Verdict lines are the targets' own ``line``; every number is read from ``s``."""
    f = s.final
    d = float(design.base()["mixture"]["total_tokens"])  # the data-matched controls train on fewer: (1 - f)·D
    done, total = int(s.status["complete"].sum()), int(s.status["expected"].sum())
    train_min = float(f["train_seconds"].sum()) / 60 if "train_seconds" in f else float("nan")
    call = ("this call trained and scored what was missing, then wrote this file" if started else
            "this call only read the run directories and wrote the tables, figures and this file")
    sizes = "\n\n".join(f"### {p} (N = {float(f.loc[f.model_preset == p, study.SIZE].iloc[0]):,.0f})\n\n"
                        + study.targets_markdown(ts) for p, ts in s.per_size.items())
    incomplete = [p for p in dict.fromkeys(s.status["preset"]) if p not in s.complete_sizes]
    t4 = (study.targets_markdown(s.t4) if s.t4 else
          f"T4 cannot judge yet: {s.t4_status[0]} of {s.t4_status[1]} runs of the T4 arm are complete.")
    fit_block = "\n".join(_fit_lines(s.fit, effective=False)) if s.fit is not None else "No fit: no size has its whole grid complete."
    seeds = (f"repeated points {', '.join(map(str, design.SEEDS_REPEATED))}; full-data and data-matched controls "
             f"{', '.join(map(str, design.SEEDS_CONTROL))}; T4 arm {', '.join(map(str, design.T4_SEEDS))}")
    chance = ("not computed" if s.chance is None else
              ", ".join(f"{k.replace('_', '-')} {s.chance[k]:.3f}" for k in ("induction", "prefix_matching", "previous_token")
                        if k in s.chance))
    extra = f"\n\nRuns in the run directory that are neither in the design nor in a pilot grid (left out): {', '.join(s.outside)}." if s.outside else ""
    left = f"\n\nRun directories not yet complete and scored (left out): {', '.join(skipped)}." if skipped else ""
    return f"""# Results: the redesigned scaling study (issue 21)

Generated by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC ({_machine(s)}); {call} in
**{elapsed / 60:.1f} min** of wall time. The {len(f)} complete runs' training loops took **{train_min:.1f} min** in all
(the sum of their `complete.json` seconds; trained on {trained_on(f)}). **{done} of {total} runs of `design.py` are complete**;
{'every size is complete' if not incomplete else 'incomplete sizes (no targets, not in the scaling fit; provisional peaks below): ' + ', '.join(incomplete)}.

## What was trained and what was read

`design.py`: {len(design.SIZES)} widths of a 2-layer attention-only rotary model ({', '.join(design.SIZES)}), one
D = {d:,.0f} tokens for every size, f = {design.FRACTION:g} at a factor-2 window of seven repeat counts per size;
seeds: {seeds}. The T4 arm: {design.T4_SIZE} at f = {design.T4_FRACTION:g}, E = {', '.join(map(str, design.T4_REPEATS))},
evaluated every {design.T4_EVAL_EVERY} steps, with its own full-data and data-matched controls. {_matched_md(s, d)}

{_share_md(s)}

**Losses** are the training evaluation's at the last checkpoint: `test_text` is the mean loss over the first 512
held-out natural-text (Shakespeare) test sequences with its standard error over those sequences (`test_text_se`);
`test` mixes text and synthetic rows, `repeated_text` reads the repeated subset. **Scores** read the probe
`{s.probe}` ([BOS, r, r] with r drawn from the synthetic source's 64 ids, one batch shared by every checkpoint):
induction, prefix-matching, shifted induction and previous-token are the best head's score (max over layers and
heads), the copying gain is the model's loss on the first copy minus the second. Chance levels of uniform causal
attention on this probe: {chance}. N is the non-embedding parameter count (`N_total` all parameters). Every spread
is the range (max − min) over the seeds named beside it; every interval names its degrees of freedom.

{_status_md(s)}{extra}{left}

## Targets

### Across sizes (T5, T6; {len(s.complete_sizes)} complete size{'s' if len(s.complete_sizes) != 1 else ''})

{study.targets_markdown(s.scaling)}

### T1–T3 per complete size (T4 is read on the T4 arm)

How to read T3 in this design: neither control isolates repetition. The data-matched control is the one T3 is judged
against, and the repeated runs are favoured against it (a third more steps, and their repeated part is all natural
text); the full-data control beside it has their steps but a more synthetic mix (75% against 55–57%). A T3 "held"
therefore says that a few repeats cost nothing large enough to show through either difference, not that they cost
nothing.

{sizes or 'No size is complete yet.'}

### T4 on the T4 arm

How to read T4: it counts only a rise of the natural-text loss *after* the same-seed full-data control's loss has
flattened, the paper's late double descent (memorizing the repeated subset finishing after generic learning has slowed),
and only one beyond the evaluation's noise at a {study.RISE_ALPHA:.1%} family-wise false-rise rate over every pair of those checkpoints
(each run's line names its threshold in standard errors and how many checkpoints it was taken over).
A rise while the control is still falling is not counted; each run's line says where its damage against the control
peaks and when its repeated-subset loss approaches zero, so an early double descent shows there, and
`results/figures/t4_arm_trajectories.html` draws every evaluation.

{t4}

## The scaling fit

The fit of the complete sizes' design runs (`results/scaling_fit.json`; with every grid point's effective size in
`results/scaling_fit.txt`). `repeatlens fit results/final_runs.csv` would fit every run in the table, the pilots' extra
points and incomplete sizes too.

```
{fit_block}
```

### Peaks per size, and the repeated subset at the peak per parameter

S* = f·D/E* is the repeated subset's size at the peak; S*/N is beside the paper's 100M repeated tokens for 800M
parameters (S/N = {PAPER_S_PER_N:g}). E*'s interval is the bump fit's (t at the dof named). {_bump_fits_md(s)}

{_peaks_md(s, d)}

## The literature, in matching units

{_literature_md(s, d)}

## Copying circuits in the controls

Named from the offset profile at the last checkpoint (`repeatlens.study.circuit_table`): canonical induction, or
induction shifted by d; `results/circuits.csv` lists every run's.

{_circuits_md(s)}

## Final checkpoint, per grid point

{_points_md(s)}

## Figures

{figures}

## Pilots

{_pilots_md(s)}

{notes}
"""


# ------------------------------------------------------------------------------ writing


def _target_json(t: study.Target) -> dict[str, Any]:
    return {"name": t.name, "verdict": t.verdict.value, "held": t.held, "statement": t.statement, "line": t.line,
            "numbers": t.numbers}


def write_outputs(s: Study, root: Path, *, command: str, elapsed: float, started: bool = False,
                  formats: Sequence[str] = ("html", "png"), skipped: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``root/results/`` (tables, fit, targets, figures) and ``root/RESULTS.md``; returns what was written."""
    from study_figures import build_figures

    from repeatlens.plots import ExportError, find_chromium, write_figures

    res = root / "results"
    res.mkdir(parents=True, exist_ok=True)
    out = {"final_runs": res / "final_runs.csv", "points": res / "points.csv", "circuits": res / "circuits.csv",
           "targets": res / "targets.json"}
    atomic_write_text(out["final_runs"], runs_table(s).to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out["points"], s.points.to_csv(index=False, float_format="%.5g"))
    atomic_write_text(out["circuits"], s.circuits.to_csv(index=False, float_format="%.4g"))
    fit_json = res / "scaling_fit.json"
    fit_txt = res / "scaling_fit.txt"
    if s.fit is not None:
        out["scaling_fit"] = s.fit.to_json(fit_json)
        atomic_write_text(fit_txt, "\n".join(_fit_lines(s.fit)) + "\n")
        out["scaling_fit_text"] = fit_txt
    else:
        for old in (fit_json, fit_txt):  # a fit from an earlier call no longer describes these runs
            old.unlink(missing_ok=True)
    atomic_write_text(out["targets"], json.dumps(
        {"scaling": [_target_json(t) for t in s.scaling],
         "per_size": {p: [_target_json(t) for t in ts] for p, ts in s.per_size.items()},
         "t4_arm": [_target_json(t) for t in s.t4]}, indent=2, default=float) + "\n")

    figs = build_figures(s)
    static = None
    formats = list(formats)
    if any(f != "html" for f in formats) and find_chromium() is None:
        static, formats = "no Chromium found for kaleido (apt-get install chromium)", [f for f in formats if f == "html"]
    fig_dir = res / "figures"
    for name in FIGURES:  # figures an earlier call drew that this one cannot (e.g. N_eff before the law held)
        if name not in figs:
            for old in fig_dir.glob(f"{name}.*"):
                old.unlink()
    try:
        written = write_figures(figs, fig_dir, formats=formats, size="slides") if figs else {}
    except ExportError as e:
        static = str(e)
        written = write_figures(figs, fig_dir, formats=["html"], size="slides") if figs else {}
    notes_path = root / "NOTES.md"  # each set of results keeps its own notes (the GPU set: gpu/NOTES.md)
    notes = notes_path.read_text() if notes_path.exists() else f"No NOTES.md in {root}."
    text = markdown(s, command=command, elapsed=elapsed, started=started, figures=_figures_md(written, root, static),
                    notes=notes, skipped=list(skipped))
    out["RESULTS"] = root / "RESULTS.md"
    atomic_write_text(out["RESULTS"], text)
    return out


# ------------------------------------------------------------------------------ the run directories


@dataclass
class Collected:
    """The complete runs' tables and per-run facts from a study directory (:func:`collect`)."""

    scores: pd.DataFrame
    metrics: pd.DataFrame
    info: pd.DataFrame
    skipped: list[str]


def _scored(run: Any) -> bool:
    """Whether every checkpoint of ``run`` has the study probe's induction scores."""
    from repeatlens.results.store import SCORES_FILE, ScoreTable

    path = run.path / SCORES_FILE
    if not path.is_file():
        return False
    df = ScoreTable.read(path).df
    got = set(df.loc[(df["metric"] == "induction") & (df["probe"].astype(str) == PROBE), "step"].astype(int))
    return {c.step for c in run.checkpoints()} <= got


def _shares(run: Any) -> dict[str, float]:
    """Shares of synthetic sequences among the trained slots, the unique ones and the repeated subset."""
    try:
        shares = run.synthetic_shares()
    except RepeatlensError:
        return {}
    if shares is None:
        return {}
    return {"synthetic_share": shares["trained"], "unique_synthetic_share": shares["unique"],
            "repeated_synthetic_share": shares["repeated"]}


def collect(out: Path, archives: Sequence[Path] = ()) -> Collected:
    """The complete, scored runs' tables: those of the run directories under ``out``, and of
    every run the ``archives`` (:func:`write_archive`) hold that ``out`` lacks complete (a
    complete run directory wins over an archived copy, an earlier archive over a later
    one). Nothing is written."""
    from repeatlens.results.store import join_run_tables, sweep_runs

    complete, info, skipped = [], [], []
    for run in sweep_runs(out):
        done = run.completion()
        if done is None or not _scored(run):
            skipped.append(run.run_id)
            continue
        complete.append(run)
        env = done.get("environment") or {}
        info.append({"run_id": run.run_id, "train_seconds": float(done["seconds"]), "torch": env.get("torch"),
                     "device": device_label(env), **_shares(run)})
    here = Collected(*join_run_tables(complete), pd.DataFrame(info), skipped) if complete else None
    kept = None
    for path in archives:
        got = read_archive(path)
        kept = got if kept is None else (merge_collected(kept, got) if got is not None else kept)
    if here is None and kept is None:
        raise RepeatlensError(f"{out}: no complete, scored run of the study yet (expected run directories such as "
                              f"{design.SIZES[0]}_f0_E1_s0 with complete.json and scores.parquet, or an archive "
                              f"{ARCHIVE.relative_to(HERE)}/ with {INFO_FILE})")
    if kept is None:
        return here
    if here is None:
        kept.skipped = [r for r in skipped if r not in set(kept.info["run_id"])]
        return kept
    return merge_collected(here, kept)


# ------------------------------------------------------------------------------ the archive


ARCHIVE = HERE / "results" / "runs"
"""The committed copy of every complete run's tables (:func:`write_archive`): the run directories
stay out of git and do not outlive the machine that trained them, so a study that spans
machines reads the runs it no longer has from here."""
INFO_FILE = "runs.csv"
CHANCE_FILE = "chance.json"
INFO_COLUMNS = ("run_id", "train_seconds", "torch", "device", "synthetic_share", "unique_synthetic_share",
                "repeated_synthetic_share")


def device_label(env: dict) -> Optional[str]:
    """Where a run trained, from its ``complete.json`` environment: ``cuda: NVIDIA H200`` or
    ``cpu, 1 thread`` (None when the run recorded no device).

    >>> device_label({"device": "cuda", "device_name": "NVIDIA H200", "threads": 1})
    'cuda: NVIDIA H200'
    >>> device_label({"device": "cpu", "device_name": "x", "threads": 2}), device_label({})
    ('cpu, 2 threads', None)
    """
    device = env.get("device")
    if not device:
        return None
    if device.startswith("cuda"):
        return f"{device}: {env.get('device_name', 'unknown')}"
    threads = env.get("threads")
    return device if threads is None else f"{device}, {threads} thread{'s' if threads != 1 else ''}"


def trained_on(info: pd.DataFrame) -> str:
    """Where the runs of ``info`` trained (device and torch), with counts.

    >>> trained_on(pd.DataFrame({"device": ["cpu, 1 thread", "cpu, 1 thread", None], "torch": ["2.13.0+cpu"] * 3}))
    'cpu, 1 thread, torch 2.13.0+cpu (2 runs); device not recorded, torch 2.13.0+cpu (1 run)'
    """
    def column(name: str, missing: str) -> pd.Series:
        got = info[name] if name in info.columns else pd.Series([None] * len(info), index=info.index, dtype=object)
        return got.astype(object).where(got.notna(), missing)

    where = column("device", "device not recorded") + ", torch " + column("torch", "not recorded")
    return "; ".join(f"{k} ({n} run{'s' if n != 1 else ''})" for k, n in where.value_counts(sort=False).items())


def read_archive(path: Path) -> Optional[Collected]:
    """The tables :func:`write_archive` wrote under ``path`` (None if it holds none); the probe's
    chance levels, when recorded, in ``scores.attrs["chance"]``."""
    from repeatlens.results.store import SCORES_FILE, load_metrics, load_scores

    path = Path(path)
    if not (path / SCORES_FILE).is_file():
        return None
    scores, metrics = load_scores(path), load_metrics(path)
    info = pd.read_csv(path / INFO_FILE, dtype={"run_id": str, "torch": str, "device": str})
    if set(info["run_id"]) != set(scores["run_id"].astype(str)):
        raise RepeatlensError(f"{path / INFO_FILE}: lists other runs than {path / SCORES_FILE}; the archive was not "
                              f"written by write_archive in one piece")
    chance = path / CHANCE_FILE
    if chance.is_file():
        scores.attrs["chance"] = json.loads(chance.read_text())
    return Collected(scores, metrics, info, [])


def merge_collected(new: Collected, old: Collected) -> Collected:
    """``new``'s runs and those of ``old`` that ``new`` lacks (``new``'s copy of a run wins)."""
    have = set(new.info["run_id"])
    keep = ~old.scores["run_id"].astype(str).isin(have)
    scores = pd.concat([new.scores, old.scores[keep]], ignore_index=True)
    metrics = pd.concat([new.metrics, old.metrics[~old.metrics["run_id"].astype(str).isin(have)]], ignore_index=True)
    info = pd.concat([new.info, old.info[~old.info["run_id"].isin(have)]], ignore_index=True)
    scores.attrs = {**old.scores.attrs, **new.scores.attrs}
    for key in ("runs", FACTS, "chance"):
        scores.attrs[key] = {**old.scores.attrs.get(key, {}), **new.scores.attrs.get(key, {})}
    scores.attrs["probes"] = sorted(set(old.scores.attrs.get("probes", [])) | set(new.scores.attrs.get("probes", [])))
    return Collected(scores, metrics, info, [r for r in new.skipped if r not in set(info["run_id"])])


def write_archive(path: Path, got: Collected, chance: Optional[dict[str, float]] = None) -> list[Path]:
    """Write ``got``'s tables under ``path``: the joined ``scores.parquet`` and ``metrics.parquet``
    (readable by ``repeatlens.load_scores``), ``runs.csv`` (per run: training seconds, torch,
    the device, synthetic shares) and the probe's chance levels. Each file is replaced atomically."""
    from repeatlens.results.store import METRICS_FILE, SCORES_FILE, write_parquet

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    order = sorted(got.info["run_id"])
    info = got.info.set_index("run_id").reindex(order).reset_index()
    info = info[[c for c in INFO_COLUMNS if c in info.columns]]
    scores = got.scores.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    metrics = got.metrics.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    write_parquet(path / SCORES_FILE, scores, {"runs": {r: got.scores.attrs.get("runs", {}).get(r, {}) for r in order},
                                              FACTS: got.scores.attrs.get(FACTS, {})})
    write_parquet(path / METRICS_FILE, metrics)
    atomic_write_text(path / INFO_FILE, info.to_csv(index=False, float_format="%.8g"))
    written = [path / SCORES_FILE, path / METRICS_FILE, path / INFO_FILE]
    if chance is not None:
        atomic_write_text(path / CHANCE_FILE, json.dumps(chance, indent=1, sort_keys=True) + "\n")
        written.append(path / CHANCE_FILE)
    return written


def probe_chance(out: Path, run_id: str, probe: str) -> Optional[dict[str, float]]:
    """Uniform-attention levels of the study's probe, built from one run's data (imports torch); None if unreadable."""
    from repeatlens.analysis import run_probe_source
    from repeatlens.checkpoints import RunDir
    from repeatlens.scores import ProbeSpec, build_probes, chance_levels

    try:
        return chance_levels(build_probes(ProbeSpec.parse(probe), run_probe_source(RunDir(out / run_id))))
    except RepeatlensError as e:
        print(f"no chance levels ({e}); T3's random-init check is left out", file=sys.stderr)
        return None


def write_results(out: Path, here: Path, started: Optional[float] = None, *, formats: Sequence[str] = ("html", "png"),
                  archive: Optional[Path] = ARCHIVE, archive_only: bool = False) -> None:
    """Read the complete runs under ``out`` and in ``archive``; write ``here/results/`` (the
    archive of every run read among it) and ``here/RESULTS.md``, or with ``archive_only``
    only the archive.

    ``started``: the :func:`time.perf_counter` at which the calling study began (its
    training included); None: the wall time is this call's own.
    """
    t0 = time.perf_counter() if started is None else started
    dest = Path(here) / "results" / "runs"  # read too, so that no archived run is ever dropped from it
    got = collect(Path(out), list(dict.fromkeys(p.resolve() for p in (archive, dest) if p is not None)))
    probe = reduce.check_scores(got.scores, PROBE).attrs["probe"]
    kept = got.scores.attrs.get("chance", {})
    on_disk = [r for r in got.info["run_id"] if (Path(out) / r / "complete.json").is_file()]
    chance = probe_chance(Path(out), on_disk[0], probe) if on_disk else kept.get(probe)
    if chance is None and probe not in kept:
        print("no run directory and no recorded chance levels; T3's random-init check is left out", file=sys.stderr)
    write_archive(dest, got, {**kept, probe: chance} if chance is not None else kept)
    if archive_only:
        print(f"archived {len(got.info)} runs in {dest}")
        return
    s = analyse(got.scores, got.metrics, expected_runs(), chance=chance, info=got.info)
    argv = [os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "report.py", *sys.argv[1:]]
    written = write_outputs(s, Path(here), command="python " + " ".join(argv), elapsed=time.perf_counter() - t0,
                            started=started is not None, formats=formats, skipped=got.skipped)
    print("\n".join(t.line for t in s.all_targets()))
    print(f"wrote {written['RESULTS']} and {Path(here) / 'results'}")


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/repeated_data_scaling_v2"), help="the study's run directories (read only)")
    p.add_argument("--results", type=Path, default=HERE, help="where results/ and RESULTS.md go (default: beside this script)")
    p.add_argument("--formats", default="html,png", help="figure formats (png needs Chromium)")
    p.add_argument("--archive", type=Path, default=ARCHIVE,
                   help="the committed tables of runs trained elsewhere (default: results/runs/ beside this script)")
    p.add_argument("--archive-only", action="store_true", help="only add the complete runs under --out to the archive")
    args = p.parse_args(argv)
    if not args.out.is_dir():
        raise SystemExit(f"error: --out {args.out}: no such directory")
    try:
        write_results(args.out, args.results, formats=[f for f in args.formats.split(",") if f], archive=args.archive,
                      archive_only=args.archive_only)
    except RepeatlensError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
