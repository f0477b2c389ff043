"""AnalyzeOptions: how to score, declared once for the Python API, the command line and a sweep
file's analyze: section (defaults, bounds, the deprecated seed, one-line errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from repeatlens.analyze_options import AnalyzeOptions
from repeatlens.errors import ConfigError


def test_options_are_frozen_validated_and_read_names_as_the_command_line_does() -> None:
    opts = AnalyzeOptions(probes="synthetic, text,synthetic", metrics=["induction"], probe_len=20, lock_timeout=3)
    assert opts.probes == ("synthetic", "text") and opts.metrics == ("induction",) and opts.lock_timeout == 3.0
    assert opts.kwargs() == {"probes": ["synthetic", "text"], "metrics": ["induction"], "probe_len": 20, "lock_timeout": 3.0}
    assert opts.probe_options() == {"probes": ["synthetic", "text"], "probe_len": 20}
    with pytest.raises(Exception, match="frozen"):
        opts.probe_len = 30  # type: ignore[misc]
    assert opts.with_(probe_len=30).probe_len == 30 and opts.probe_len == 20  # a copy; the caller's object is left alone
    assert AnalyzeOptions.parse({"seed": 4}).kwargs() == {"probe_seed": 4}  # the deprecated name
    for given, message in (
        ({"probe_batch": 0}, "analyze: field 'probe_batch' = 0: Input should be greater than or equal to 1"),
        ({"probe_len": 1}, "analyze: field 'probe_len' = 1: Input should be greater than or equal to 2"),
        ({"probes": " , "}, "analyze: field 'probes' = ' , ': empty list; name at least one probe family"),
        ({"device": "tpu"}, "analyze: field 'device' = 'tpu': expected auto, cpu, cuda, cuda:N or mps"),
        ({"max_sequences": "8"}, "analyze: field 'max_sequences' = '8': Input should be a valid integer"),
        ({"probe_seed": -1}, "analyze: field 'probe_seed' = -1: Input should be greater than or equal to 0"),
        ({"seed": 1, "probe_seed": 2}, "analyze: seed = 1 and probe_seed = 2: give probe_seed only"),
        ({"max_sequence": 8}, "analyze: unknown field 'max_sequence'"),
    ):
        with pytest.raises(ConfigError) as exc:
            AnalyzeOptions.parse(given)
        assert str(exc.value).startswith(message) and "\n" not in str(exc.value), given


def test_analyze_takes_the_options_object_or_its_fields_as_keywords(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import repeatlens
    import repeatlens.analysis as analysis_mod

    seen = []
    monkeypatch.setattr(analysis_mod, "_analyze_run", lambda path, metrics, opts, **kw: seen.append((metrics, opts)) or analysis_mod.AnalysisResult(path, "run"))
    monkeypatch.setattr(analysis_mod.RunDir, "is_run", lambda self: True)
    monkeypatch.setattr(analysis_mod.RunDir, "looks_like_run", lambda self: False)
    assert repeatlens.AnalyzeOptions is analysis_mod.AnalyzeOptions is AnalyzeOptions
    analysis_mod.analyze(tmp_path, ["induction"], probes="synthetic", probe_len=20, device="cpu", progress=False)
    analysis_mod.analyze(tmp_path, options=AnalyzeOptions(metrics=["induction"], probes=["synthetic"], probe_len=20, device="cpu", progress=False))
    analysis_mod.analyze(tmp_path, ["induction"], options=AnalyzeOptions(probes="synthetic", probe_len=10), probe_len=20, device="cpu", progress=False)
    assert len(seen) == 3 and all(s == seen[0] for s in seen) and seen[0][0] == ("induction",)
    assert seen[0][1].probes == ("synthetic",) and seen[0][1].probe_len == 20 and seen[0][1].device == "cpu"
    with pytest.raises(ConfigError, match="metrics given twice"):
        analysis_mod.analyze(tmp_path, ["induction"], options=AnalyzeOptions(metrics=["test_loss"]))
    with pytest.raises(ConfigError, match=r"^analyze: unknown field 'probe_length'"):
        analysis_mod.analyze(tmp_path, probe_length=20)


def test_the_command_line_takes_its_defaults_bounds_and_help_from_the_options(capsys: pytest.CaptureFixture) -> None:
    from repeatlens.cli import app

    command = next(c for c in app.registered_commands if c.callback.__name__ == "analyze")
    import inspect

    params = inspect.signature(command.callback).parameters
    for cli_name, field in (("max_sequences", "max_sequences"), ("probe_batch", "probe_batch"), ("probe_seed", "probe_seed"),
                            ("device", "device"), ("force", "force"), ("tokens_per_step", "tokens_per_step")):
        option, info = params[cli_name].default, AnalyzeOptions.model_fields[field]
        assert option.default == info.default and option.help == info.description, cli_name
    assert params["probe_batch"].default.min == 1 and params["probe_len"].default.min == 2 and params["probe_seed"].default.min == 0


def test_a_sweeps_analyze_section_takes_the_options_that_are_the_same_for_every_point(tmp_path: Path) -> None:
    from repeatlens.sweep import AnalyzeOptions as SweepOptions
    from repeatlens.sweep import _sweep_analyze_options

    assert SweepOptions is AnalyzeOptions
    assert _sweep_analyze_options({"metrics": "induction", "seed": 2}, "s.yaml").kwargs() == {"metrics": ["induction"], "probe_seed": 2}
    for field in ("force", "tokens", "out", "progress"):
        with pytest.raises(ConfigError, match=rf"^s.yaml: unknown field 'analyze.{field}' \(a sweep's analyze: takes metrics, "):
            _sweep_analyze_options({field: "x" if field in ("tokens", "out") else True}, "s.yaml")


def test_reading_options_imports_neither_pandas_nor_torch() -> None:
    """The command line reads the options' defaults when it starts, before any command runs."""
    code = "import sys, repeatlens.cli; print(sorted(m for m in ('pandas', 'torch', 'repeatlens.analysis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
