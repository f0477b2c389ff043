"""T5 and T6 (repeatlens.study.scaling) from fit_scaling, fit_sweep, and the scaling study's script."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def test_scaling_targets_from_fit_scaling() -> None:
    """T5 and T6 on a sweep that identifies alpha (6 sizes over 64x, factor-2 grid) and on the committed design."""
    from repeatlens.study import Verdict, evaluate_scaling
    from tests.results.test_fits import simulate

    sweep = simulate(np.random.default_rng(0)).rename(columns={"N": "n_params_nonembedding"})
    t5, t6 = evaluate_scaling(sweep, loss="test_loss")
    assert t5.verdict == Verdict.HELD and t5.numbers["alpha"] == pytest.approx(-0.5, abs=0.05)
    assert t5.numbers["alpha_ci95"][1] < 0 and "weighted least squares" in t5.detail
    assert t6.verdict == Verdict.HELD and all(r["ratio_hi"] is None or r["ratio_hi"] < 1 for r in t6.numbers["at_peak"].values())
    committed = pd.read_csv("analyses/repeated_data_scaling/v1/results/final_runs.csv")
    t5, t6 = evaluate_scaling(committed)
    assert t5.verdict == Verdict.NOT_IDENTIFIED and t5.numbers["alpha"] is None and "No exponent is given" in t5.detail
    assert t6.verdict == Verdict.NOT_IDENTIFIED and "needs at least 4" in t6.detail
    assert t5.line.startswith("T5 not identified: natural-text test loss per size: N = 8,640: E* = 822")
    t5, t6 = evaluate_scaling(committed[committed.repeated_fraction == 0])  # nothing to fit: said so, not "per size: ."
    assert t5.verdict == t6.verdict == Verdict.CANNOT_JUDGE
    assert t5.line == ("T5 cannot judge: no peak of the natural-text test loss is fitted: the runs table has no repeated-data "
                       "runs (f > 0). No exponent is given.")
    assert t6.line.startswith("T6 cannot judge: no effective model size on the natural-text test loss: the runs table has no")

def test_fit_sweep_reads_a_runs_table_and_names_a_missing_loss(tmp_path) -> None:
    from repeatlens.errors import ConfigError
    from repeatlens.study import fit_sweep

    fit = fit_sweep("analyses/repeated_data_scaling/v1/results/final_runs.csv")
    assert fit.loss == "test_text" and not fit.identified and len(fit.peaks) == 3
    with pytest.raises(ConfigError, match="--loss test_foo: not in"):
        fit_sweep("analyses/repeated_data_scaling/v1/results/final_runs.csv", loss="test_foo")

def test_the_scaling_study_script_imports_and_reads_its_committed_table() -> None:
    """analyses/repeated_data_scaling/v1/run_study.py against this API: it imports, and its T5/T6 path
    (fit_scaling on the study's loss, scaling_targets, the targets' JSON) runs on the committed table."""
    import importlib.util
    import json
    from pathlib import Path

    from repeatlens.results.fits import fit_scaling
    from repeatlens.study import scaling_targets

    path = Path("analyses/repeated_data_scaling/v1/run_study.py")
    spec = importlib.util.spec_from_file_location("_run_study", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fit = fit_scaling(pd.read_csv(path.parent / "results" / "final_runs.csv"), mod.LOSS)
    targets = scaling_targets(fit)
    assert [t.name for t in targets] == ["T5", "T6"] and json.dumps([mod._target_json(t) for t in targets])
    assert "## The scaling fit" in path.read_text() and "scaling_fit.json" in path.read_text()
