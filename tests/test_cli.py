"""The command line: real runs, and the one-line error every bad input gets.

Bad inputs tried, and the error each gets (``error: <message>``, exit code 2, no traceback,
no run directory left behind):

| bad input                                   | message contains                                   |
|---------------------------------------------|----------------------------------------------------|
| invalid YAML                                | ``bad.yaml: line 3: invalid YAML``                 |
| empty config file                           | ``empty config``                                   |
| unknown field                               | ``unknown field 'train.lrr'``                      |
| wrong type                                  | ``field 'train.batch_size' = 'many'``              |
| f outside [0, 1)                            | ``field 'mixture.repeated_fraction' = 1.0``        |
| E < 1                                       | ``field 'mixture.repeat_count' = 0``               |
| repeated subset below one sequence          | ``is smaller than one sequence``                   |
| not enough unique data                      | ``but the spec needs``                             |
| seq_len above n_ctx                         | ``data.seq_len = 64 exceeds model.n_ctx = 32``     |
| missing corpus                              | ``no file, folder or glob match``                  |
| empty corpus file                           | ``empty.txt``                                      |
| binary corpus file                          | ``blob.txt``                                       |
| non-UTF-8 corpus file                       | ``latin1.txt``                                     |
| missing tokenizer file                      | ``nope.json``                                      |
| bad --set syntax                            | ``expected key=value``                             |
| run dir written by another config           | ``different config``                               |
| cuda asked for on a CPU-only machine        | ``train.device 'cuda'``                            |
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from repeatlens.cli import main
from tests.conftest import TINY_SYNTHETIC


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _write_cfg(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    return _write_cfg(tmp_path / "c.yaml", TINY_SYNTHETIC)


def test_train_then_info(cfg_file: Path, tmp_path: Path, capsys) -> None:
    code, out, err = _run(["train", str(cfg_file), "--out", str(tmp_path / "run"), "-q"], capsys)
    assert code == 0, err
    assert "(complete)" in out and "f=0.25  E=4" in out
    code, out, _ = _run(["info", str(tmp_path / "run")], capsys)
    assert code == 0 and "checkpoints 6: steps 0, 1, 3, 5, 10, 12" in out


def _bad_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    (tmp / "bad.yaml").write_text("mixture:\n  total_tokens: [1, 2\n")
    (tmp / "empty.yaml").write_text("")
    (tmp / "empty.txt").write_text("")
    (tmp / "blob.txt").write_bytes(b"abc\x00\x01\x02" * 10)
    (tmp / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    c = str(tmp / "c.yaml")
    corpus = ["--set", "data.source=" + str(tmp / "{}"), "--set", "data.vocab_size=300"]
    return [
        ("invalid YAML", ["train", str(tmp / "bad.yaml")], "bad.yaml: line 3: invalid YAML"),
        ("empty config", ["train", str(tmp / "empty.yaml")], "empty config"),
        ("unknown field", ["train", c, "--set", "train.lrr=1"], "unknown field 'train.lrr'"),
        ("wrong type", ["train", c, "--set", "train.batch_size=many"], "field 'train.batch_size' = 'many'"),
        ("f outside [0,1)", ["train", c, "--set", "mixture.repeated_fraction=1.0"], "field 'mixture.repeated_fraction' = 1.0"),
        ("E < 1", ["train", c, "--set", "mixture.repeat_count=0"], "field 'mixture.repeat_count' = 0"),
        ("subset < 1 seq", ["train", c, "--set", "mixture.repeat_count=1000"], "is smaller than one sequence"),
        ("not enough data", ["train", c, "--set", "data.source=shakespeare", "--set", "data.vocab_size=300",
                             "--set", "mixture.total_tokens=100000000"], "but the spec needs"),
        ("seq_len > n_ctx", ["train", c, "--set", "data.seq_len=64"], "data.seq_len = 64 exceeds model.n_ctx = 32"),
        ("missing corpus", ["train", c, "--set", "data.source=" + str(tmp / "missing.txt")], "no file, folder or glob match"),
        ("empty corpus", ["train", c] + [a.format("empty.txt") for a in corpus], "empty.txt"),
        ("binary corpus", ["train", c] + [a.format("blob.txt") for a in corpus], "blob.txt"),
        ("non-UTF-8 corpus", ["train", c] + [a.format("latin1.txt") for a in corpus], "latin1.txt"),
        ("missing tokenizer", ["train", c, "--set", "data.source=shakespeare", "--set", f"data.tokenizer={tmp}/nope.json"], "nope.json"),
        ("bad --set", ["train", c, "--set", "train.lr"], "expected key=value"),
    ]


def test_bad_inputs_get_one_line_errors_and_exit_2(cfg_file: Path, tmp_path: Path, capsys) -> None:
    for name, argv, expected in _bad_cases(tmp_path):
        out_dir = tmp_path / f"out_{name.replace(' ', '_')}"
        code, out, err = _run(argv + ["--out", str(out_dir), "-q"], capsys)
        assert code == 2, (name, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert expected in lines[0], (name, lines[0])
        assert "Traceback" not in err
        assert not out_dir.exists(), f"{name}: left a run directory behind"


def test_run_dir_from_another_config_is_refused(cfg_file: Path, tmp_path: Path, capsys) -> None:
    assert _run(["train", str(cfg_file), "--out", str(tmp_path / "r"), "-q"], capsys)[0] == 0
    code, _, err = _run(["train", str(cfg_file), "--out", str(tmp_path / "r"), "--set", "train.lr=0.5", "-q"], capsys)
    assert code == 2 and "different config (train.lr = 0.001 there, 0.5 now)" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_on_cpu_machine(cfg_file: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _run(["train", str(cfg_file), "--out", str(tmp_path / "r"), "--set", "train.device=cuda"], capsys)
    assert code == 2 and "train.device 'cuda': CUDA is not available" in err


def test_console_script_in_a_real_process(cfg_file: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("repeatlens")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    bad = subprocess.run([str(exe), "train", str(cfg_file), "--out", str(tmp_path / "x"), "--set", "mixture.repeat_count=0"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ") and "Traceback" not in bad.stderr
    ok = subprocess.run([str(exe), "train", str(cfg_file), "--out", str(tmp_path / "r"), "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "r" / "complete.json").is_file()


def test_score_analyze_plot_report_on_a_run(cfg_file: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    run = tmp_path / "run"
    assert _run(["train", str(cfg_file), "--out", str(run), "-q"], capsys)[0] == 0
    code, out, err = _run(["score", str(run), "--step", "5", "--metrics", "induction,previous_token,test_loss"], capsys)
    assert code == 0, err
    assert "L1.H1" in out and "test_loss" in out
    table = pd.read_parquet(run / "score_step_0000005.parquet")
    assert set(table.metric) == {"induction", "previous_token", "test_loss"} and (table.step == 5).all()
    assert set(table.probe) == {"uniform", "train", "synthetic", ""}  # every family that applies to a synthetic run
    assert len(table[table.metric == "induction"]) == 2 * 2 * 3  # 2 layers x 2 heads x 3 probes
    assert "probe synthetic:L8:B16:s0:" in out  # the default L: the source's longest repeat (max_len 8) under 2P = 14
    from repeatlens.results.store import table_runs

    recorded = table_runs(run / "score_step_0000005.parquet")["run"]  # what the probes used, as every scores table records it
    assert recorded["probe_ids"]["bos"] == 0 and recorded["axis"] == {"x": "tokens_seen", "tokens_from": "training"}
    code, _, err = _run(["analyze", str(run), "-m", "induction", "-m", "test_loss", "-q"], capsys)
    assert code == 0, err
    code, out, err = _run(["plot", str(run), "--out", str(tmp_path / "figs"), "--format", "html"], capsys)
    assert code == 0, err
    assert list((tmp_path / "figs").glob("*.html"))
    code, out, err = _run(["report", str(run)], capsys)
    assert code == 0, err
    assert (run / "report.html").is_file() and "plotly" in (run / "report.html").read_text()[:2_000_000].lower()


def test_data_prepare_caches_the_tokenized_corpus(tmp_path: Path, capsys) -> None:
    cfg = _write_cfg(tmp_path / "d.yaml", {**TINY_SYNTHETIC, "data": {"source": "shakespeare", "vocab_size": 300, "seq_len": 32}})
    code, out, err = _run(["data", "prepare", str(cfg)], capsys)
    assert code == 0, err
    assert "corpus 'shakespeare':" in out and "sequences of 32 tokens (vocab 300)" in out
    cache = Path(os.environ["REPEATLENS_CACHE"])
    assert list(cache.glob("stream-*.npy")) and list(cache.glob("tok-*/tokenizer.json"))


def test_probe_options_that_cannot_apply_are_one_line_errors(cfg_file: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _run(["train", str(cfg_file), "--out", str(run), "-q"], capsys)[0] == 0
    for argv, expected in (
        (["--probe-len", "20"], "probe length L = 20: [BOS, r, r] needs 1 + 2L = 41 positions but the model's context is n_ctx = 32; expected L <= 15"),
        (["--probe", "text"], "--probe text: does not apply here: no held-out natural text is known "
                              "(a synthetic-only run has none; other people's checkpoints need --tokens)"),
        (["--probe", "shakespeare"], "probe 'shakespeare': unknown family; expected one of uniform, train, synthetic, text"),
    ):
        code, out, err = _run(["analyze", str(run), "-q", "-m", "induction", *argv], capsys)
        assert code == 2 and err.strip().splitlines() == [f"error: {expected}"], (argv, err)
    assert not (run / "scores.parquet").exists()  # nothing was scored, nothing written
    code, out, err = _run(["analyze", str(run), "-q", "-m", "induction", "--probe", "synthetic", "--probe-len", "10"], capsys)
    assert code == 0 and "probes synthetic:L10:B16:s0" in out, err


def test_fit_prints_where_the_damage_peaks_per_size_and_the_effective_sizes(tmp_path: Path, capsys) -> None:
    """`repeatlens fit` on a sweep's tables: a hand-made sweep whose peak moves as N^-0.5."""
    import pandas as pd

    from repeatlens.results.schema import SCORE_COLUMNS, SCORE_DTYPES
    from tests.results.test_reduce import _scaling_table

    final = _scaling_table(-0.5)
    rows = final.assign(step=100, tokens_seen=1000, metric="test_loss", layer=pd.NA, head=pd.NA, offset=pd.NA, probe="", probe_len=pd.NA,
                        probe_batch=pd.NA, probe_seed=pd.NA, value=final.test_loss, score_version=1, duplicate_of=pd.NA,
                        total_tokens=1000, model_preset=final.n_params_nonembedding.map(lambda n: f"N{n:g}"), n_params=final.n_params_nonembedding * 3)
    rows = rows.astype(SCORE_DTYPES)[SCORE_COLUMNS + ["repeated_fraction", "repeat_count", "total_tokens", "model_preset", "n_params",
                                                       "n_params_nonembedding", "seed"]]
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    rows.to_parquet(sweep / "scores.parquet")
    code, out, err = _run(["fit", str(sweep), "--bootstrap", "50"], capsys)
    assert code == 0, err
    assert out.startswith("T5 held: test loss per size: N = 10,000: E* = 600") and "alpha = -0.500" in out
    assert "T6 held: controls' test loss" in out and "N_eff / N" in out and "per run (N: non-embedding parameters" in out
    code, _, err = _run(["fit", str(sweep), "--loss", "test_text"], capsys)
    assert code == 2 and err.startswith("error: --loss test_text: not in this sweep's tables")
