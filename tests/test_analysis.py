"""Scoring our own runs and sweeps into incremental tidy tables (repeatlens.analysis)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest

import repeatlens
from repeatlens import scores as scores_pkg
from repeatlens.analysis import analyze
from repeatlens.results.schema import RUN_COLUMNS, SCORE_COLUMNS as COLUMNS
from repeatlens.results.store import join_run_tables, load_metrics, load_scores, sweep_runs
from repeatlens.cli import main
from repeatlens.errors import CheckpointError
from repeatlens.io import LOCK_FILE, file_lock
from repeatlens.model import build_model, n_params
from repeatlens.train import train
from tests.conftest import tiny_config
from tests.test_resume import subprocess_env

FEW = ["induction", "previous_token", "copying_ov", "test_loss", "repeated_loss"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny finished run, trained once for the module; tests work on copies."""
    return train(tiny_config(), tmp_path_factory.mktemp("runs") / "run", progress=False).path


@pytest.fixture
def run_dir(trained: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


class Spy:
    """Wraps score_model: records the metrics asked for per call and how many models live."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_on_call: int | None = None):
        self.real = scores_pkg.score_model
        self.calls: list[list[str]] = []
        self.alive = weakref.WeakSet()
        self.max_alive = 0
        self.fail_on_call = fail_on_call
        monkeypatch.setattr(scores_pkg, "score_model", self)

    def __call__(self, model, metrics=None, **kw):
        self.calls.append(list(metrics))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt
        self.alive.add(model)  # models freed by refcount vanish from the set at once
        self.max_alive = max(self.max_alive, len(self.alive))
        return self.real(model, metrics, **kw)


def test_run_table_is_tidy_complete_and_uses_the_runs_data(run_dir: Path) -> None:
    res = analyze(run_dir, progress=False, max_sequences=8)
    assert res.ok and res.kind == "run" and res.tables == [run_dir / "scores.parquet"]
    df = load_scores(run_dir)
    assert list(df.columns) == COLUMNS + RUN_COLUMNS  # a run's table comes back with its coordinates joined
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        "run_id": "str", "step": "int64", "tokens_seen": "int64", "metric": "str",
        "layer": "Int64", "head": "Int64", "offset": "Int64", "probe": "str", "probe_len": "Int64", "probe_batch": "Int64",
        "probe_seed": "Int64", "probe_key": "str", "value": "float64", "score_version": "int64", "duplicate_of": "string",
        "repeated_fraction": "float64", "repeat_count": "int64", "total_tokens": "int64", "unique_tokens": "int64",
        "control": "str", "model_preset": "str", "n_params": "int64", "n_params_nonembedding": "int64", "seed": "int64",
    }
    man = repeatlens.load_run(run_dir).manifest()
    assert (df.repeated_fraction == man.requested_fraction).all() and (df.repeat_count == man.repeat_count).all()
    assert list(pd.read_parquet(run_dir / "scores.parquet").columns) == COLUMNS  # the file itself stays tidy
    ckpts = repeatlens.load_run(run_dir).checkpoints()
    assert sorted(df.step.unique()) == [c.step for c in ckpts]
    assert res.scored == len(ckpts)
    assert dict(df.drop_duplicates("step").set_index("step").tokens_seen) == {c.step: c.tokens_seen for c in ckpts}
    assert (df.run_id == "run").all()
    battery = {m for m, f in scores_pkg.REGISTRY.items() if f.default}  # all but the opt-in ones (attribution, LLC)
    assert set(df.metric) == battery  # behaviour scores too: the run's data was passed
    assert battery < set(scores_pkg.REGISTRY) and "memorization_share" not in battery
    model_level = df[df.metric == "test_loss"]
    assert model_level["layer"].isna().all() and model_level["head"].isna().all()
    # a synthetic-only run: every family but text, each its own rows; scores that read no probe once
    assert set(df.probe) == {"uniform", "train", "synthetic", ""} 
    assert res.probes == {str(run_dir): ["uniform:L8:B16:s0", "train:L8:B16:s0", "synthetic:L8:B16:s0"]}  # L: the source's longest repeat (max_len 8) under 2P = 14
    per_head = df[df.metric == "induction"]
    assert len(per_head) == len(ckpts) * 2 * 2 * 3  # 2 layers x 2 heads x 3 probes
    assert (df[df.metric == "copying_ov"].probe == "").all() and (per_head.probe_len == 8).all()  # n_ctx 32: 2P = 14, capped at max_len 8
    # test_loss on the first 8 held-out sequences is exactly the loss training logged there
    met = repeatlens.load_run(run_dir).metrics()
    logged = met[met.split == "test"].set_index("step").loss
    scored = model_level.set_index("step").value
    np.testing.assert_allclose(scored.sort_index(), logged.loc[scored.index].sort_index(), rtol=1e-5)


def test_rerun_is_incremental_per_metric_and_version(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = len(repeatlens.load_run(run_dir).checkpoints())
    analyze(run_dir, ["induction"], progress=False)
    first = load_scores(run_dir)

    spy = Spy(monkeypatch)
    res = analyze(run_dir, ["induction"], progress=False)
    assert (res.scored, res.skipped, spy.calls) == (0, n, [])
    pd.testing.assert_frame_equal(load_scores(run_dir), first)

    res = analyze(run_dir, ["induction", "previous_token"], progress=False)
    assert res.scored == n and spy.calls == [["previous_token"]] * n
    assert set(load_scores(run_dir).metric) == {"induction", "previous_token"}

    # a new definition of one score re-scores that score only, replacing its rows
    monkeypatch.setitem(scores_pkg.SCORE_VERSION, "induction", 7)
    spy.calls.clear()
    analyze(run_dir, ["induction", "previous_token"], progress=False)
    assert spy.calls == [["induction"]] * n
    df = load_scores(run_dir)
    ind = df[df.metric == "induction"]
    assert len(ind) == len(first) and (ind.score_version == 7).all()
    assert (df[df.metric == "previous_token"].score_version == scores_pkg.SCORE_VERSION["previous_token"]).all()


def test_interrupted_analysis_resumes_and_holds_one_model_at_a_time(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [c.step for c in repeatlens.load_run(run_dir).checkpoints()]
    Spy(monkeypatch, fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        analyze(run_dir, FEW, progress=False)
    assert sorted(load_scores(run_dir).step.unique()) == steps[:2]  # saved after each checkpoint

    spy = Spy(monkeypatch)
    res = analyze(run_dir, FEW, progress=False)
    assert (res.scored, res.skipped) == (len(steps) - 2, 2)
    assert len(spy.calls) == len(steps) - 2
    assert spy.max_alive == 1
    assert sorted(load_scores(run_dir).step.unique()) == steps


def test_corrupt_checkpoint_is_reported_and_the_rest_scored(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    ckpts = repeatlens.load_run(run_dir).checkpoints()
    bad = ckpts[2].weights_path
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))

    res = analyze(run_dir, FEW, progress=False)
    assert [f.path for f in res.failures] == [str(bad)]
    assert "sha256" in res.failures[0].reason
    assert sorted(load_scores(run_dir).step.unique()) == [c.step for c in ckpts if c.step != ckpts[2].step]

    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(run_dir), "-q", "-m", "induction"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if str(bad) in ln]
    assert len(lines) == 1 and "sha256" in lines[0]


def test_sweep_root_tables_join_each_runs_coordinates(trained: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(trained, sweep / "f0.25_E4")
    train(tiny_config(mixture={"repeated_fraction": 0.0, "repeat_count": 1}, seed=1), sweep / "control", progress=False)

    res = repeatlens.analyze(sweep, ["induction", "test_loss"], progress=False)
    assert res.ok and res.kind == "sweep"
    assert {sweep / "scores.parquet", sweep / "metrics.parquet"} <= set(res.tables)
    df = load_scores(sweep)
    assert list(df.columns) == COLUMNS + RUN_COLUMNS
    runs = df.drop_duplicates("run_id").set_index("run_id")[RUN_COLUMNS]
    model = build_model(tiny_config().model, d_vocab=64)
    expected_params = n_params(model)
    embedding = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] in ("embed", "pos_embed", "unembed"))
    sizes = {"n_params": expected_params, "n_params_nonembedding": expected_params - embedding}
    assert runs.loc["f0.25_E4"].to_dict() == {
        "repeated_fraction": 0.25, "repeat_count": 4, "total_tokens": 32 * 8 * 12, "unique_tokens": 2304, "control": "none",
        "model_preset": "attn2-tiny", **sizes, "seed": 0,
    }
    assert runs.loc["control"].to_dict() == {
        "repeated_fraction": 0.0, "repeat_count": 1, "total_tokens": 32 * 8 * 12, "unique_tokens": 32 * 8 * 12, "control": "full",
        "model_preset": "attn2-tiny", **sizes, "seed": 1,
    }
    per_run = pd.concat([load_scores(sweep / r) for r in ("control", "f0.25_E4")])
    assert len(df) == len(per_run)
    # every run's table, and the sweep's, records its x-axis and the probes' special ids
    synthetic_bos = {"bos": 0, "special": [0], "bos_token": None, "source": "the synthetic source (id 0 of its vocabulary is BOS)",
                     "kind": "synthetic"}
    for where in (sweep, sweep / "control"):
        recorded = df.attrs["runs"] if where == sweep else load_scores(where).attrs["runs"]
        assert recorded["control"] == {"axis": {"x": "tokens_seen", "tokens_from": "training"}, "probe_ids": synthetic_bos}
    assert set(df.attrs["runs"]) == {"control", "f0.25_E4"}
    from repeatlens.cli import run_summary

    assert "special    probe BOS 0, special ids excluded [0] (from the synthetic source: the synthetic source (id 0 of its vocabulary" in run_summary(sweep / "control")

    met = load_metrics(sweep)
    assert list(met.columns) == ["run_id", "step", "tokens_seen", "split", "loss", "loss_se"] + RUN_COLUMNS
    assert len(met) == sum(len(repeatlens.load_run(sweep / r).metrics()) for r in ("control", "f0.25_E4"))
    assert set(met.split) == {"train", "test", "repeated"}
    # the same join in memory, for a chosen set of runs (a study reporting only its complete runs)
    joined_scores, joined_metrics = join_run_tables(sweep_runs(sweep))
    pd.testing.assert_frame_equal(joined_scores, df)
    pd.testing.assert_frame_equal(joined_metrics, met)
    one_scores, one_metrics = join_run_tables([repeatlens.load_run(sweep / "control")])
    assert set(one_scores.run_id) == set(one_metrics.run_id) == {"control"}
    pd.testing.assert_frame_equal(one_scores, df[df.run_id == "control"].reset_index(drop=True))


def test_errors_for_paths_that_hold_nothing_to_score(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(CheckpointError, match="not a run directory"):
        analyze(tmp_path)
    with pytest.raises(CheckpointError, match="no scores.parquet yet"):
        load_scores(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(tmp_path / "missing")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_unknown_metric_is_a_one_line_config_error(run_dir: Path) -> None:
    from repeatlens.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown 'nope'"):
        analyze(run_dir, ["nope"], progress=False)


# ------------------------------------------------------------------ concurrent analyses
#
# Real `repeatlens analyze` processes on one folder. Each sleeps PAUSE seconds after reading
# its first table (tests/paused_cli.py patches the store in the subprocess only), so without
# the folder lock both would read the same stale table and the last writer would drop the
# other's rows; with it, the second waits and re-reads.
# Checked once with file_lock made a no-op: the one-run test then lost 30 of 78 rows and
# the sweep test scored every checkpoint twice; both failed.

PAUSE = "2"


def _analyze_proc(path: Path, metrics: list[str], pause: Optional[str] = None) -> subprocess.Popen:
    exe = [str(Path(sys.executable).with_name("repeatlens"))]
    if pause is not None:
        exe = [sys.executable, str(Path(__file__).with_name("paused_cli.py")), pause]
    argv = exe + ["analyze", str(path), "-q", "--max-sequences", "8", "--probe", "uniform"] + [a for m in metrics for a in ("-m", m)]
    # the test's thread count, so the scores equal the in-process reference bit for bit
    return subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, int]:
    """Wait for an analyze process; (checkpoints scored, checkpoints skipped) from its summary."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    m = re.search(r"scored (\d+) checkpoint\(s\), (\d+) already scored", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def _assert_same_tables(got: Path, want: Path) -> None:
    """Readable, each (run, step, metric, layer, head) once, equal to the reference."""
    a, b = (pd.read_parquet(p / "scores.parquet") for p in (got, want))
    key = ["run_id", "step", "metric", "layer", "head", "offset", "probe", "probe_len", "probe_batch", "probe_seed"]
    assert not a.duplicated(key).any()
    pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True))


