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
| AdamW beta >= 1, seed < 0 or >= 2**32       | ``field 'train.betas' = [0.9, 1.5]`` …              |
| odd d_head with rotary positions            | ``d_head = 7 with positional_embedding rotary``    |
| device meta, lr 1e300 or NaN                | ``field 'train.device' = 'meta'`` …                 |
| wandb online without a key                  | ``no W&B API key is configured``                   |
| --set value that is not YAML                | ``the value is not valid YAML``                    |
| a preset that is a list                     | ``unknown preset ['a']``                           |
| a 5,000-character path or value             | cut to 200 characters, the line to 600             |
| BPE vocab 1e9, lengths past 2**53           | ``less than or equal to 16777216`` …               |
| a model larger than the machine's memory    | ``GiB of memory (the model's weights …``           |
| empty data.source, min_len > seq_len        | ``field 'data.source' = ''`` …                      |
| token_ids on a synthetic-only run           | ``applies to a run mixing a corpus``               |

Issue 26 adds the command line's own usage errors, damaged run files in every command
(:data:`DAMAGED_FILES`), permissions and the umask, memory and OS limits; the seeded fuzz
of all of these is tests/test_fuzz.py.
"""

from __future__ import annotations

import contextlib
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
        # issue 26, case 5: found only at train time before, with a traceback and a run directory left behind
        ("beta >= 1", ["train", c, "--set", "train.betas=[0.9,1.5]"], "field 'train.betas' = [0.9, 1.5]: AdamW needs each beta in [0, 1)"),
        ("negative seed", ["train", c, "--set", "seed=-1"], "field 'seed' = -1: Input should be greater than or equal to 0"),
        ("seed 2**63", ["train", c, "--set", f"seed={2**63}"], f"field 'seed' = {2**63}: Input should be less than or equal to 4294967295"),
        ("odd rotary d_head", ["train", c, "--set", "model.positional_embedding=rotary", "--set", "model.d_head=7"],
         "d_head = 7 with positional_embedding rotary: rotary embeddings turn pairs of dimensions; expected an even d_head"),
        ("meta device", ["train", c, "--set", "train.device=meta"], "field 'train.device' = 'meta': expected auto, cpu, cuda, cuda:N or mps"),
        ("lr 1e300", ["train", c, "--set", "train.lr=1e300"], "field 'train.lr' = '1e300': Input should be less than or equal to 10"),
        ("nan lr", ["train", c, "--set", "train.lr=.nan"], "field 'train.lr' = nan: Input should be a finite number"),
        ("wandb online, no key", ["train", c, "--set", "train.wandb.enabled=true", "--set", "train.wandb.mode=online"],
         "train.wandb.mode = 'online' but no W&B API key is configured"),
        ("--set not YAML", ["train", c, "--set", "data.seq_len=["], "--set 'data.seq_len=[': the value is not valid YAML"),
        ("preset a list", ["train", c, "--set", "model.preset=[a]"], "field 'model': unknown preset ['a']; expected one of attn1-tiny"),
        ("5,000-char path", ["train", str(tmp / ("x" * 5000))], "xxx: file name too long"),
        ("BPE vocab 1e9", ["train", c, "--set", "data.source=shakespeare", "--set", "data.vocab_size=1000000000"],
         "field 'data.vocab_size' = 1000000000: Input should be less than or equal to 16777216"),
        ("huge synthetic lengths", ["train", c, "--set", f"data.synthetic.max_len={10**21}", "--set", f"data.synthetic.min_len={10**20}"],
         f"field 'data.synthetic.min_len' = {10**20}: Input should be less than or equal to 9007199254740992"),
        ("huge D", ["train", c, "--set", f"mixture.total_tokens={10**23}"], "Input should be less than or equal to 9007199254740992"),
        ("model too big for memory", ["train", c, "--set", "model.d_model=400000000"], "GiB of memory (the model's weights, gradients and AdamW moments (model)"),
        # case 10
        ("empty data.source", ["train", c, "--set", "data.source=''"], "field 'data.source' = '': empty; expected a bundled corpus name"),
        ("min_len > seq_len", ["train", c, "--set", "data.synthetic.min_len=40", "--set", "data.synthetic.max_len=40"],
         "data.synthetic.min_len = 40 leaves no room for a segment and its copy in data.seq_len = 32"),
        ("token_ids, synthetic only", ["train", c, "--set", "data.synthetic.token_ids=10"],
         "data.synthetic.token_ids applies to a run mixing a corpus with the synthetic source"),
        ("a 5,000-character value", ["train", c, "--set", "model.act_fn=" + "g" * 5000], "field 'model.act_fn' = 'ggg"),
    ]


def test_bad_inputs_get_one_line_errors_and_exit_2(cfg_file: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no W&B login on this machine, whatever ~/.netrc holds
    for name, argv, expected in _bad_cases(tmp_path):
        out_dir = tmp_path / f"out_{name.replace(' ', '_')}"
        code, out, err = _run(argv + ["--out", str(out_dir), "-q"], capsys)
        assert code == 2, (name, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert expected in lines[0], (name, lines[0])
        assert len(lines[0]) <= 620, (name, len(lines[0]))  # values cut to 200 characters, the line to 600
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
    from repeatlens.results.metric_facts import metric_facts
    from repeatlens.results.store import _recorded_facts

    facts = _recorded_facts(run / "score_step_0000005.parquet")  # the metrics' facts travel with the table, as analyze's do
    assert set(facts) == {"induction", "previous_token", "test_loss"} and facts["induction"] == metric_facts("induction").to_json()
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


def test_fit_prints_the_peaks_alpha_and_effective_sizes_and_writes_json(tmp_path: Path, capsys) -> None:
    """`repeatlens fit` on a sweep's tables (a simulated sweep whose peak moves as N^-0.5, 6 sizes over 64x)
    and on a per-run CSV (the committed study's, whose design does not identify alpha)."""
    import json

    import numpy as np
    import pandas as pd

    from repeatlens.results.schema import SCORE_COLUMNS, SCORE_DTYPES
    from tests.results.test_fits import simulate

    final = simulate(np.random.default_rng(0)).rename(columns={"N": "n_params_nonembedding"}).drop(columns=["N_total"])
    final["run_id"] = [f"r{i}" for i in range(len(final))]
    rows = final.assign(step=100, tokens_seen=1000, metric="test_loss", layer=pd.NA, head=pd.NA, offset=pd.NA, probe="", probe_len=pd.NA,
                        probe_batch=pd.NA, probe_seed=pd.NA, probe_key="", value=final.test_loss, score_version=1, duplicate_of=pd.NA,
                        model_preset=final.n_params_nonembedding.map(lambda n: f"N{n:g}"), n_params=final.n_params_nonembedding * 3)
    rows = rows.astype(SCORE_DTYPES)[SCORE_COLUMNS + ["repeated_fraction", "repeat_count", "total_tokens", "model_preset", "n_params",
                                                       "n_params_nonembedding", "seed"]]
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    rows.to_parquet(sweep / "scores.parquet")
    code, out, err = _run(["fit", str(sweep), "--json", str(tmp_path / "fit.json")], capsys)
    assert code == 0, err
    assert out.startswith("Scaling fit of test_loss at f = 0.25, D = 8,000,000 tokens: 6 model sizes")
    assert "alpha = -0.511 (95% -0.571 to -0.451; weighted least squares of log10 E* on log10 N, t at 4 dof)" in out
    assert "Effective model size on the full-data controls' law" in out and "N_total: L = " in out
    assert json.loads((tmp_path / "fit.json").read_text())["identified"] is True
    code, out, err = _run(["fit", "analyses/repeated_data_scaling/v1/results/final_runs.csv", "--size", "N_total"], capsys)
    assert code == 0, err
    assert "alpha: not identified: 3 model sizes with a fitted peak; alpha needs at least 4" in out and "N = 75,200" in out
    for argv, expected in (
        (["fit", str(sweep), "--loss", "test_text"], "error: --loss test_text: not in"),
        (["fit", str(tmp_path / "none.csv")], f"error: {tmp_path / 'none.csv'}: no such file"),
        (["fit", "README.md"], "error: README.md: expected a .csv or .parquet table of runs, or a sweep directory"),
        (["fit", "analyses/repeated_data_scaling/v1/results/final_runs.csv", "--fraction", "0.5"],
         "error: fraction 0.5: no runs at it; the table has f = 0.25"),
        (["fit", "analyses/repeated_data_scaling/v1/results/final_runs.csv", "--size", "params"], "error: size must be one of N, N_total"),
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(expected), (argv, err)


# ------------------------------------------------------------------- issue 26: one error path


def _one_line_error(code: int, err: str) -> str:
    """The one ``error:`` line of a failed command (asserting there is exactly one and no traceback)."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert "Traceback" not in err and len(lines[0]) <= 620
    return lines[0]


def test_usage_errors_of_the_command_line_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    """Issue 26, case 4: typer 0.29 raises its vendored click's exceptions, which main() used to miss (45-75-line tracebacks)."""
    for argv, expected in (
        (["info"], "error: Missing argument 'PATH'. (see `repeatlens info --help`)"),
        (["bogus"], "error: No such command 'bogus'. (see `repeatlens --help`)"),
        (["score", str(tmp_path), "--step", "abc"], "error: Invalid value for '--step': Input should be a valid integer"),
        (["analyze", str(tmp_path), "--probe-batch", "0"], "error: Invalid value for '--probe-batch': Input should be greater than or equal to 1"),
        (["train", "c.yaml", "--out"], "error: Option '--out' requires an argument."),
    ):
        code, out, err = _run(argv, capsys)
        assert _one_line_error(code, err).lower().startswith(expected.lower()), (argv, err)  # typer versions differ in case
    code, out, err = _run([], capsys)  # no command: the help, as `--help` gives it
    assert "Usage: repeatlens" in out + err and "Traceback" not in err


def test_a_long_out_path_is_one_shortened_line(cfg_file: Path, tmp_path: Path, capsys) -> None:
    long_out = tmp_path / ("o" * 5000)
    line = _one_line_error(*_run(["train", str(cfg_file), "--out", str(long_out), "-q"], capsys)[::2])
    assert line.endswith(": file name too long") and "…" in line


@pytest.fixture
def shared_dir():
    """A folder every user may enter (pytest's own are the owner's only), for the tests that act as another user."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="repeatlens-perm-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _as_another_user():
    """Run the block as user ``nobody`` when the tests run as root (who reads every file), else as is."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.setegid(65534)
        os.seteuid(65534)
    except PermissionError:
        pytest.skip("running as root without the right to change the effective user")
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_permissions_are_one_line_errors_and_runs_are_written_with_the_umask(shared_dir: Path, capsys) -> None:
    """Issue 26, case 9: an unreadable corpus, an unwritable cache or --out, another user's run."""
    _run(["--help"], capsys)  # every module the commands below need is imported before the effective user changes
    old_umask = os.umask(0o022)
    try:
        cfg = _write_cfg(shared_dir / "c.yaml", TINY_SYNTHETIC)
        code, _, err = _run(["train", str(cfg), "--out", str(shared_dir / "run"), "-q"], capsys)
        assert code == 0, err
    finally:
        os.umask(old_umask)
    run = shared_dir / "run"
    modes = {p.relative_to(run).as_posix(): p.stat().st_mode & 0o777 for p in run.rglob("*") if not p.name.startswith(".")}
    assert modes and all(m == (0o755 if (run / p).is_dir() else 0o644) for p, m in modes.items()), modes  # 0600 before

    corpus, secret = shared_dir / "corpus.txt", shared_dir / "secret.txt"
    for path in (corpus, secret):
        path.write_text("some text to tokenize, " * 200)
    secret.chmod(0o000)
    cache = shared_dir / "cache"
    cache.mkdir(mode=0o555)
    cache.chmod(0o555)
    read_only = shared_dir / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    text = ["--set", "data.synthetic_fraction=0.0", "--set", "data.vocab_size=300", "--set", "mixture.repeated_fraction=0.0",
            "--set", "mixture.repeat_count=1"]
    with _as_another_user():
        unreadable = _run(["train", str(cfg), "--out", str(shared_dir / "a"), "-q", "--set", f"data.source={secret}",
                           "--set", f"data.cache_dir={shared_dir}", *text], capsys)
        no_cache = _run(["train", str(cfg), "--out", str(shared_dir / "b"), "-q", "--set", f"data.source={corpus}",
                         "--set", f"data.cache_dir={cache}", *text], capsys)
        no_out = _run(["train", str(cfg), "--out", str(read_only / "run"), "-q"], capsys)
        info = _run(["info", str(run)], capsys)  # another user's run: readable, as the user's other files are
        resume = _run(["train", str(cfg), "--out", str(run), "-q"], capsys)
        analyze = _run(["analyze", str(run), "-m", "test_loss", "-q"], capsys)
    assert f"error: data.source: {secret}: permission denied" == _one_line_error(*unreadable[::2])
    assert "could not be written (Permission denied)" in _one_line_error(*no_cache[::2]) and str(cache) in no_cache[2]
    assert _one_line_error(*no_out[::2]).startswith(f"error: {read_only / 'run'}: could not be written (Permission denied)")
    assert info[0] == 0 and "(complete)" in info[1]
    assert "could not be written (Permission denied)" in _one_line_error(*resume[::2])
    assert "could not be written (Permission denied)" in _one_line_error(*analyze[::2])
    assert not (shared_dir / "a").exists() and not (shared_dir / "b").exists()


def _scores_with_other_columns(path: Path) -> None:
    import pandas as pd

    pd.DataFrame({"a": [1]}).to_parquet(path)


def _sidecar_as_list(path: Path) -> None:
    path.write_text("[1, 2]")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


#: (file of a run, damage, commands that read it): each command must end in one line naming the file.
DAMAGED_FILES = [
    ("manifest.json", lambda p: p.write_bytes(b"\xff\xfe{}"), ["info", "analyze", "report", "train", "score"]),
    ("tokenizer.json", lambda p: p.write_bytes(b"\xff\xfe{}"), ["info", "analyze", "report", "train", "score"]),
    ("complete.json", lambda p: p.write_text("{not json"), ["info", "train"]),
    ("metrics.parquet", _truncate, ["info", "report", "train"]),
    ("data/rows.npy", lambda p: p.unlink(), ["info", "analyze", "report", "train", "score"]),
    ("data/rows.npy", _truncate, ["info", "analyze", "train"]),
    ("data/schedule.npy", _truncate, ["info", "analyze", "train"]),
    ("data/is_synthetic.npy", lambda p: p.unlink(), ["info", "analyze", "train"]),
    ("checkpoints/step_0000005.json", _sidecar_as_list, ["info", "analyze", "report", "train", "score"]),
    ("scores.parquet", _scores_with_other_columns, ["analyze", "report"]),
    ("config.yaml", lambda p: p.unlink(), ["report", "info", "train", "analyze"]),
    # found by the full fuzz run (benchmarks/fuzz.py)
    ("checkpoints/step_0000005.json", lambda p: _retype(p, "environment", "x"), ["info", "train", "score"]),
    ("checkpoints/step_0000005.json", lambda p: _retype(p, "train_state", 1.5), ["info", "analyze", "train"]),
    ("complete.json", lambda p: _retype(p, "environment", -1), ["info", "train"]),
    ("manifest.json", lambda p: _retype(p, "n_test", 10**19), ["info", "analyze", "train", "score"]),
    ("scores.parquet", lambda p: __import__("pandas").read_parquet(p).iloc[:0].to_parquet(p), ["report"]),
]


def _retype(path: Path, key: str, value) -> None:
    import json

    meta = json.loads(path.read_text())
    meta[key] = value
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("target, damage, commands", DAMAGED_FILES, ids=[f"{t}:{i}" for i, (t, _, _) in enumerate(DAMAGED_FILES)])
def test_damaged_run_files_are_one_line_naming_the_file_in_every_command(
    mixed_run, tmp_path: Path, capsys, target: str, damage, commands: list[str]
) -> None:
    """Issue 26, case 6: each of these was a traceback in some command; now one line naming the file, exit 2, nothing written."""
    import shutil

    from tests.conftest import TINY_MIXED

    run = tmp_path / "run"
    shutil.copytree(mixed_run.path, run)
    cfg = _write_cfg(tmp_path / "m.yaml", TINY_MIXED)
    assert _run(["analyze", str(run), "-m", "test_loss", "-q"], capsys)[0] == 0  # a scores table to damage, and to keep
    damage(run / target)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")}
    argv = {"info": ["info", str(run)], "analyze": ["analyze", str(run), "-m", "test_loss", "-q", "--force"],
            "report": ["report", str(run)], "train": ["train", str(cfg), "--out", str(run), "-q"],
            "score": ["score", str(run), "--step", "5", "-m", "test_loss"]}
    for command in commands:
        code, out, err = _run(argv[command], capsys)
        line = _one_line_error(code, err)
        named = run / target
        assert line.startswith(f"error: {named}: "), (command, line)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert after == before  # nothing rewritten, nothing lost, no report or score table written


def test_memory_and_os_limits_are_one_line_and_our_own_bugs_keep_their_traceback(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import repeatlens.cli as cli

    def raising(exc):
        def summary(run_dir):
            raise exc
        return summary

    for exc, expected in (
        (MemoryError(), "error: out of memory (MemoryError); lower the sizes in the config"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes"),
         "error: out of memory ([enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        (OSError(errno.EMFILE, "Too many open files", str(tmp_path / "f.npy")), f"error: {tmp_path / 'f.npy'}: too many open files"),
        (PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x")), f"error: {tmp_path / 'x'}: permission denied"),
    ):
        monkeypatch.setattr(cli, "run_summary", raising(exc))
        monkeypatch.setattr(cli, "folder_summary", raising(exc))  # tmp_path is no run: info reads it as a folder
        code, _, err = _run(["info", str(tmp_path)], capsys)
        assert _one_line_error(code, err).startswith(expected), err
    for bug in (KeyError("step"), FileNotFoundError(errno.ENOENT, "No such file", "x"), TypeError("bad operand")):
        monkeypatch.setattr(cli, "run_summary", raising(bug))
        monkeypatch.setattr(cli, "folder_summary", raising(bug))
        with pytest.raises(type(bug)):  # not turned into "unreadable input": it surfaces, with its traceback
            main(["info", str(tmp_path)])
