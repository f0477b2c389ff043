"""Smoke test of the benchmark scripts at their smallest sizes.

Speed targets live in benchmarks/ and benchmarks/README.md, never here: this only checks
that the script runs end to end, that its same-results check passes, and that it ends with
a ``ratio=X`` line.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_score_throughput_smoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    bench = _load("score_throughput")
    argv = "--layers 2 --d-model 16 --heads 2 --d-head 8 --vocab 64 --ctx 32 --probe-batch 2 --repeats 1 --eig-repeats 1"
    argv += " --checkpoints 1,2 --scaling-repeats 1 --peak-n 128 --threads 0 --device cpu --no-scaling-check"
    monkeypatch.setattr(sys, "argv", ["score_throughput.py", *argv.split()])
    assert bench.main() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "check same_results: ok" in lines
    for metric in ("previous_token", "duplicate_token", "induction", "prefix_matching", "copying_ov"):
        assert any(line.startswith(metric) and " ok (" in line for line in lines), metric
    assert re.fullmatch(r"ratio=\d+\.\d+", lines[-1]), lines[-1]
    assert float(lines[-1].split("=")[1]) > 0


@pytest.mark.slow
def test_score_throughput_shape_smoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """--shape runs the whole default battery and analyze on one random model (here tiny)."""
    bench = _load("score_throughput")
    argv = "--shape tiny --device cpu --threads 1 --before-after --ablation-layers 1"
    monkeypatch.setattr(sys, "argv", ["score_throughput.py", *argv.split()])
    assert bench.main() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(ln.startswith("copying_top1, copying_top1_se ") for ln in lines)
    assert any(ln.startswith("copying_top1, copying_top1_se [before: full logits] ") for ln in lines)
    assert any(ln.startswith("ablation_copying_loss ") and "ESTIMATED: layer 0's 4 heads" in ln for ln in lines)
    assert any(ln.startswith("ablation_copying_loss [before") and "EXTRAPOLATED from 4 of 8 heads" in ln for ln in lines)
    assert any(ln.startswith("before/after: battery without ablation ") for ln in lines)
    assert any(ln.startswith("check no_vocab_square: ok") for ln in lines)
    assert re.fullmatch(r"seconds_per_checkpoint=\d+\.\d+", lines[-1]), lines[-1]


@pytest.mark.parametrize("extra", ["", "--rotary --hooked", "--determinism-cost"], ids=["fused", "rotary-hooked", "determinism-cost"])
def test_train_throughput_smoke(extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    bench = _load("train_throughput")
    argv = f"--steps 4 --repeats 1 --d-model 16 --heads 2 --d-head 8 --vocab 64 --ctx 16 --batch 16 --device cpu {extra}"
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", *argv.split()])
    bench.main()
    out = capsys.readouterr().out
    assert ("positions=rotary repeatlens_forward=hooked" in out) == ("--hooked" in extra)
    assert "schedule iterator" in out
    assert ("deterministic / not: " in out) == ("--determinism-cost" in extra) == ("step-interleaved: deterministic" in out)
    assert re.fullmatch(r"ratio=\d+\.\d+", out.strip().splitlines()[-1])


def test_profile_train_step_smoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    bench = _load("profile_train_step")
    argv = "--rotary --steps 1 --top 2 --d-model 16 --heads 2 --d-head 8 --vocab 64 --ctx 16 --batch 2"
    monkeypatch.setattr(sys, "argv", ["profile_train_step.py", *argv.split()])
    bench.main()
    out = capsys.readouterr().out
    assert "=== hooked forward (rotary positions)" in out and "=== fused forward (rotary positions)" in out
    assert re.match(r"ratio=\d+\.\d+", out.strip().splitlines()[-1])


def test_attribution_cost_smoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    bench = _load("attribution_cost")
    argv = "--layers 2 --d-model 16 --heads 2 --vocab 64 --ctx 32 --sequences 8 --repeats 1"
    monkeypatch.setattr(sys, "argv", ["attribution_cost.py", *argv.split()])
    assert bench.main() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(ln.startswith("attribution scores: ablation_repeated_loss") for ln in lines)
    assert re.fullmatch(r"ratio=\d+\.\d+", lines[-1]) and float(lines[-1].split("=")[1]) > 0


def test_gpu_check_runs_on_the_cpu_at_a_tiny_shape(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/gpu_check.py --cpu --tiny: (a) both training steps in bf16 and their ratio, (b) the battery and analyze;
    (c) is the pytest command it would run (the suite does not run itself)."""
    bench = _load("gpu_check")
    ran, real = [], bench.subprocess.run

    def fake_run(cmd, **kw):
        if "pytest" not in cmd:  # e.g. git, for the commit score_throughput.py prints
            return real(cmd, **kw)
        ran.append(cmd)
        return real([sys.executable, "-c", "pass"])

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    import torch

    threads = torch.get_num_threads()
    assert bench.main(["--cpu", "--tiny"]) == 0
    assert torch.get_num_threads() == threads  # the suite's thread count is left alone
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(re.match(r"\[a\] repeatlens +[\d,]+ tok/s", ln) for ln in lines)
    assert any(re.match(r"\[a\] reference +[\d,]+ tok/s", ln) for ln in lines)
    assert any(re.fullmatch(r"\[a\] train_ratio=\d+\.\d{3}", ln) for ln in lines)
    assert any(ln.startswith("analyze, 1 checkpoint (load+scores+table)") for ln in lines)
    assert "check no_vocab_square: ok" in " ".join(lines) and lines[-1] == "gpu_check=ok"
    files = [str(f) for f in bench.cuda_test_files()]
    assert ran == [[sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs", *files]]


def test_gpu_check_points_pytest_at_every_file_with_a_cuda_test_and_no_other() -> None:
    """(c) collects only the files holding CUDA tests (a GPU image without plotly cannot collect
    the rest): the files with a line that decorates with the cuda mark, found here by a regular
    expression (gpu_check parses the modules; this file names the mark in prose and code only)."""
    decorator = re.compile(r"^\s*@pytest\.mark\.cuda\b", re.MULTILINE)
    tests = BENCH.parent / "tests"
    bench = _load("gpu_check")
    assert bench.cuda_test_files() == sorted(f for f in tests.rglob("test_*.py") if decorator.search(f.read_text()))
    assert Path(__file__).resolve() not in bench.cuda_test_files()
    assert {f.name for f in bench.cuda_test_files()} >= {"test_analysis.py", "test_train.py", "test_checkpoints.py"}
    assert not any("plots" in f.parts for f in bench.cuda_test_files())


def test_gpu_check_knows_the_bf16_peaks_and_refuses_to_run_without_a_gpu(capsys: pytest.CaptureFixture) -> None:
    bench = _load("gpu_check")
    assert bench.bf16_peak("NVIDIA H200") == bench.bf16_peak("NVIDIA H100 80GB HBM3") == 989.4e12
    assert bench.bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12 and bench.bf16_peak("NVIDIA L4") == 121e12
    assert bench.bf16_peak("NVIDIA L40S") == 362.1e12 and bench.bf16_peak("Tesla V100-SXM2-16GB") is None  # no bf16 tensor cores
    # nanoGPT's count for GPT-2 small at T = 1024: 6 x 123.5M + 12 x 12 x 768 x 1024 ~ 0.85 GFLOP/token
    assert bench.flops_per_token(bench.SHAPES["gpt2-small"]) == pytest.approx(0.854e9, rel=0.01)
    import torch

    if not torch.cuda.is_available():
        assert bench.main([]) == 2
        assert "run with --cpu --tiny" in capsys.readouterr().err


def test_fit_coverage_smoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The bootstrap coverage script end to end on two sweeps (its numbers: benchmarks/README.md)."""
    bench = _load("fit_coverage")
    monkeypatch.setattr(sys, "argv", ["fit_coverage.py", "--sims", "2", "--boot", "5"])
    assert bench.main() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("2 simulated sweeps") and lines[1].startswith("t        : peak centre")
    assert re.fullmatch(r"coverage=\d\.\d{3}", lines[-1]), lines[-1]
def test_score_throughput_vocab_cost_smoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """--vocab-cost: two transformers-built GPT-2 folders analysed both ways, tables equal."""
    bench = _load("score_throughput")
    argv = "--vocab-cost --vocabs 3000,64 --repeats 1 --threads 1 --device cpu"
    monkeypatch.setattr(sys, "argv", ["score_throughput.py", *argv.split()])
    assert bench.main() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(ln.startswith("check same_results: ok") for ln in lines)
    assert any(ln.startswith("vocabulary 3,000 / 64: before ") for ln in lines)
    assert any(ln.startswith("ablation_copying_loss ") for ln in lines)
    assert re.fullmatch(r"ratio=\d+\.\d+", lines[-1]), lines[-1]