@pytest.mark.timeout(300)
def test_analyze_waits_while_another_process_holds_the_runs_lock(run_dir: Path) -> None:
    with file_lock(run_dir / LOCK_FILE):
        proc = _analyze_proc(run_dir, ["induction"])
        line = proc.stderr.readline()
        while line and "waiting for it" not in line:  # import-time warnings may come first
            line = proc.stderr.readline()
        # printed only once the process found the lock held; it then blocks on it
        assert f"{run_dir}: another repeatlens process (pid {os.getpid()}) is writing here" in line
        assert proc.poll() is None and not (run_dir / "scores.parquet").exists()
    assert _finish(proc) == (len(repeatlens.load_run(run_dir).checkpoints()), 0)
    assert set(load_scores(run_dir).metric) == {"induction"}


@pytest.mark.timeout(300)
def test_two_processes_on_one_run_keep_each_others_rows(run_dir: Path, tmp_path: Path) -> None:
    first, second = ["induction", "test_loss"], ["previous_token", "copying_ov"]
    procs = [_analyze_proc(run_dir, m, pause=PAUSE) for m in (first, second)]
    n = len(repeatlens.load_run(run_dir).checkpoints())
    assert [_finish(p) for p in procs] == [(n, 0), (n, 0)]  # different metrics: both score every checkpoint

    single = tmp_path / "single" / run_dir.name  # the same run_id
    shutil.copytree(run_dir, single, ignore=shutil.ignore_patterns("scores.parquet", LOCK_FILE))
    analyze(single, first + second, progress=False, max_sequences=8, probes="uniform")
    _assert_same_tables(run_dir, single)
    done = pq_metadata(run_dir / "scores.parquet")["done"]
    assert set(done) == set(first + second)  # neither process's bookkeeping was lost either


