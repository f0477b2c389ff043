"""``repeatlens demo`` end to end in its tiny mode (REPEATLENS_TINY=1): train, score, targets, report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd


def test_tiny_demo_trains_scores_prints_targets_and_writes_the_report(tmp_path: Path) -> None:
    env = dict(os.environ, REPEATLENS_TINY="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "repeatlens.cli", "demo", "--out", str(out), "--quiet"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["control", "f0.25_E1", "f0.25_E16", "f0.25_E4"]
    for t in ("T1", "T2", "T3", "T4"):
        assert re.search(rf"^{t} (held|did not hold|not identified|cannot judge): ", text, re.M), text
    assert "natural-text test loss" in text and "probe synthetic:L14:B16:s0" in text  # T1/T2 on the text, T2 names its probe
    # what was trained on, measured from the runs' data/ (the tiny demo's largest E repeats one or two sequences)
    data = re.search(r"^Data \(measured from each run's data/\): the control's training tokens are 75\.0% synthetic; at f > 0 "
                     r"the repeated subset is [\d.]+%(-[\d.]+%)? synthetic and the training tokens [\d.]+%(-[\d.]+%)?\. Losses on "
                     r"held-out natural text; scores: the best head on probe synthetic:L14:B16:s0, induction_uniform on probe "
                     r"uniform:L14:B16:s0\.$", text, re.M)
    assert data, text
    scores = pd.read_parquet(out / "scores.parquet")
    assert set(scores.probe) == {"synthetic", "uniform", ""}  # the probes the demo scores, and the rows that read none
    assert {"test_text", "test_synthetic"} <= set(pd.read_parquet(out / "metrics.parquet").split)
    report = Path(re.search(r"^Report: (.+)$", text, re.M).group(1))
    assert report == (out / "report.html").resolve() and report.stat().st_size > 100_000
    # the final table has one row per run with a finite test loss
    rows = [line for line in text.splitlines() if re.match(r"^\s*(control|f0\.25_E\d+)\s", line)]
    assert len(rows) == 4 and all(re.search(r"\d\.\d{4}", r) for r in rows)
    assert "runs in" in text and "Run directories" in text
