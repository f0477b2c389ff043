"""Sweeps: grid expansion, the local process pool, and a real local Ray instance."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import yaml

from repeatlens.results.schema import RUN_COLUMNS, SCORE_COLUMNS as COLUMNS
from repeatlens.results.store import load_metrics, load_scores
from repeatlens.cli import main
from repeatlens.errors import ConfigError
from repeatlens.sweep import expand_grid, load_sweep, point_name, run_sweep
from tests.conftest import TINY_SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["induction", "previous_token", "test_loss"]
SWEEP = {
    "base": {**TINY_SYNTHETIC, "mixture": {"total_tokens": 32 * 8 * 8}},
    "grid": {"mixture.repeated_fraction": [0.0, 0.25], "mixture.repeat_count": [2, 4]},
    "analyze": {"metrics": METRICS, "max_sequences": 8},
}
NAMES = ["f0_E1", "f0.25_E2", "f0.25_E4"]


def write_sweep(tmp_path: Path, spec=SWEEP) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ------------------------------------------------------------------------------- grid


def test_grid_expands_in_order_and_keeps_one_control() -> None:
    base = {**TINY_SYNTHETIC}
    grid = {
        "mixture.repeated_fraction": [0.0, 0.25],
        "mixture.repeat_count": [2, 4],
        "model.preset": ["attn1-tiny", "attn2-tiny"],
        "seed": [0, 1],
    }
    points = expand_grid(base, grid)
    assert len(points) == 2 * 2 * 2 + 1 * 2 * 2  # f=0 is one control per (preset, seed)
    assert points[0].name == "f0_E1_attn1-tiny_s0"
    assert "f0.25_E4_attn2-tiny_s1" in [p.name for p in points]
    control = points[0]
    assert control.values["mixture.repeat_count"] == 1 and control.config["mixture"]["repeat_count"] == 1
    p = next(p for p in points if p.name == "f0.25_E2_attn2-tiny_s1")
    assert p.config["mixture"] == {**TINY_SYNTHETIC["mixture"], "repeated_fraction": 0.25, "repeat_count": 2}
    assert p.config["model"]["preset"] == "attn2-tiny" and p.config["seed"] == 1
    assert len({p.name for p in points}) == len(points)


def test_other_config_keys_name_points_too() -> None:
    assert point_name({"train.lr": 0.003, "data.seq_len": 32}) == "lr0.003_seq_len32"
    points = expand_grid({**TINY_SYNTHETIC}, {"train.lr": [1e-3, 3e-3]})
    assert [p.config["train"]["lr"] for p in points] == [1e-3, 3e-3]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({**SWEEP, "grid": {"mixture.repeat_count": 4}}, "expected a non-empty list"),
        ({**SWEEP, "grid": {"mixture.nope": [1]}}, "point nope1: unknown field 'mixture.nope'"),
        ({**SWEEP, "grid": {"mixture.repeated_fraction": [0.25], "mixture.repeat_count": [100000]}}, "point f0.25_E100000: mixture"),
        ({**SWEEP, "grdi": {}}, "unknown field 'grdi'"),
        ({**SWEEP, "analyze": {"metrics": ["nope"]}}, "analyze.metrics: unknown 'nope'"),
        ({**SWEEP, "analyze": {"metricz": []}}, "unknown field 'analyze.metricz'"),
        ({"grid": SWEEP["grid"]}, "no base config"),
    ],
)
def test_bad_sweep_files_are_one_line_errors(tmp_path: Path, spec, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as exc:
        load_sweep(write_sweep(tmp_path, spec))
    assert "\n" not in str(exc.value)


def test_base_config_path_is_relative_to_the_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(yaml.safe_dump(SWEEP["base"]))
    spec = load_sweep(write_sweep(tmp_path, {"base_config": "configs/base.yaml", "base": {"seed": 3}, "grid": {"mixture.repeated_fraction": [0.1]}}))
    assert [p.name for p in spec.points] == ["f0.1"]
    assert spec.points[0].config["seed"] == 3


def test_shipped_tiny_sweep_is_a_valid_2x2_grid(capsys: pytest.CaptureFixture) -> None:
    path = ROOT / "analyses" / "configs" / "tiny_sweep.yaml"
    spec = load_sweep(path)
    assert [len(v) for v in spec.grid.values()] == [2, 2]
    assert len(spec.points) == 3  # the two f = 0 points are one control
    main(["sweep", str(path), "--out", "unused", "--dry-run"])
    assert capsys.readouterr().out.strip().endswith("3 points")


# ------------------------------------------------------------------------- executors


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sweep, run once through the process pool (2 workers, spawn)."""
    tmp = tmp_path_factory.mktemp("local")
    out = tmp / "out"
    res = run_sweep(write_sweep(tmp), out, executor="local", workers=2, progress=False, echo=lambda line: None)
    assert res.ok, (res.errors, res.failures)
    assert sorted(res.done) == sorted(NAMES) and res.skipped == []
    return out