@pytest.mark.timeout(300)
def test_two_processes_on_a_sweep_share_the_work(trained: Path, tmp_path: Path) -> None:
    sweep, single = tmp_path / "sweep", tmp_path / "single"
    for name in ("a", "b"):
        shutil.copytree(trained, sweep / name)
    shutil.copytree(sweep, single)
    procs = [_analyze_proc(sweep, FEW, pause=PAUSE) for _ in range(2)]
    counts = [_finish(p) for p in procs]
    n = 2 * len(repeatlens.load_run(trained).checkpoints())
    # every checkpoint scored exactly once between them; the rest found it done
    assert sum(c[0] for c in counts) == n and all(sum(c) == n for c in counts)

    analyze(single, FEW, progress=False, max_sequences=8, probes="uniform")
    _assert_same_tables(sweep, single)
    for name in ("a", "b"):
        _assert_same_tables(sweep / name, single / name)
    pd.testing.assert_frame_equal(load_metrics(sweep), load_metrics(single))


def pq_metadata(path: Path) -> dict:
    """The bookkeeping analyze keeps in a table's parquet metadata."""
    import json

    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[b"repeatlens"])


# --------------------------------------------------------------------- probes that see the head

#: Shakespeare (BPE 300) mixed with the synthetic source drawn from 32 ids: by step 1000 the
#: model forms an induction head that probes from those 32 ids read at 0.83 and uniform
#: probes over the whole vocabulary at 0.01 (measured on this machine, seed 0, one thread;
#: 0.52 at step 800, nothing at 750).
NATURAL_MIX = {
    "seed": 0,
    "data": {"source": "shakespeare", "vocab_size": 300, "seq_len": 64, "synthetic_fraction": 0.75, "test_sequences": 32,
             "synthetic": {"min_len": 2, "max_len": 30, "max_gap": 0, "max_prefix": 8, "token_ids": 32}},
    "mixture": {"total_tokens": 64 * 32 * 1200},
    "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_head": 16, "n_ctx": 64, "positional_embedding": "rotary"},
    "train": {"batch_size": 32, "lr": 3e-3, "warmup_steps": 30, "weight_decay": 0.01, "decay": "constant", "betas": [0.9, 0.999],
              "grad_clip": None, "progress": False, "checkpoints": {"log_count": 0, "every": 600}},
}


