"""Sweeps: grid expansion, the local process pool, and a real local Ray instance."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
import yaml

from repeatlens.results.schema import RUN_COLUMNS, SCORE_COLUMNS as COLUMNS
from repeatlens.results.store import load_metrics, load_scores
from repeatlens.cli import main
from repeatlens.config import config_from_dict, merge
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
    assert p.config["mixture"] == {**TINY_SYNTHETIC["mixture"], "repeated_fraction": 0.25, "repeat_count": 2,
                                   "repeated_source": "any", "data_matched": None}
    assert p.config["model"]["preset"] == "attn2-tiny" and p.config["seed"] == 1
    assert len({p.name for p in points}) == len(points)


def test_data_matched_controls_add_one_control_per_repeated_fraction(tmp_path: Path) -> None:
    """data_matched_controls: true adds, per (other coordinates, f > 0), one f = 0 run on (1-f)·D tokens."""
    spec = {"base": TINY_SYNTHETIC, "data_matched_controls": True,
            "grid": {"mixture.repeated_fraction": [0.0, 0.25, 0.5], "mixture.repeat_count": [2, 4], "seed": [0, 1]}}
    points = load_sweep(write_sweep(tmp_path, spec)).points
    dm = [p for p in points if p.config["mixture"]["data_matched"] is not None]
    assert sorted(p.name for p in dm) == ["dm0.25_s0", "dm0.25_s1", "dm0.5_s0", "dm0.5_s1"]
    assert len(points) == 2 + 2 * 2 * 2 + 4
    p = next(p for p in dm if p.name == "dm0.5_s1")
    assert p.config["mixture"]["repeated_fraction"] == 0.0 and p.config["seed"] == 1
    with pytest.raises(ConfigError, match=r"data_matched_controls' = 'yes': expected true or false"):
        load_sweep(write_sweep(tmp_path, {**spec, "data_matched_controls": "yes"}))


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
        # issue 26, case 8: checked only after every point had trained, three with tracebacks; malformed grids crashed
        ({**SWEEP, "analyze": {"max_sequences": "abc"}}, "field 'analyze.max_sequences' = 'abc': Input should be a valid integer"),
        ({**SWEEP, "analyze": {"probes": "bogus"}}, "analyze: probe 'bogus': unknown family; expected one of uniform, train, synthetic, text"),
        ({**SWEEP, "analyze": {"batch_size": 0}}, "field 'analyze.batch_size' = 0: Input should be greater than or equal to 1"),
        ({**SWEEP, "analyze": {"device": "meta"}}, "field 'analyze.device' = 'meta': expected auto, cpu, cuda, cuda:N or mps"),
        ({**SWEEP, "analyze": {"probes": ["text"]}}, "analyze: --probe text: does not apply here: no held-out natural text is known"),
        ({**SWEEP, "analyze": {"probe_len": 40}}, "analyze: probe length L = 40: [BOS, r, r] needs 1 + 2L = 81 positions"),
        ({**SWEEP, "grid": ["abc"]}, "field 'grid': expected a mapping of dotted keys to lists, got list"),
        ({**SWEEP, "base_config": 123}, "field 'base_config' = 123: expected the path of a config file"),
        ({**SWEEP, "grid": {"mixture": [1, 2]}}, "point mixture1: field 'mixture' = 1: Input should be a valid dictionary"),
        ({**SWEEP, "grid": {"seed": [0, 1], "seed.x": [1]}}, "grid.seed.x: 'seed' is also a grid key with values; it cannot have fields"),
        ({**SWEEP, "grid": {f"train.{k}": list(range(1, 7)) if k != "lr" else [1e-3] * 6
                            for k in ("batch_size", "log_every", "eval_sequences", "warmup_steps", "eval_every", "lr", "min_lr_ratio")}},
         "grid: 6 x 6 x 6 x 6 x 6 x 6 x 6 = 279,936 points; expected at most 10,000 (split the sweep)"),
    ],
)
def test_bad_sweep_files_are_one_line_errors(tmp_path: Path, spec, match: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(match)) as exc:
        load_sweep(write_sweep(tmp_path, spec))
    assert "\n" not in str(exc.value)


def test_analyze_options_are_read_as_the_command_line_reads_them(tmp_path: Path) -> None:
    """``metrics: induction`` (a string) was read letter by letter; it is one name, and commas separate several."""
    spec = load_sweep(write_sweep(tmp_path, {**SWEEP, "analyze": {"metrics": "induction, test_loss", "probes": "synthetic"}}))
    assert spec.analyze == {"metrics": ["induction", "test_loss"], "probes": ["synthetic"]}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a device this machine lacks")
def test_a_device_this_machine_lacks_stops_the_sweep_before_any_point_trains(tmp_path: Path) -> None:
    for analyze, train_device, where in (({"device": "cuda"}, "auto", "analyze.device"), ({}, "cuda", "point f0_E1: train.device")):
        spec = {**SWEEP, "base": merge(SWEEP["base"], {"train": {"device": train_device}}), "analyze": analyze}
        with pytest.raises(ConfigError, match=re.escape(f"{where} 'cuda': CUDA is not available on this machine")):
            run_sweep(write_sweep(tmp_path, spec), tmp_path / "out", workers=1, progress=False)
        assert not (tmp_path / "out").exists()


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


def test_a_second_sweep_into_the_same_folder_keeps_the_first_ones_runs_in_the_root_tables(local_sweep: Path, tmp_path: Path) -> None:
    """The root tables were joined from the last sweep's points only: a study that ran its
    sizes as one sweep each into one folder found only the last size in ``load_scores(out)``."""
    out = tmp_path / "out"
    shutil.copytree(local_sweep, out)
    unfinished = out / "unfinished"
    shutil.copytree(out / "f0_E1", unfinished)
    (unfinished / "complete.json").unlink()  # as a run another process is still training
    lines: list[str] = []
    second = {**SWEEP, "grid": {"mixture.repeated_fraction": [0.25], "mixture.repeat_count": [2]}}
    res = run_sweep(write_sweep(tmp_path, second), out, executor="local", workers=1, progress=False, echo=lines.append)
    assert res.ok and res.done == [] and res.skipped == ["f0.25_E2"]
    assert sorted(load_scores(out).run_id.unique()) == sorted(NAMES)  # not only f0.25_E2
    assert sorted(load_metrics(out).run_id.unique()) == sorted(NAMES)
    assert lines[-1] == f"{out}: left out of the joined tables (not this sweep's, and not whole): unfinished (not complete)"
    rows = lambda df: df.sort_values(["run_id", "step", "metric", "layer", "head", "offset", "probe"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows(load_scores(out)), rows(load_scores(local_sweep)))
    record = json.loads((out / "sweep.json").read_text())  # both sweeps recorded, the last on top
    assert [p["name"] for p in record["points"]] == ["f0.25_E2"]
    # the local sweep's (once per sweep file: another test may have rerun it from another copy)
    assert record["earlier"] and all([p["name"] for p in r["points"]] == NAMES for r in record["earlier"])
    run_sweep(write_sweep(tmp_path, second), out, executor="local", workers=1, progress=False, echo=lines.append)
    assert json.loads((out / "sweep.json").read_text()) == record  # the same sweep again adds nothing


def test_a_root_table_that_lacks_complete_runs_of_its_folder_is_read_with_a_warning(local_sweep: Path, tmp_path: Path) -> None:
    """A table joined before some runs finished (or by an older sweep that joined only its own
    points) left them out of every fit read off the folder, silently."""
    import warnings

    from repeatlens.errors import StaleTableWarning

    out = tmp_path / "out"
    shutil.copytree(local_sweep, out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sweep's own folder: every complete run is in its tables
        load_scores(out), load_metrics(out)
    shutil.copytree(out / "f0.25_E4", out / "late")  # complete, and in neither root table
    shutil.copytree(out / "f0_E1", out / "training")
    (out / "training" / "complete.json").unlink()  # still training: not complete, not named
    for load, table in ((load_scores, "scores.parquet"), (load_metrics, "metrics.parquet")):
        with pytest.warns(StaleTableWarning) as seen:
            df = load(out)
        assert [str(w.message) for w in seen] == [
            f"{out / table}: 1 complete run(s) in {out} are not in this table (late); `repeatlens analyze {out}` scores them and rewrites it"]
        assert sorted(df.run_id.unique()) == sorted(NAMES)  # read as written


def test_the_sweep_record_keeps_each_sweep_once_however_its_spec_was_built(tmp_path: Path) -> None:
    """A spec built by hand (a tuple, numpy numbers) compares equal to its record read back, so
    writing the same sweep again adds nothing; an unreadable record is replaced, saying so."""
    import dataclasses

    import numpy as np

    from repeatlens.io import atomic_write_json
    from repeatlens.sweep import _sweep_record

    spec = load_sweep(write_sweep(tmp_path))
    by_hand = dataclasses.replace(spec, grid={k: list(np.asarray(v)) for k, v in spec.grid.items()},
                                  analyze={**spec.analyze, "metrics": tuple(spec.analyze["metrics"])})
    path, lines = tmp_path / "sweep.json", []
    atomic_write_json(path, _sweep_record(path, spec, lines.append))
    first = json.loads(path.read_text())
    atomic_write_json(path, _sweep_record(path, by_hand, lines.append))  # the same sweep, built by hand
    assert json.loads(path.read_text()) == first and "earlier" not in first
    other = dataclasses.replace(spec, points=spec.points[:1])
    atomic_write_json(path, _sweep_record(path, other, lines.append))
    assert json.loads(path.read_text())["earlier"] == [first] and lines == []
    path.write_text("{not json")
    assert _sweep_record(path, spec, lines.append) == first
    assert lines == [f"{path}: unreadable sweep record (not JSON: Expecting property name enclosed in double quotes: line 1 "
                     "column 2 (char 1)); writing a new one"]


def test_a_sweep_that_names_its_probe_seed_seed_does_not_score_again(local_sweep: Path, tmp_path: Path) -> None:
    """``analyze.seed`` (the deprecated name of probe_seed) was scored with but not asked of
    ``needs_scoring``, so every rerun dispatched every point again."""
    from repeatlens.analysis import analyze

    out = tmp_path / "out"
    shutil.copytree(local_sweep, out)
    assert analyze(out, METRICS, max_sequences=8, probe_seed=5, progress=False).ok
    before = load_scores(out)
    assert set(before.probe_seed.dropna()) == {0, 5}
    for analyze_section in ({**SWEEP["analyze"], "seed": 5}, {**SWEEP["analyze"], "probe_seed": 5}):
        res = run_sweep(write_sweep(tmp_path, {**SWEEP, "analyze": analyze_section}), out, executor="local", workers=1,
                        progress=False, echo=lambda line: None)
        assert res.ok and res.done == [] and sorted(res.skipped) == sorted(NAMES), analyze_section
    rows = lambda df: df.sort_values(["run_id", "step", "metric", "layer", "head", "offset", "probe"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows(load_scores(out)), rows(before))  # the sweep's tables rejoined, no row scored again
    res = run_sweep(write_sweep(tmp_path, {**SWEEP, "analyze": {**SWEEP["analyze"], "seed": 6}}), out, executor="local",
                    workers=1, progress=False, echo=lambda line: None)
    assert res.ok and sorted(res.done) == sorted(NAMES)  # another seed is another probe: scored
    res = run_sweep(write_sweep(tmp_path, {**SWEEP, "analyze": {**SWEEP["analyze"], "seed": 6}}), out, executor="local",
                    workers=1, progress=False, echo=lambda line: None)
    assert res.ok and res.done == [] and sorted(res.skipped) == sorted(NAMES)  # ... once


def test_seed_and_probe_seed_together_are_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"analyze.*seed = 1 and probe_seed = 2: give probe_seed only") as exc:
        load_sweep(write_sweep(tmp_path, {**SWEEP, "analyze": {"seed": 1, "probe_seed": 2}}))
    assert "\n" not in str(exc.value)
    assert load_sweep(write_sweep(tmp_path, {**SWEEP, "analyze": {"seed": 1}})).analyze == {"probe_seed": 1}


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


needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'repeatlens[ray]')")


@needs_ray
def test_ray_sweep_gives_the_same_tables_as_the_local_one(local_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ray"
    # Two points are the local sweep's, complete: Ray trains and scores the third alone. (Two
    # points training at once through Ray are test_ray_resource_flags_reach_the_tasks'; here,
    # under pytest -n 2, a second task only doubled the time, 94 -> 262 s.)
    shutil.copytree(local_sweep, out, ignore=shutil.ignore_patterns("f0.25_E4"))
    for table in ("scores.parquet", "metrics.parquet"):  # the root's; the runs keep theirs
        (out / table).unlink()
    # no --address means a new local instance, even where Ray would otherwise find a cluster to join
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    # a real local Ray instance: 2 CPUs, no dashboard, started and stopped by run_sweep
    res = run_sweep(write_sweep(tmp_path), out, executor="ray", workers=2, progress=False, echo=lambda line: None)
    assert res.ok, (res.errors, res.failures)
    assert res.done == ["f0.25_E4"] and sorted(res.skipped) == ["f0.25_E2", "f0_E1"]
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


# ---------------------------------------------------------------- a Ray cluster of its own


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """The address of a real Ray cluster head, ``ray start --head --block``, in a process of its own.

    It declares 2 CPUs and 2 GPUs. The GPUs are not real (no CUDA here): Ray schedules and
    assigns declared GPUs exactly as real ones, which is what the tests read. Drivers
    connect to it with ``--address`` like to any cluster, so killing one does not take the
    cluster down. SIGTERM to ``ray start --block`` stops everything it started.
    """
    temp = tempfile.mkdtemp(prefix="rl-ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    log = Path(temp) / "head.log"
    # a loaded machine (pytest -n 2 on 2 cores) can take over the default 60 s to register the node
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_raylet_start_wait_time_s": "180"}
    argv = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--port", "0", "--num-cpus", "2",
            "--num-gpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp]
    with open(log, "w") as fh:
        head = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, address = time.monotonic() + 240, None
        while address is None and time.monotonic() < deadline and head.poll() is None:
            found = re.search(r"ray start --address='([^']+)'", log.read_text(errors="replace"))
            address = found.group(1) if found else None
            time.sleep(0.5)
        assert address, f"the Ray head did not start: {log.read_text(errors='replace')[-2000:]}"
        yield address
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # the group holds only what this ray start started
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _trainer_pids(run_dir: Path) -> list[int]:
    """Pids holding ``run_dir``'s train lock (Linux ``/proc/locks``): who is training it now."""
    from repeatlens.train import TRAIN_LOCK

    try:
        st = os.stat(run_dir / TRAIN_LOCK)
    except FileNotFoundError:
        return []
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" not in fields and len(fields) >= 6 and fields[5] == dev:
            pids.append(int(fields[4]))
    return pids


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _long_spec(steps: int, fractions: list[float]) -> dict:
    """A sweep of tiny points of ``steps`` steps each, checkpoints every steps/6."""
    base = merge(TINY_SYNTHETIC, {"mixture": {"total_tokens": 32 * 8 * steps}, "train": {"checkpoints": {"log_count": 0, "every": steps // 6}}})
    return {"base": base, "grid": {"mixture.repeated_fraction": fractions, "mixture.repeat_count": [4]}, "analyze": {"metrics": ["test_loss"]}}


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


@needs_ray
@pytest.mark.timeout(900)
def test_ray_resource_flags_reach_the_tasks(ray_head: str, local_sweep: Path, tmp_path: Path) -> None:
    """Read inside each task: what Ray assigned it, what it saw as CUDA devices, the threads it trained on."""
    lines: list[str] = []
    res = run_sweep(write_sweep(tmp_path), tmp_path / "gpu", executor="ray", address=ray_head, progress=False, echo=lines.append)
    assert res.ok, (res.errors, res.failures)
    assert "the Ray cluster has GPUs: one per point (--gpus-per-run 1)" in lines  # the default on a GPU cluster
    placed = res.placements
    assert sorted(placed) == sorted(NAMES)
    for name, p in placed.items():
        assert p["resources"] == {"CPU": 1.0, "GPU": 1.0}, p
        assert len(p["gpu_ids"]) == 1 and p["cuda_visible_devices"] == p["gpu_ids"][0], p  # its own GPU, seen as cuda:0
        assert json.loads((tmp_path / "gpu" / name / "complete.json").read_text())["environment"]["threads"] == 1
    pairs = [(a, b) for i, a in enumerate(placed.values()) for b in list(placed.values())[i + 1:] if _overlap(a, b)]
    assert pairs, "no two points ran at once; nothing shows they were spread over the GPUs"
    assert all(a["gpu_ids"] != b["gpu_ids"] for a, b in pairs)  # one point per GPU, never two on one
    assert len({g for p in placed.values() for g in p["gpu_ids"]}) == 2
    # one thread each, like the local pool's two workers on two cores: the same tables, bit for bit
    pd.testing.assert_frame_equal(load_scores(tmp_path / "gpu"), load_scores(local_sweep))

    one = {**SWEEP, "grid": {"mixture.repeated_fraction": [0.25], "mixture.repeat_count": [2]}}
    (tmp_path / "cpu").mkdir()
    res = run_sweep(write_sweep(tmp_path / "cpu", one), tmp_path / "cpu" / "out", executor="ray", address=ray_head,
                    gpus_per_run=0, cpus_per_run=2, progress=False, echo=lambda line: None)
    assert res.ok, res.errors
    (p,) = res.placements.values()
    assert p["resources"] == {"CPU": 2.0} and p["gpu_ids"] == [] and p["cuda_visible_devices"] == ""  # no GPU: shown none
    assert json.loads((tmp_path / "cpu" / "out" / "f0.25_E2" / "complete.json").read_text())["environment"]["threads"] == 2


@needs_ray
def test_ray_resource_flags_are_checked_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_sweep(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(path), "--out", str(tmp_path / "out"), "--gpus-per-run", "1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --gpus-per-run: applies to --executor ray only (the local pool sizes itself to the cores)"
    with pytest.raises(ConfigError, match=r"^--gpus-per-run: applies to --executor ray only"):
        run_sweep(path, tmp_path / "out", executor="local", gpus_per_run=1)
    with pytest.raises(ConfigError, match=r"^--cpus-per-run 0: expected a whole number >= 1$"):
        run_sweep(path, tmp_path / "out", executor="ray", cpus_per_run=0)
    spec = {**SWEEP, "base": merge(SWEEP["base"], {"train": {"device": "cuda:1"}})}
    with pytest.raises(ConfigError, match=r"point f0_E1: train.device = 'cuda:1' with --gpus-per-run 1: Ray shows each task only its own"):
        run_sweep(write_sweep(tmp_path, spec), tmp_path / "out", executor="ray", gpus_per_run=1)
    assert not (tmp_path / "out").exists()


def _kill_trainer_once(run, step: int):
    """A started thread that SIGKILLs whoever trains ``run`` once checkpoint ``step`` exists.

    Returns the thread and a dict it fills: ``pids`` killed, ``files`` (inode of each file of
    checkpoint step/2, to show later it was not rewritten), or ``error``.
    """
    import threading

    killed: dict[str, object] = {}

    def kill() -> None:
        try:
            _wait_for(lambda: (run.ckpt_dir / f"step_{step:07d}.json").exists() and _trainer_pids(run.path), 300, f"checkpoint {step}")
            killed["files"] = {f.name: f.stat().st_ino for f in run.ckpt_dir.glob(f"step_{step // 2:07d}*")}
            killed["pids"] = _trainer_pids(run.path)
            for pid in killed["pids"]:
                os.kill(pid, signal.SIGKILL)
        except BaseException as e:  # reported by the test's thread
            killed["error"] = e

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread, killed


@needs_ray
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
@pytest.mark.timeout(900)
def test_a_ray_task_lost_more_often_than_ray_retries_is_that_points_error(
    ray_head: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import repeatlens.sweep as sweep_mod
    from repeatlens.checkpoints import RunDir

    monkeypatch.setattr(sweep_mod, "RAY_MAX_RETRIES", 0)
    spec = load_sweep(write_sweep(tmp_path, _long_spec(600, [0.25])))
    (point,) = spec.points
    killer, killed = _kill_trainer_once(RunDir(tmp_path / "out" / point.name), 100)
    res = run_sweep(spec, tmp_path / "out", executor="ray", address=ray_head, progress=False, echo=lambda line: None)
    killer.join(timeout=60)
    assert "error" not in killed, killed.get("error")
    ((name, error),) = res.errors
    assert name == point.name and error.startswith("Ray task failed (WorkerCrashedError: ") and "\n" not in error, error


@needs_ray
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
@pytest.mark.timeout(900)
def test_a_ray_task_lost_with_its_worker_is_retried_and_resumes_from_its_checkpoint(ray_head: str, tmp_path: Path) -> None:
    """SIGKILL of the worker process training a point (as when its node is lost): Ray runs the task again."""
    from repeatlens.checkpoints import RunDir
    from repeatlens.train import train
    from tests.test_resume import assert_same_run

    spec = load_sweep(write_sweep(tmp_path, _long_spec(600, [0.25])))
    (point,) = spec.points
    run = RunDir(tmp_path / "out" / point.name)
    killer, killed = _kill_trainer_once(run, 200)
    res = run_sweep(spec, tmp_path / "out", executor="ray", address=ray_head, progress=False, echo=lambda line: None)
    killer.join(timeout=60)
    assert "error" not in killed, killed.get("error")
    assert res.ok and res.done == [point.name], res.errors
    assert killed["pids"] and res.placements[point.name]["pid"] not in killed["pids"]  # a new attempt finished it
    # resumed, not redone: the weights written before the kill are the same file (its sidecar is rewritten and its
    # training state dropped once later checkpoints exist: train.keep_optimizer: last)
    weights = "step_0000100.safetensors"
    assert (run.ckpt_dir / weights).stat().st_ino == killed["files"][weights]
    reference = train(config_from_dict(point.config), tmp_path / "reference")  # uninterrupted, 1 thread like the task
    assert_same_run(reference, run)


@needs_ray
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
@pytest.mark.timeout(900)
def test_killing_a_ray_sweep_driver_leaves_no_task_training_and_a_rerun_completes(ray_head: str, tmp_path: Path) -> None:
    """A real ``repeatlens sweep --executor ray --address`` driver, SIGKILLed while both its points train."""
    from repeatlens.checkpoints import RunDir

    spec_path = write_sweep(tmp_path, _long_spec(900, [0.25, 0.5]))
    names = [p.name for p in load_sweep(spec_path).points]
    out = tmp_path / "out"
    runs = [RunDir(out / n) for n in names]
    argv = [str(Path(sys.executable).with_name("repeatlens")), "sweep", str(spec_path), "--out", str(out),
            "--executor", "ray", "--address", ray_head, "--quiet"]
    driver = subprocess.Popen(argv, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    trainers: list[int] = []
    try:
        _wait_for(lambda: all(r.ckpt_dir.exists() and len(r.checkpoints()) >= 2 and _trainer_pids(r.path) for r in runs), 300,
                  "both points training")
        trainers = [pid for r in runs for pid in _trainer_pids(r.path)]
        first = {f: f.stat().st_ino for r in runs for f in r.ckpt_dir.glob("step_0000150.safetensors")}  # its weights (the
            # sidecar is rewritten and the training state dropped once later checkpoints exist: train.keep_optimizer: last)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        _wait_for(lambda: not any(_alive(p) for p in trainers), 30, "the tasks to stop with their driver")
        snapshot = lambda: sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in out.rglob("*") if f.is_file())  # noqa: E731
        before = snapshot()
        time.sleep(3)
        assert snapshot() == before, "something still writes into the sweep"
        assert not any(r.is_complete() for r in runs) and not any(_trainer_pids(r.path) for r in runs)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate()
    res = run_sweep(spec_path, out, executor="ray", address=ray_head, progress=False, echo=lambda line: None)
    assert res.ok and sorted(res.done) == sorted(names), res.errors
    assert all(r.is_complete() for r in runs)
    assert {f: f.stat().st_ino for f in first} == first  # resumed from the checkpoints the killed tasks left


@needs_ray
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
@pytest.mark.timeout(900)
def test_a_ray_sweep_stopped_by_ctrl_c_cancels_its_tasks_though_the_driver_lives_on(ray_head: str, tmp_path: Path) -> None:
    """As in a notebook: Ctrl-C in run_sweep (raised here from its echo, once a short point is done)."""
    from repeatlens.checkpoints import RunDir

    spec = _long_spec(3000, [0.25])
    spec["grid"] = {"mixture.total_tokens": [32 * 8 * 60, 32 * 8 * 3000], **spec["grid"]}
    points = load_sweep(write_sweep(tmp_path, spec)).points
    long_run = RunDir(tmp_path / "out" / points[1].name)
    seen: list[int] = []

    def echo(line: str) -> None:
        if line.startswith("trained"):
            _wait_for(lambda: _trainer_pids(long_run.path), 180, "the long point to train")  # its worker may start later
            seen.extend(_trainer_pids(long_run.path))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(write_sweep(tmp_path, spec), tmp_path / "out", executor="ray", address=ray_head, gpus_per_run=0,
                  progress=False, echo=echo)
    import ray

    assert not ray.is_initialized()
    _wait_for(lambda: not any(_alive(p) for p in seen) and not _trainer_pids(long_run.path), 30, "the cancelled task to stop")
    assert not long_run.is_complete()
