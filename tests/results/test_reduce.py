"""Reductions every consumer shares: probe selection, circuits, finals, seed statistics (the fits: test_fits.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from repeatlens.errors import ConfigError
from repeatlens.results.reduce import (
    check_scores,
    circuits,
    quantities_table,
    final_values,
    per_checkpoint,
    probe_keys,
    seed_stats,
    select_probe,
)


def _rows(metric: str, values: dict, *, probe: str = "", L=None, step: int = 10, run: str = "r", offsets: dict | None = None) -> list[dict]:
    """Rows of one metric: values {(layer, head): v} (or {None: v} model-level); offsets {(layer, head): {o: v}}."""
    base = {"run_id": run, "step": step, "tokens_seen": step * 100, "metric": metric, "probe": probe,
            "probe_len": L if probe else pd.NA, "probe_batch": 16 if probe else pd.NA, "probe_seed": 0 if probe else pd.NA,
            "offset": pd.NA, "repeated_fraction": 0.0, "repeat_count": 1, "n_params": 1000, "seed": 0, "model_preset": "m"}
    out = []
    if offsets is not None:
        for (layer, head), prof in offsets.items():
            out += [{**base, "layer": layer, "head": head, "offset": o, "value": v} for o, v in prof.items()]
        return out
    for key, v in values.items():
        layer, head = key if key is not None else (pd.NA, pd.NA)
        out.append({**base, "layer": layer, "head": head, "value": v})
    return out


def _table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    return df.astype({"layer": "Int64", "head": "Int64", "offset": "Int64", "probe_len": "Int64", "probe_batch": "Int64", "probe_seed": "Int64"})


def two_probe_table() -> pd.DataFrame:
    return _table(
        _rows("induction", {(1, 0): 0.8, (1, 1): 0.1}, probe="synthetic", L=30)
        + _rows("induction", {(1, 0): 0.01, (1, 1): 0.02}, probe="uniform", L=30)
        + _rows("induction", {(1, 0): 0.05, (1, 1): 0.03}, probe="uniform", L=20)
        + _rows("test_loss", {None: 3.0})
    )


def test_select_probe_defaults_to_the_family_that_sees_circuits_and_never_mixes() -> None:
    df = two_probe_table()
    assert probe_keys(df) == ["synthetic:L30:B16:s0", "uniform:L20:B16:s0", "uniform:L30:B16:s0"]
    rows, key = select_probe(df)
    assert key == "synthetic:L30:B16:s0" and set(rows.probe) == {"synthetic", ""}  # + the rows that read no probe
    s = check_scores(df)
    assert s.attrs["probe"] == key
    assert per_checkpoint(s, "induction")["value"].tolist() == [0.8]  # the best head of ONE probe
    assert select_probe(df, "uniform:L20")[1] == "uniform:L20:B16:s0"
    assert per_checkpoint(check_scores(df, "uniform:L20"), "induction")["value"].tolist() == [0.05]
    with pytest.raises(ConfigError, match=r"'uniform' matches 2 probes .*uniform:L20:B16:s0, uniform:L30:B16:s0"):
        select_probe(df, "uniform")
    with pytest.raises(ConfigError, match="'text': not in this table; it holds synthetic:L30"):
        select_probe(df, "text")
    assert select_probe(df[df.probe == ""])[1] is None  # a table of probe-free scores
    with pytest.raises(ConfigError, match="probe 'tokens': unknown family; expected one of uniform, train, synthetic, text"):
        select_probe(df, "tokens:L30")


def test_reading_one_probe_of_a_table_imports_neither_torch_nor_transformer_lens() -> None:
    """Naming a probe parses its key (repeatlens.results.schema), not the scores package, whose import loads
    TransformerLens (~11 s of CPU): a report that only reads tables must not pay it."""
    import subprocess
    import sys

    code = ("import sys, pandas as pd; from repeatlens.results.reduce import check_scores, select_probe; "
            "df = pd.DataFrame({'run_id': ['r'], 'step': [1], 'tokens_seen': [1], 'metric': ['induction'], 'layer': [1], "
            "'head': [0], 'value': [0.5], 'probe': ['synthetic'], 'probe_len': [30], 'probe_batch': [16], 'probe_seed': [0]}); "
            "assert check_scores(df, 'synthetic:L30').attrs['probe'] == 'synthetic:L30:B16:s0'; "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'repeatlens.scores') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_circuits_name_canonical_and_shifted_pairs() -> None:
    L = 30
    later_shift = {(1, 0): 6, (1, 1): 0, (1, 2): 13}
    rows = _rows("shifted_induction", {(1, 0): 0.9, (1, 1): 0.85, (1, 2): 0.6, (0, 0): 0.95}, probe="synthetic", L=L)
    rows += _rows("shifted_induction_shift", {**{k: float(d) for k, d in later_shift.items()}, (0, 0): 28.0}, probe="synthetic", L=L)
    # layer 0: head 0 attends 7 back (d + 1 for d = 6), head 1 is a previous-token head (offset 1); nobody attends 14 back
    rows += _rows("offset_profile", {}, probe="synthetic", L=L, offsets={(0, 0): {7: 0.92, 1: 0.02, 14: 0.01}, (0, 1): {7: 0.05, 1: 0.7, 14: 0.02}})
    got = circuits(_table(rows))
    assert got[["layer", "head", "d", "partner_layer", "partner_head", "kind"]].values.tolist() == [
        [1, 0, 6, 0, 0, "shifted"],  # induction shifted by 6: later head at L-7, partner 7 back
        [1, 1, 0, 0, 1, "canonical"],  # previous-token head + induction head
    ]  # (1, 2) has no partner 14 back; the layer-0 head (a previous-token-like offset) is never a later head
    assert got.partner_score.tolist() == pytest.approx([0.92, 0.7]) and (got.probe == "synthetic:L30:B16:s0").all()
    assert circuits(_table(rows), min_score=0.95).empty


def test_finals_and_seed_statistics() -> None:
    rows = []
    for seed, (first, last) in enumerate([(5.0, 3.0), (5.2, 3.4)]):
        for step, v in ((0, first), (10, last)):
            rows += [{**r, "seed": seed, "run_id": f"s{seed}"} for r in _rows("test_loss", {None: v}, step=step)]
    df = check_scores(_table(rows))
    assert final_values(df, "test_loss").value.tolist() == [3.0, 3.4]
    assert final_values(df, "test_loss", at="first").value.tolist() == [5.0, 5.2]
    wide = quantities_table(df, ["test_loss"])
    assert wide.set_index("run_id").test_loss.to_dict() == {"s0": 3.0, "s1": 3.4} and (wide.step == 10).all()
    st = seed_stats(wide, ["repeated_fraction", "repeat_count"], "test_loss")
    assert st[["mean", "spread", "count"]].values.tolist()[0] == pytest.approx([3.2, 0.4, 2])
    assert st["std"].iloc[0] == pytest.approx(np.std([3.0, 3.4], ddof=1))


def test_the_old_fit_names_warn_and_give_their_replacements() -> None:
    """The scaling fits moved to repeatlens.results.fits; the old names are deprecated aliases."""
    import warnings

    from repeatlens.results import fits, reduce

    for old, new in (("peak_scaling", "fit_scaling"), ("effective_sizes", "effective_sizes"), ("peak_of", "fit_peak"),
                     ("fit_power_law", "fit_loglog"), ("PowerLaw", "LogLogLaw"), ("Peak", "Peak")):
        with pytest.warns(DeprecationWarning, match=f"reduce.{old} is deprecated"):
            assert getattr(reduce, old) is getattr(fits, new)
    with pytest.warns(DeprecationWarning, match="effective_size is deprecated"):
        inverse = reduce.effective_size
    assert inverse(7.0 * 2e4 ** -0.076, 7.0, 0.076) == pytest.approx(2e4)  # the old pure power law's inverse
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'nothing'"):
            reduce.nothing  # noqa: B018


# ------------------------------------------------------------------ the other public reductions, on hand-built tables


def _sweep() -> pd.DataFrame:
    """Two sizes; size 1000: two full controls (seeds 0, 1), a data-matched control and a repeated run; size 2000: a
    repeated run only. Final test loss and induction per run (step 10; step 0 holds other values)."""
    runs = [  # run, f, E, control, n_params, seed, final test loss, final induction (per head: the max is the first)
        ("c0", 0.0, 1, "full", 1000, 0, 1.9, 0.8), ("c1", 0.0, 1, "full", 1000, 1, 2.1, 0.8),
        ("dm", 0.0, 1, "data_matched", 1000, 0, 9.0, 0.0), ("r", 0.1, 100, "none", 1000, 0, 2.5, 0.6),
        ("big", 0.1, 100, "none", 2000, 0, 1.5, 0.9),
    ]
    rows = []
    for run, f, E, control, n, seed, loss, ind in runs:
        coords = {"run_id": run, "repeated_fraction": f, "repeat_count": E, "control": control, "n_params": n, "seed": seed}
        for step, scale in ((0, 2.0), (10, 1.0)):
            rows += [{**r, **coords} for r in _rows("test_loss", {None: loss * scale}, step=step)]
            rows += [{**r, **coords} for r in _rows("induction", {(1, 0): ind / scale, (1, 1): ind / scale / 4}, probe="synthetic", L=8, step=step)]
    return check_scores(_table(rows))


def test_check_scores_fills_missing_run_columns_and_keeps_one_probe() -> None:
    from repeatlens.results.reduce import RUN_DEFAULTS, TableError, require_columns

    bare = _table(_rows("test_loss", {None: 3.0}) + _rows("induction", {(0, 0): 0.4}, probe="text", L=20)
                  + _rows("offset_profile", {}, probe="text", L=20, offsets={(0, 0): {1: 0.3}})
                  + _rows("prefix_matching", {}, probe="text", L=20, offsets={(0, 0): {2: 0.9}}))
    bare = bare.drop(columns=["repeated_fraction", "repeat_count", "n_params", "seed", "model_preset"])
    s = check_scores(bare)
    for column, default in RUN_DEFAULTS.items():  # a foreign folder: no sweep coordinates
        assert column in s.columns
        assert s[column].isna().all() if isinstance(default, float) else (s[column] == default).all()
    assert sorted(s.metric) == ["induction", "offset_profile", "test_loss"]  # per-offset rows only of the offset profile
    assert s.attrs["probe"] == "text:L20:B16:s0"
    old = _table(_rows("test_loss", {None: 3.0}) + [{**r, "repeated_fraction": 0.5} for r in _rows("test_loss", {None: 4.0}, run="q")])
    assert check_scores(old).set_index("run_id").control.to_dict() == {"r": "full", "q": "none"}  # before data-matched controls
    with pytest.raises(TableError, match=r"scores table lacks column\(s\) \['metric'\]"):
        check_scores(bare.drop(columns=["metric"]))
    with pytest.raises(TableError, match=r"t lacks column\(s\) \['x', 'y'\]"):
        require_columns(bare, ["run_id", "x", "y"], "t")


def test_run_table_metric_rows_and_per_checkpoint_heads() -> None:
    from repeatlens.results.reduce import MissingDataError, TableError, is_per_head, metric_rows, run_table

    s = _sweep()
    assert run_table(s).run_id.tolist() == ["c0", "dm", "c1", "r", "big"]  # by size, f, E, seed, run id
    with pytest.raises(MissingDataError, match=r"no 'copying_loss' rows; metrics present: \['induction', 'test_loss'\]"):
        metric_rows(s, "copying_loss")
    assert is_per_head(metric_rows(s, "induction")) and not is_per_head(metric_rows(s, "test_loss"))
    best = per_checkpoint(s, "induction")
    assert best[best.run_id == "r"][["step", "layer", "head", "value"]].values.tolist() == [[0, 1, 0, 0.3], [10, 1, 0, 0.6]]
    one = per_checkpoint(s, "induction", layer=1, head=1)
    assert one[one.run_id == "r"].value.tolist() == pytest.approx([0.075, 0.15])
    assert per_checkpoint(s, "test_loss")[lambda t: t.run_id == "r"].value.tolist() == [5.0, 2.5]
    with pytest.raises(TableError, match="model-level; layer/head do not apply"):
        per_checkpoint(s, "test_loss", layer=0)
    with pytest.raises(TableError, match="head given without layer"):
        per_checkpoint(s, "induction", head=0)
    with pytest.raises(TableError, match="no rows for layer=3"):
        per_checkpoint(s, "induction", layer=3)


def test_relative_damage_against_the_full_controls_of_the_same_size() -> None:
    from repeatlens.results.reduce import MissingDataError, control_mask, default_run, matching_control, relative_damage

    s = _sweep()
    assert sorted(s[control_mask(s)].run_id.unique()) == ["c0", "c1"]  # not the data-matched control
    loss = relative_damage(s, "test_loss").set_index("run_id")
    assert list(loss.index) == ["r"]  # size 2000 has no control
    assert loss.loc["r", "control_value"] == pytest.approx(2.0) and loss.loc["r", "damage"] == pytest.approx(0.25)  # (2.5 - 2) / 2
    ind = relative_damage(s, "induction").set_index("run_id")
    assert ind.loc["r", "damage"] == pytest.approx(0.25)  # (0.8 - 0.6) / 0.8: a drop is damage
    assert default_run(s) == "r" and matching_control(s, "r") == "c0" and matching_control(s, "big") is None
    with pytest.raises(MissingDataError, match="no f = 0 control run"):
        relative_damage(s[~control_mask(s)], "test_loss")


def test_probe_keys_read_the_stored_key_column_as_the_derived_one() -> None:
    from repeatlens.results.keys import derive_keys

    df = two_probe_table()
    stored = df.assign(probe_key=derive_keys(df))
    assert probe_keys(stored) == probe_keys(df) == ["synthetic:L30:B16:s0", "uniform:L20:B16:s0", "uniform:L30:B16:s0"]
    rows, key = select_probe(stored, "uniform:L20")
    assert key == "uniform:L20:B16:s0" and sorted(rows.value) == [0.03, 0.05, 3.0]
