"""results.store: the tables on disk: probe selection on load, the round trip, incremental updates, the
key column (stored, or derived once for older tables), the sweep root's lock, run coordinates joined."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from repeatlens.results.schema import SCORE_COLUMNS
from repeatlens.results.store import load_scores, tidy_scores, write_parquet


def _two_probe_table(tmp_path: Path) -> Path:
    """One head's induction under two probes (and a test loss that reads none)."""
    rows = [
        dict(metric="induction", layer=0, head=0, probe="synthetic", probe_len=8, probe_batch=16, probe_seed=0, value=0.9),
        dict(metric="induction", layer=0, head=0, probe="uniform", probe_len=8, probe_batch=16, probe_seed=0, value=0.1),
        dict(metric="test_loss", layer=None, head=None, probe="", probe_len=None, probe_batch=None, probe_seed=None, value=3.0),
    ]
    df = pd.DataFrame([{"run_id": "r", "step": 10, "tokens_seen": 640, "offset": None, "score_version": 1, **r} for r in rows])
    path = tmp_path / "scores.parquet"
    write_parquet(path, tidy_scores(df[[c for c in SCORE_COLUMNS if c in df.columns]]))
    return path


def test_load_scores_without_a_probe_says_which_probes_it_holds(tmp_path: Path) -> None:
    """``probe=None`` returns every probe's rows; ``attrs["probes"]`` names them, so a caller
    can tell that one (run, step, metric, head) has a value per probe."""
    path = _two_probe_table(tmp_path)
    every = load_scores(path)
    assert every.attrs["probes"] == ["synthetic:L8:B16:s0", "uniform:L8:B16:s0"]
    assert sorted(every[every.metric == "induction"].value) == [0.1, 0.9]
    one = load_scores(path, probe="synthetic")
    assert one.attrs["probes"] == ["synthetic:L8:B16:s0"]
    assert one.set_index("metric").value.to_dict() == {"induction": 0.9, "test_loss": 3.0}


def test_load_scores_names_a_probe_the_table_lacks(tmp_path: Path) -> None:
    from repeatlens.errors import ConfigError

    with pytest.raises(ConfigError, match=r"probe 'text': not in this table; it holds synthetic:L8:B16:s0, uniform:L8:B16:s0"):
        load_scores(_two_probe_table(tmp_path), probe="text")


# ------------------------------------------------------------------ ScoreTable: round trip and updates


def _rows(step: int, metric: str, probe: str = "", L=None, values=(0.5,), version: int = 1) -> pd.DataFrame:
    """Rows of one (step, metric, probe): one per head of layer 0 (or one model-level row)."""
    heads = range(len(values)) if probe else [None]
    return pd.DataFrame([dict(run_id="r", step=step, tokens_seen=step * 64, metric=metric, layer=0 if probe else None, head=h,
                              offset=None, probe=probe, probe_len=L if probe else None, probe_batch=16 if probe else None,
                              probe_seed=0 if probe else None, value=v, score_version=version, duplicate_of=None)
                         for h, v in zip(heads, values)])