@pytest.mark.slow
def test_default_analyze_sees_a_head_learned_on_synthetic_ids_that_uniform_probes_miss(tmp_path: Path) -> None:
    from repeatlens.analysis import run_probe_source
    from repeatlens.config import config_from_dict
    from repeatlens.scores import ProbeSpec, build_probes, chance_levels

    run = train(config_from_dict(NATURAL_MIX, where="NATURAL_MIX"), tmp_path / "mix", progress=False)
    res = analyze(run.path, ["induction", "shifted_induction", "copying_gain", "test_loss"], progress=False)
    assert res.ok
    df = load_scores(run.path)
    assert set(df.probe) == {"uniform", "train", "synthetic", "text", ""}  # every family applies to a corpus + synthetic run
    last = df[df.step == df.step.max()]
    best = last[last.metric == "induction"].groupby("probe").value.max()
    gain = last[last.metric == "copying_gain"].set_index("probe").value
    assert best["synthetic"] > 0.5 and gain["synthetic"] > 2.0, (best, gain)
    assert run_probe_source(run).longest_repeat == 30 and set(df.probe_len.dropna()) == {30}
    chance = chance_levels(build_probes(ProbeSpec("uniform"), run_probe_source(run)))["induction"]
    assert abs(best["uniform"] - chance) < 0.05 and gain["uniform"] < 0.5, (best, chance)
    assert best["synthetic"] > 2 * best["train"] and best["synthetic"] > 10 * max(best["uniform"], best["text"]), best
    # the same analysis again finds every (checkpoint, metric, probe) done
    assert analyze(run.path, ["induction", "shifted_induction", "copying_gain", "test_loss"], progress=False).scored == 0