def test_local_sweep_trains_scores_and_joins(local_sweep: Path) -> None:
    scores = load_scores(local_sweep)
    assert list(scores.columns) == COLUMNS + RUN_COLUMNS
    assert sorted(scores.run_id.unique()) == sorted(NAMES)
    assert set(scores.metric) == set(METRICS)
    coords = scores.drop_duplicates("run_id").set_index("run_id")
    assert coords.loc["f0_E1", ["repeated_fraction", "repeat_count"]].tolist() == [0.0, 1]
    assert coords.loc["f0.25_E4", ["repeated_fraction", "repeat_count", "total_tokens"]].tolist() == [0.25, 4, 32 * 8 * 8]
    for name in NAMES:  # every run is complete and fully scored in its own directory
        assert (local_sweep / name / "complete.json").is_file()
        assert len(load_scores(local_sweep / name)) == (scores.run_id == name).sum()
    assert set(load_metrics(local_sweep).run_id) == set(NAMES)


def test_rerun_skips_complete_points(local_sweep: Path, tmp_path: Path) -> None:
    before = load_scores(local_sweep)
    res = run_sweep(write_sweep(tmp_path), local_sweep, executor="local", progress=False, echo=lambda line: None)
    assert res.ok and res.done == [] and sorted(res.skipped) == sorted(NAMES)
    pd.testing.assert_frame_equal(load_scores(local_sweep), before)


def test_a_failing_point_does_not_stop_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import repeatlens.train as train_mod
    from repeatlens.errors import RepeatlensError

    real = train_mod.train

    def flaky(cfg, out, **kw):
        if Path(out).name == "f0.25_E2":
            raise RepeatlensError("loss became nan at step 3")
        return real(cfg, out, **kw)

    monkeypatch.setattr(train_mod, "train", flaky)
    spec = {**SWEEP, "grid": {"mixture.repeated_fraction": [0.25], "mixture.repeat_count": [2, 4]}, "analyze": {"metrics": ["previous_token"]}}
    import torch

    threads = torch.get_num_threads()
    res = run_sweep(write_sweep(tmp_path, spec), tmp_path / "out", workers=1, progress=False, echo=lambda line: None)
    assert res.errors == [("f0.25_E2", "loss became nan at step 3")] and res.done == ["f0.25_E4"]
    assert torch.get_num_threads() == threads  # one in-process worker keeps the caller's thread count
    assert set(load_scores(tmp_path / "out").run_id) == {"f0.25_E4"}


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'repeatlens[ray]')")
def test_ray_sweep_gives_the_same_tables_as_the_local_one(local_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    # a real local Ray instance: 2 CPUs, no dashboard, started and stopped by run_sweep
    res = run_sweep(write_sweep(tmp_path), out, executor="ray", workers=2, progress=False, echo=lambda line: None)
    assert res.ok, (res.errors, res.failures)
    assert sorted(res.done) == sorted(NAMES)
    pd.testing.assert_frame_equal(load_scores(out), load_scores(local_sweep))
    pd.testing.assert_frame_equal(load_metrics(out), load_metrics(local_sweep))
    import ray

    assert not ray.is_initialized()


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_killing_the_sweep_driver_stops_its_workers(tmp_path: Path) -> None:
    """SIGKILL on ``repeatlens sweep`` used to leave its pool workers training on, orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = {**SWEEP, "base": {**TINY_SYNTHETIC, "mixture": {"total_tokens": 32 * 8 * 5000}}}  # minutes of steps
    spec["grid"] = {"mixture.repeated_fraction": [0.25], "mixture.repeat_count": [2, 4]}
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    driver = subprocess.Popen([sys.executable, "-m", "repeatlens.cli", "sweep", str(write_sweep(tmp_path, spec)),
                               "--out", str(tmp_path / "out"), "--workers", "2", "--quiet"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both workers started and training (their runs' checkpoints appear)
            workers = [p for p in _children(driver.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
            if len(workers) == 2 and len(list((tmp_path / "out").glob("*/checkpoints/*.json"))) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the sweep never started two workers"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "workers outlived the killed driver"
        assert not any((tmp_path / "out").glob("*/complete.json"))  # they were stopped mid-run, not finished
    finally:
        for p in [driver.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