def test_a_table_round_trips_with_its_key_column_and_bookkeeping(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from repeatlens.results.store import ScoreTable

    path = tmp_path / "scores.parquet"
    table = ScoreTable.read(path)
    assert len(table.df) == 0 and list(table.df.columns) == SCORE_COLUMNS and table.done_version("induction", "", 10) is None
    rows = pd.concat([_rows(10, "induction", "synthetic", 8, (0.9, 0.2)), _rows(10, "test_loss", values=(3.0,))])
    table.update(10, [("induction", "synthetic:L8:B16:s0"), ("test_loss", "")], {"induction": 4, "test_loss": 1}, tidy_scores(rows))
    table.meta["run"]["seed"] = 7
    table.write()
    stored = pq.read_table(path).to_pandas()
    assert list(stored.columns) == SCORE_COLUMNS  # the key is a column of the file itself
    assert stored.set_index("metric").probe_key.to_dict() == {"induction": "synthetic:L8:B16:s0", "test_loss": ""}
    again = ScoreTable.read(path)
    pd.testing.assert_frame_equal(again.df, table.df.sort_values(["step", "metric", "probe"], kind="stable").reset_index(drop=True))
    assert again.df.dtypes.astype(str).to_dict() == table.df.dtypes.astype(str).to_dict()
    assert again.done_version("induction", "synthetic:L8:B16:s0", 10) == 4 and again.done_version("test_loss", "", 10) == 1
    assert again.done_version("induction", "uniform:L8:B16:s0", 10) is None and again.meta["run"] == {"seed": 7}


def test_an_update_replaces_only_its_step_and_pairs(tmp_path: Path) -> None:
    from repeatlens.results.store import ScoreTable

    table = ScoreTable.read(tmp_path / "scores.parquet")
    first = pd.concat([_rows(s, "induction", p, 8, (0.1 * s,)) for s in (10, 20) for p in ("synthetic", "uniform")])
    table.update(10, [("induction", "synthetic:L8:B16:s0"), ("induction", "uniform:L8:B16:s0")], {"induction": 1}, tidy_scores(first[first.step == 10]))
    table.update(20, [("induction", "synthetic:L8:B16:s0"), ("induction", "uniform:L8:B16:s0")], {"induction": 1}, tidy_scores(first[first.step == 20]))
    # step 10's synthetic rows again, at a new version: only they change
    table.update(10, [("induction", "synthetic:L8:B16:s0")], {"induction": 2}, tidy_scores(_rows(10, "induction", "synthetic", 8, (9.0,), version=2)))
    got = table.df.set_index(["step", "probe_key"]).value.sort_index().to_dict()
    assert got == {(10, "synthetic:L8:B16:s0"): 9.0, (10, "uniform:L8:B16:s0"): 1.0,
                   (20, "synthetic:L8:B16:s0"): 2.0, (20, "uniform:L8:B16:s0"): 2.0}
    assert table.done_version("induction", "synthetic:L8:B16:s0", 10) == 2 and table.done_version("induction", "uniform:L8:B16:s0", 10) == 1
    # a pair scored with no row (e.g. a score that yields none for this model) is recorded, and its old rows go
    table.update(20, [("induction", "uniform:L8:B16:s0")], {"induction": 3}, tidy_scores(first.iloc[:0]))
    assert (20, "uniform:L8:B16:s0") not in set(zip(table.df.step, table.df.probe_key))
    assert table.done_version("induction", "uniform:L8:B16:s0", 20) == 3 and len(table.df) == 3


def test_a_table_written_before_the_key_column_gets_it_derived_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading an older table builds each distinct probe's key once (not once per row) and
    places the column where the store writes it."""
    import repeatlens.results.keys as keys_mod
    from repeatlens.results.store import ScoreTable

    rows = pd.concat([_rows(s, "induction", p, L, tuple(range(50))) for s in range(0, 200, 10) for p, L in (("synthetic", 8), ("text", 20))]
                     + [_rows(s, "test_loss") for s in range(0, 200, 10)])
    old = tidy_scores(rows).drop(columns=["probe_key"])
    path = tmp_path / "scores.parquet"
    write_parquet(path, old, {"format": 2, "done": {}, "run": {}})
    built = []
    real = keys_mod.probe_key
    monkeypatch.setattr(keys_mod, "probe_key", lambda *a: built.append(a) or real(*a))
    df = load_scores(path)
    assert len(df) == 2 * 20 * 50 + 20 and len(built) == 3  # synthetic, text and no probe
    assert list(df.columns) == SCORE_COLUMNS
    expected = [real(p, n, b, s) for p, n, b, s in zip(old.probe, old.probe_len, old.probe_batch, old.probe_seed)]
    assert df.probe_key.tolist() == expected and df.attrs["probes"] == ["synthetic:L8:B16:s0", "text:L20:B16:s0"]
    assert ScoreTable.read(path).df.probe_key.tolist() == expected


def test_the_sweep_roots_lock_keeps_a_second_writer_waiting(tmp_path: Path) -> None:
    from repeatlens.errors import LockTimeout
    from repeatlens.io import LOCK_FILE, file_lock
    from repeatlens.results.store import write_sweep_tables

    with file_lock(tmp_path / LOCK_FILE):
        with pytest.raises(LockTimeout):
            write_sweep_tables(tmp_path, [], lock_timeout=0.2)
        assert not (tmp_path / "scores.parquet").exists()
    assert write_sweep_tables(tmp_path, [], lock_timeout=0.2) == [tmp_path / "scores.parquet", tmp_path / "metrics.parquet"]


# ------------------------------------------------------------------ run coordinates


def _fake_run(path: Path, n_params=None, **mixture):
    """A run directory whose config and manifest are given (no training): what run_coordinates reads."""
    from types import SimpleNamespace

    from repeatlens.checkpoints import RunDir
    from tests.conftest import tiny_config

    cfg = tiny_config(mixture={"repeated_fraction": 0.1, "repeat_count": 10, **mixture}, seed=3)
    man = SimpleNamespace(requested_fraction=0.1, repeat_count=10, total_tokens=cfg.mixture.total_tokens, n_unique=90, seq_len=cfg.data.seq_len,
                          n_params=n_params, n_params_nonembedding=n_params and n_params // 2, vocab_size=100)

    class Run(RunDir):
        def config(self):
            return cfg

        def manifest(self):
            return man

        def metrics(self):
            return pd.DataFrame({"step": [0, 10], "tokens_seen": [0, 640], "split": ["test", "test"], "loss": [5.0, 3.0]})

    path.mkdir(parents=True)
    return Run(path), cfg


def test_run_coordinates_come_from_the_manifest_and_are_joined_in_one_place(tmp_path: Path) -> None:
    from repeatlens.results.schema import RUN_COLUMNS, RUN_DTYPES
    from repeatlens.results.store import ScoreTable, join_run_tables, run_coordinates, with_coordinates

    run, cfg = _fake_run(tmp_path / "a")
    coords = run_coordinates(run)
    assert list(coords) == RUN_COLUMNS
    assert coords == {"repeated_fraction": 0.1, "repeat_count": 10, "total_tokens": cfg.mixture.total_tokens,
                      "unique_tokens": 90 * cfg.data.seq_len, "control": cfg.mixture.control, "model_preset": cfg.model.preset or "custom",
                      "n_params": cfg.model.n_params(100), "n_params_nonembedding": cfg.model.n_params(100, embeddings=False), "seed": 3}
    assert run_coordinates(_fake_run(tmp_path / "b", n_params=5000)[0])["n_params"] == 5000  # the manifest's count wins
    table = ScoreTable.read(run.path / "scores.parquet")
    table.update(10, [("test_loss", "")], {"test_loss": 1}, tidy_scores(_rows(10, "test_loss", values=(3.0,))))
    table.write()
    scores, metrics = join_run_tables([run])
    assert list(scores.columns) == SCORE_COLUMNS + RUN_COLUMNS and len(scores) == 1
    assert scores[RUN_COLUMNS].iloc[0].to_dict() == coords and scores.dtypes[RUN_COLUMNS].astype(str).to_dict() == RUN_DTYPES
    assert metrics.run_id.tolist() == ["a", "a"] and metrics.loss_se.isna().all()  # trained before loss_se: NaN
    assert (metrics[RUN_COLUMNS].drop_duplicates().iloc[0].to_dict()) == coords
    pd.testing.assert_frame_equal(with_coordinates(table.df, coords, SCORE_COLUMNS), scores)