# ------------------------------------------------------------------- per-head attribution


def test_a_mixed_run_scores_attribution_per_split_and_records_the_llc_sampler(tmp_path: Path, capsys) -> None:
    """The analysis hands the scores each test/repeated row's kind (natural text or synthetic):
    the split deltas average exactly their rows; the LLC's sampler settings go into the table."""
    import importlib.util
    from dataclasses import asdict

    import torch

    from repeatlens.checkpoints import RunDir
    from repeatlens.scores.attribution import sequence_deltas
    from repeatlens.scores.llc import LLC_SAMPLER

    cfg = tiny_config(
        data={"source": "shakespeare", "vocab_size": 300, "seq_len": 32, "synthetic_fraction": 0.5, "test_sequences": 16,
              "synthetic": {"token_ids": 20}},
        mixture={"total_tokens": 32 * 8 * 6, "repeated_fraction": 0.5, "repeat_count": 2},
        train={"checkpoints": {"log_count": 0, "every": 1000}},
    )
    run = train(cfg, tmp_path / "mix")
    names = ["ablation_test_text_loss", "ablation_test_synthetic_loss", "ablation_repeated_loss", "memorization_share", "llc_test"]
    assert analyze(run.path, names, progress=False).ok
    df = load_scores(run.path)
    has_llc = importlib.util.find_spec("devinterp") is not None
    assert set(df.metric) == set(names) - (set() if has_llc else {"llc_test"})
    last = df[df.step == df.step.max()]
    rd = RunDir(run.path)
    model = rd.load_model(int(last.step.iloc[0]), tokenizer=False)
    man, kinds = rd.manifest(), rd.is_synthetic()
    test = torch.from_numpy(np.asarray(rd.test_tokens()).astype(np.int64))
    per_seq = sequence_deltas(model, test, test, "mean")
    syn = torch.from_numpy(kinds[: man.n_test])
    for metric, rows in (("ablation_test_text_loss", ~syn), ("ablation_test_synthetic_loss", syn)):
        got = last[last.metric == metric].sort_values(["layer", "head"]).value.to_numpy()
        assert np.allclose(got, per_seq[..., rows].mean(-1).flatten().numpy(), atol=1e-5), metric
    meta = pq_metadata(run.path / "scores.parquet")
    assert meta["probe_ids"] == rd.manifest().special_ids and meta["probe_ids"]["kind"] == "tokenizer"
    assert (meta["probe_ids"]["bos"], meta["probe_ids"]["bos_token"]) == (0, "<|endoftext|>")  # our BPE puts <|endoftext|> at id 0
    if has_llc:
        assert meta["settings"]["llc_test"] == asdict(LLC_SAMPLER)
    else:
        assert "llc_test: skipped" in capsys.readouterr().err


