"""Deterministic training: the op that varied, the mode's scope, what a run records, the resume warning."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from repeatlens import determinism
from repeatlens.checkpoints import RunDir
from repeatlens.cli import main
from repeatlens.determinism import ReproducibilityWarning, deterministic_algorithms
from repeatlens.errors import ConfigError
from repeatlens.train import train
from tests.conftest import TINY_SYNTHETIC, tiny_config


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _embedding_grad(weight: torch.Tensor, tokens: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """d/dW of sum(W[tokens] * upstream): the backward of the gather both forward paths use."""
    w = weight.clone().requires_grad_(True)
    (w[tokens] * upstream).sum().backward()
    return w.grad


def test_embedding_backward_is_the_serial_token_order_sum_at_two_threads() -> None:
    """The op the bisection found: at 2 threads, deterministic mode sums gradient rows in token order.

    The reference adds the upstream rows one by one, in the order the tokens come, in
    float32: the serial kernel's order, and what a one-thread run computes. The batch is
    above torch's parallel grain (32768 elements), where the default kernel goes parallel.
    """
    g = torch.Generator().manual_seed(0)
    vocab, d = 64, 64
    weight = torch.randn(vocab, d, generator=g)
    tokens = torch.randint(0, vocab, (32, 32), generator=g)  # many repeats of each id
    upstream = torch.randn(32, 32, d, generator=g)
    assert tokens.numel() * d >= 32768
    ref = torch.zeros(vocab, d)
    for t, row in zip(tokens.reshape(-1).tolist(), upstream.reshape(-1, d)):
        ref[t] += row
    with torch_threads(1):
        one_thread = _embedding_grad(weight, tokens, upstream)
    with torch_threads(2), deterministic_algorithms(True, "cpu"):
        grads = [_embedding_grad(weight, tokens, upstream) for _ in range(5)]
    for grad in grads:
        assert torch.equal(grad, ref)
    assert torch.equal(one_thread, ref)  # one-thread runs keep their bits under the mode


def test_the_mode_holds_inside_and_the_callers_setting_comes_back() -> None:
    import torch.utils.deterministic as det

    assert not torch.are_deterministic_algorithms_enabled() and det.fill_uninitialized_memory
    with deterministic_algorithms(True, "cpu") as on:
        assert on and torch.are_deterministic_algorithms_enabled()
        assert not det.fill_uninitialized_memory  # NaN-filling every new tensor cost a step ~6%; nothing reads unset memory
    assert not torch.are_deterministic_algorithms_enabled() and det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with pytest.raises(ZeroDivisionError), deterministic_algorithms(False, "cpu") as on:
            assert not on and not torch.are_deterministic_algorithms_enabled()
            1 / 0
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_an_op_without_a_deterministic_implementation_is_one_config_error() -> None:
    with pytest.raises(ConfigError) as info, deterministic_algorithms(True, "cpu"):
        torch.zeros(3).put_(torch.tensor([0]), torch.tensor([1.0]))  # put_ (accumulate=False) has none
    msg = str(info.value)
    assert msg == "train.deterministic = true: put_ does not have a deterministic implementation on cpu; " \
                  "set train.deterministic: false to train without the bit-reproducibility promise"
    assert not torch.are_deterministic_algorithms_enabled()


def test_cuda_started_without_the_cublas_setting_trains_undeterministic_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's state is simulated (no GPU here): the decision, not cuBLAS, is what is tested."""
    monkeypatch.delenv(determinism.CUBLAS_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.warns(ReproducibilityWarning, match=r"CUDA was started before CUBLAS_WORKSPACE_CONFIG was set"):
        with deterministic_algorithms(True, "cuda") as on:
            assert not on and not torch.are_deterministic_algorithms_enabled()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # not started yet: set it in time
    with deterministic_algorithms(True, "cuda") as on:
        assert on and torch.are_deterministic_algorithms_enabled()
    import os

    assert os.environ[determinism.CUBLAS_VAR] == ":4096:8"


def test_environment_records_what_a_result_depends_on() -> None:
    with torch_threads(2), deterministic_algorithms(True, "cpu"):
        env = determinism.environment("cpu")
    assert env["threads"] == 2 and env["deterministic"] is True and env["device"] == "cpu"
    assert env["torch"] == torch.__version__ and env["transformer_lens"] == md.version("transformer-lens")
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cuda"] is None
    assert determinism.environment("cpu")["deterministic"] is False  # outside the block: the caller's mode
    json.dumps(env)
    changed = {**env, "threads": 1, "deterministic": False, "python": "0.0"}
    assert determinism.environment_changes(env, changed) == ["threads 2 -> 1", "deterministic True -> False"]  # python is not pinned
    assert determinism.environment_changes(None, env) == []
    line = determinism.describe(env)
    assert line.startswith(f"cpu ({env['device_name']}, {env['cpu_capability']}), 2 torch threads, torch {torch.__version__}")
    assert line.endswith("deterministic") and "NOT" not in line


def test_a_run_records_its_environment_and_resuming_on_other_threads_warns_in_one_line(tmp_path: Path, capsys) -> None:
    cfg = tiny_config()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(TINY_SYNTHETIC))
    out = tmp_path / "run"
    train(cfg, out, stop_after=6)  # at the suite's 1 thread
    run = RunDir(out)
    assert all(c.sidecar["environment"]["threads"] == 1 and c.sidecar["environment"]["deterministic"] for c in run.checkpoints())
    start = run.checkpoints()[-1].step
    with torch_threads(2):
        main(["train", str(cfg_file), "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: {out}: resuming from step {start} with threads 1 -> 2; the result is not promised bit-identical to an uninterrupted run"], err
    done = json.loads(run.complete_path.read_text())
    assert done["environment"]["threads"] == 2 and done["environment"]["deterministic"] is True
    assert run.checkpoints()[-1].sidecar["environment"] == done["environment"]

    main(["info", str(out)])
    info = capsys.readouterr().out
    assert f"environment {determinism.describe(done['environment'])}" in info
    first_changed = min(c.step for c in run.checkpoints() if c.step > start)
    assert f"changed at step {first_changed} (threads 1 -> 2): not promised bit-identical" in info


def test_info_reads_the_environment_without_importing_torch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny_config(), out, stop_after=2)
    code = ("import sys; from repeatlens.cli import run_summary; s = run_summary(sys.argv[1]); "
            "assert 'environment cpu' in s, s; print(sorted(m for m in ('torch', 'transformer_lens') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_cli_shows_our_warnings_on_one_line_and_leaves_others_alone() -> None:
    code = ("import warnings; from repeatlens.cli import _one_line_warnings; from repeatlens.determinism import ReproducibilityWarning; "
            "from repeatlens.errors import StaleTableWarning; _one_line_warnings(); _one_line_warnings(); "
            "warnings.warn('mine', ReproducibilityWarning); warnings.warn('stale', StaleTableWarning); warnings.warn('theirs')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[:2] == ["warning: mine", "warning: stale"]  # once each, though installed twice
    assert lines[2].endswith(":1: UserWarning: theirs")  # Python's own format (file:line: Category: message)
