"""The predicted region: published edges, and scaling-fit JSONs written by hand to the schema."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from repeatlens.corpus_audit.region import fit_region, published_region, read_scaling_fit, region_source
from repeatlens.errors import ConfigError


def fit_json(**over: Any) -> dict[str, Any]:
    """A complete, identified fit: log10 E_left = 6 - 0.5 log10 N, E_right = 8 - 0.5 log10 N, E* = 7 - 0.5 log10 N."""
    base: dict[str, Any] = {
        "format": "repeatlens-scaling-fit/1", "loss": "test_text", "size_column": "N", "repeated_fraction": 0.25,
        "total_tokens": 8_000_000, "n_range": [1e6, 1e8], "identified": True, "reason": None,
        "alpha": -0.5, "alpha_ci95": [-0.6, -0.4], "log10_e_star_intercept": 7.0,
        "edges": {"left": {"intercept": 6.0, "slope": -0.5}, "right": {"intercept": 8.0, "slope": -0.5}},
        "peaks": [{"N": 1e6, "e_star": 3000.0, "e_star_ci95": [1000.0, 9000.0], "e_left": 1000.0, "e_right": 100000.0,
                   "interior": True, "amplitude": 0.3, "amplitude_ci95": [0.2, 0.4]}],
        "fitted_on": {"sizes": 3, "runs": 42, "seeds_per_point": [2, 3], "grid": [1, 8, 64, 512, 4096]},
    }
    base.update(over)
    return base


def write(tmp_path: Path, obj: Any, name: str = "fit.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def test_published_edges_by_hand() -> None:
    r = published_region(1e7)
    assert r.left == pytest.approx(4.2e6 * 1e7**-0.56) and r.right == pytest.approx(5.1e7 * 1e7**-0.5)
    assert r.left == pytest.approx(504.9, abs=0.1) and r.right == pytest.approx(16127.6, abs=0.1)
    assert any("fixed D = 100B" in n for n in r.notes) and r.peak is None


def test_identified_power_laws_inside_and_outside_the_fitted_range(tmp_path: Path) -> None:
    fit = read_scaling_fit(write(tmp_path, fit_json()))
    r = fit_region(fit, 1e7, "fit.json")
    assert r.left == pytest.approx(10**2.5) and r.right == pytest.approx(10**4.5) and r.peak == pytest.approx(10**3.5)
    assert not any("extrapolates" in n for n in r.notes)
    assert "alpha = -0.5 [-0.6, -0.4]" in r.description and "D = 8M tokens" in r.description
    far = fit_region(fit, 1e9, "fit.json", tokens=1e9)
    assert far.left == pytest.approx(10**1.5)
    assert any("N = 1B extrapolates beyond the fitted range N = 1M–100M (N), D = 8M tokens" in n for n in far.notes)
    assert any("your planned D = 1B tokens differs from the fit's D = 8M" in n for n in far.notes)


def _peak(n: float, left: float | None, right: float | None, star: float) -> dict[str, Any]:
    return {"N": n, "e_star": star, "e_star_ci95": None, "e_left": left, "e_right": right, "interior": True,
            "amplitude": 0.1, "amplitude_ci95": None}


def test_not_identified_uses_the_peaks_nearest_or_interpolated_in_log_n(tmp_path: Path) -> None:
    obj = fit_json(identified=False, reason="two sizes only", alpha=None, alpha_ci95=None, log10_e_star_intercept=None,
                   edges={"left": None, "right": None},
                   peaks=[_peak(1e8, 10.0, 100.0, 30.0), _peak(1e6, 100.0, 1000.0, 300.0)])
    fit = read_scaling_fit(write(tmp_path, obj))
    mid = fit_region(fit, 1e7, "fit.json")  # halfway in log N: the geometric means
    assert mid.left == pytest.approx(math.sqrt(10 * 100)) and mid.right == pytest.approx(math.sqrt(100 * 1000))
    assert mid.peak == pytest.approx(math.sqrt(30 * 300))
    assert "not identified (two sizes only)" in mid.description and "interpolated in log N between the fitted sizes 1M and 100M" in mid.description
    at = fit_region(fit, 1e6, "fit.json")
    assert (at.left, at.right) == (100.0, 1000.0) and "the fitted size N = 1M's own edges" in at.description
    big = fit_region(fit, 1e10, "fit.json")
    assert (big.left, big.right) == (10.0, 100.0) and "nearest fitted size N = 100M" in big.description
    assert any("extrapolates" in n for n in big.notes)
    one_sided = read_scaling_fit(write(tmp_path, {**obj, "peaks": [_peak(1e6, None, 1000.0, 300.0), _peak(1e8, 10.0, 100.0, 30.0)]}, "b.json"))
    r = fit_region(one_sided, 1e7, "b.json")
    assert r.left is None and r.right == pytest.approx(math.sqrt(1e5))


@pytest.mark.parametrize("change, message", [
    ({"format": "other/2"}, "field 'format' = 'other/2'; expected 'repeatlens-scaling-fit/1'"),
    ({"alpha": "steep"}, "field 'alpha' = 'steep'"),
    ({"size_column": "params"}, "field 'size_column' = 'params'"),
    ({"n_range": [1e8, 1e6]}, "field 'n_range' = [100000000.0, 1000000.0]; expected 0 < N_min <= N_max"),
    ({"edges": {"left": {"intercept": 1.0}, "right": None}}, "field 'edges.left.slope'"),
    ({"peaks": [{"N": -1, "e_star": 3.0}]}, "field 'peaks.0.N' = -1"),
    ({"identified": False, "reason": "one size", "peaks": []}, "not identified (one size) and there are no per-size 'peaks'"),
])
def test_bad_fit_files_get_one_line_naming_the_field(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_scaling_fit(write(tmp_path, fit_json(**change)))
    assert message in str(info.value) and "\n" not in str(info.value) and "fit.json" in str(info.value)


def test_missing_field_and_not_json(tmp_path: Path) -> None:
    obj = fit_json()
    del obj["peaks"]
    with pytest.raises(ConfigError, match="field 'peaks'"):
        read_scaling_fit(write(tmp_path, obj))
    with pytest.raises(ConfigError, match="not a JSON file"):
        read_scaling_fit(write(tmp_path, "{nope", "x.json"))
    with pytest.raises(ConfigError, match="no scaling-fit JSON at"):
        read_scaling_fit(tmp_path / "absent.json")


def test_the_study_default_falls_back_to_the_published_edges_until_the_fit_identifies_the_exponent(tmp_path: Path) -> None:
    missing = region_source("study", study_fit=tmp_path / "scaling_fit.json")
    r = missing.at(1e7)
    assert r.source == "published" and r.left == pytest.approx(published_region(1e7).left)
    assert "has not been committed yet; using the published edges" in r.notes[0]
    present = region_source("study", study_fit=write(tmp_path, fit_json(), "scaling_fit.json"))
    assert present.at(1e7).left == pytest.approx(10**2.5)
    few = write(tmp_path, fit_json(identified=False, reason="1 model size with a fitted peak; alpha needs at least 4", alpha=None,
                                   alpha_ci95=None, log10_e_star_intercept=None, edges={"left": None, "right": None}), "few.json")
    r = region_source("study", study_fit=few).at(1e7)  # the study's fit before it has an exponent: its one size cannot scale to N
    assert r.source == "published" and r.left == pytest.approx(published_region(1e7).left)
    assert "does not identify the exponent yet (1 model size with a fitted peak; alpha needs at least 4)" in r.notes[0]
    assert region_source(str(few)).at(1e7).source == str(few)  # named by its path: read as it is (per-size peaks)
    assert region_source(str(tmp_path / "scaling_fit.json")).fit is not None
    assert region_source("published").fit is None


def test_the_audit_reads_the_fit_the_fits_module_writes_without_scipy(tmp_path: Path) -> None:
    """One reader: ``read_scaling_fit`` returns :class:`repeatlens.results.fits.ScalingFit`, whose
    JSON round trip keeps the region; importing the audit's region loads no scipy."""
    import subprocess
    import sys

    from repeatlens.results.fits import ScalingFit

    fit = read_scaling_fit(write(tmp_path, fit_json()))
    assert isinstance(fit, ScalingFit) and fit.edges["left"] == {"intercept": 6.0, "slope": -0.5}
    again = read_scaling_fit(fit.to_json(tmp_path / "again.json"))
    assert fit_region(again, 1e7, "again.json") == fit_region(fit, 1e7, "again.json")
    code = "import sys, repeatlens.corpus_audit.region; print('scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