@pytest.mark.cuda
def test_analyze_on_cuda_gives_the_cpu_scores(run_dir: Path, tmp_path: Path) -> None:
    """Device placement of the whole scoring path: checkpoints loaded onto the GPU, probes and data moved there."""
    cpu_dir = tmp_path / "cpu"
    shutil.copytree(run_dir, cpu_dir)
    assert analyze(run_dir, FEW, progress=False, device="cuda").ok
    assert analyze(cpu_dir, FEW, progress=False, device="cpu").ok
    key = ["step", "metric", "layer", "head", "probe"]
    a = load_scores(run_dir).sort_values(key).reset_index(drop=True)
    b = load_scores(cpu_dir).sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.value, b.value, rtol=1e-3, atol=1e-4)  # TF32 / other kernels: float rounding only


#: The registered scores outside the default battery, but for the LLC (its SGLD chains draw
#: from the device's generator, so CUDA and CPU values differ by more than rounding).
OTHER_SCORES = ["ablation_repeated_loss", "ablation_repeated_synthetic_loss", "ablation_repeated_text_loss",
                "ablation_test_loss", "ablation_test_synthetic_loss", "ablation_test_text_loss", "memorization_share",
                "zero_ablation_repeated_loss", "zero_ablation_test_loss"]


@pytest.mark.cuda
@pytest.mark.parametrize("metrics", [None, OTHER_SCORES], ids=["default-battery", "other-scores"])
def test_analyze_on_cuda_gives_the_cpu_rows_for_every_score(run_dir: Path, tmp_path: Path, metrics) -> None:
    """Every score of the default battery (the one the scaling study reads), then the others,
    on the GPU: each writes the CPU's rows (K-composition once built a CPU tensor beside the
    model's CUDA ones, and every run of the study's one GPU call failed on it)."""
    cpu_dir = tmp_path / "cpu"
    shutil.copytree(run_dir, cpu_dir)
    assert analyze(run_dir, metrics, progress=False, device="cuda").ok
    assert analyze(cpu_dir, metrics, progress=False, device="cpu").ok
    key = ["step", "metric", "layer", "head", "offset", "probe"]
    a = load_scores(run_dir).sort_values(key).reset_index(drop=True)
    b = load_scores(cpu_dir).sort_values(key).reset_index(drop=True)
    expected = {"k_composition", "induction"} if metrics is None else {"ablation_test_loss", "memorization_share"}
    assert len(a) == len(b) > 0 and expected <= set(a.metric)
    pd.testing.assert_frame_equal(a[key], b[key])
    np.testing.assert_allclose(a.value, b.value, rtol=1e-3, atol=1e-4, equal_nan=True)


def test_the_other_scores_list_is_every_registered_score_outside_the_default_battery_but_the_llc() -> None:
    from repeatlens.scores.registry import REGISTRY

    default = set(scores_pkg.default_metrics(4)[0])
    assert set(OTHER_SCORES) == {m for m in REGISTRY if m not in default and not m.startswith("llc_")}


def test_seed_is_a_deprecated_name_of_probe_seed_and_both_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import repeatlens.analysis as analysis_mod
    from repeatlens.errors import ConfigError

    seen = []
    monkeypatch.setattr(analysis_mod, "_analyze_run",
                        lambda path, metrics, opts, **kw: seen.append(opts.probe_seed) or analysis_mod.AnalysisResult(path, "run"))
    monkeypatch.setattr(analysis_mod.RunDir, "is_run", lambda self: True)
    monkeypatch.setattr(analysis_mod.RunDir, "looks_like_run", lambda self: False)
    with pytest.raises(ConfigError, match=r"^seed=3 and probe_seed=4: give probe_seed only"):
        analyze(tmp_path, seed=3, probe_seed=4)
    with pytest.raises(ConfigError, match=r"^seed=3 and probe_seed=0: give probe_seed only"):
        analyze(tmp_path, seed=3, probe_seed=0)  # 0 is the default, but given: the two names disagree silently no more
    with pytest.warns(DeprecationWarning, match="probe_seed"):
        analyze(tmp_path, seed=3)
    analyze(tmp_path, probe_seed=4)
    analyze(tmp_path)
    assert seen == [3, 4, 0]
