"""Issue 26: a seeded, bounded fuzz of configs, run directories and sweep files (tests/fuzzing.py).

No traceback, no data lost, no silent mismatch, nothing left behind by a refused config, in
any case drawn here. The full run (thousands of cases, its counts in the README) is
``benchmarks/fuzz.py``; this one draws a few dozen of each kind from fixed seeds, so a
failure here is reproducible by its seed and name.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from tests import fuzzing
from tests.conftest import TINY_MIXED, TINY_SYNTHETIC, tiny_config


def _assert_clean(counts: fuzzing.Counts) -> None:
    assert counts.failures == 0, f"{counts.line()}\n" + "\n".join(e for ex in counts.examples.values() for e in ex)


@pytest.fixture(scope="module")
def run_bases(tmp_path_factory: pytest.TempPathFactory, mixed_run) -> list[tuple[Path, Path]]:
    """Three runs to damage: complete synthetic, complete mixed (tokenizer, scores table), interrupted synthetic."""
    from repeatlens.analysis import analyze
    from repeatlens.train import train

    tmp = tmp_path_factory.mktemp("fuzz-bases")
    syn_cfg, mixed_cfg = tmp / "synthetic.yaml", tmp / "mixed.yaml"
    syn_cfg.write_text(yaml.safe_dump(TINY_SYNTHETIC))
    mixed_cfg.write_text(yaml.safe_dump(TINY_MIXED))
    complete = train(tiny_config(), tmp / "complete")
    interrupted = train(tiny_config(), tmp / "interrupted", stop_after=4)
    import shutil

    mixed = Path(shutil.copytree(mixed_run.path, tmp / "mixed"))
    analyze(mixed, ["test_loss"], progress=False)
    return [(complete.path, syn_cfg), (mixed, mixed_cfg), (interrupted.path, syn_cfg)]


def test_fuzzed_configs_are_one_line_errors_or_runs(tmp_path: Path, mixed_run) -> None:
    """(``mixed_run``: the session's tokenized corpus cache, which the mixed configs read, is warm.)"""
    counts = fuzzing.Counts()
    for case in fuzzing.config_cases(random.Random(26), 40, [TINY_SYNTHETIC, TINY_MIXED], tmp_path, seconds=60):
        counts.add(fuzzing.judge(case))
    _assert_clean(counts)
    assert counts.by_outcome["error"] > 20 and counts.by_outcome["ok"] > 3  # the fuzz reaches both sides of the validation


def test_fuzzed_run_directories_are_refused_in_one_line_and_lose_nothing(run_bases, tmp_path: Path) -> None:
    counts = fuzzing.Counts()
    for case in fuzzing.run_dir_cases(random.Random(2026), 30, run_bases, tmp_path, seconds=120):
        counts.add(fuzzing.judge(case))
    _assert_clean(counts)
    assert counts.by_outcome["error"] > 10


def test_fuzzed_sweep_files_are_one_line_errors_or_valid(tmp_path: Path) -> None:
    counts = fuzzing.Counts()
    base = {**TINY_SYNTHETIC, "mixture": {"total_tokens": 32 * 8 * 8}}
    for case in fuzzing.sweep_cases(random.Random(8), 30, base, tmp_path, seconds=60):
        counts.add(fuzzing.judge(case))
    _assert_clean(counts)
    assert counts.by_outcome["error"] > 10 and counts.by_outcome["ok"] > 0


def test_the_oracle_sees_each_failure_it_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle itself: a traceback, a two-line error, lost data, a silent mismatch and a
    hang are each classified as such (an oracle that cannot fail would prove nothing)."""
    import repeatlens.cli as cli

    def fake(behaviour):
        def main(argv):
            behaviour()
        monkeypatch.setattr(fuzzing, "main", main)

    def two_lines():
        import sys

        print("error: one\nerror: two", file=sys.stderr)
        raise SystemExit(2)

    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("data")
    (run / "config.yaml").write_text("changed")
    cases = {
        "traceback": (lambda: 1 / 0, {}),
        "not one line": (two_lines, {}),
        "data lost": (lambda: (run / "keep.txt").unlink(), {"run": run}),
        "silent mismatch": (lambda: None, {"run": run, "damaged": "config.yaml", "changed": True, "vouched": True}),
        "hang": (lambda: __import__("time").sleep(5), {}),
        "ok": (lambda: None, {}),
    }
    for expected, (behaviour, fields) in cases.items():
        fake(behaviour)
        outcome = fuzzing.judge(fuzzing.Case("run", expected, ["info", "x"], seconds=0.5, **fields))
        assert outcome.outcome == expected, (expected, outcome)
    assert cli.main is not fuzzing.main
