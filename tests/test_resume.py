"""Exact resume after SIGKILL: a real training process is killed at several points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from repeatlens.checkpoints import RunDir
from tests.conftest import TINY_SYNTHETIC, config_from_dict, merge

CFG = merge(TINY_SYNTHETIC, {"mixture": {"total_tokens": 32 * 8 * 120}, "train": {"checkpoints": {"log_count": 4, "every": 20}}})


def _cmd(cfg: Path, out: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("repeatlens")), "train", str(cfg), "--out", str(out), "-q"]


@pytest.mark.timeout(900)
def test_sigkill_at_several_points_then_resume_is_bit_identical(tmp_path: Path) -> None:
    from repeatlens.train import train

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(CFG))
    full = train(config_from_dict(CFG), tmp_path / "full")
    out = tmp_path / "killed"
    run = RunDir(out)
    # the same thread count as this process (tests/conftest.py pins one): bit-identity is
    # promised for the same machine and settings; float reductions differ across thread counts
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    kill_points = [
        lambda: run.pool_path.exists(),  # during set-up
        lambda: len(run.checkpoints()) >= 3 if run.ckpt_dir.exists() else False,  # early, log-spaced checkpoints
        lambda: any(c.step >= 40 for c in run.checkpoints()) if run.ckpt_dir.exists() else False,  # mid-run
        lambda: any(c.step >= 100 for c in run.checkpoints()) if run.ckpt_dir.exists() else False,
    ]
    kills = 0
    for point in kill_points:
        proc = subprocess.Popen(_cmd(cfg_file, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_until(point, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate()
        assert not run.is_complete() or kills < len(kill_points)
    assert kills >= 2, "the training process finished before it could be killed"
    done = subprocess.run(_cmd(cfg_file, out), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert run.is_complete()
    a, b = full.checkpoints()[-1].load_state_dict(), run.checkpoints()[-1].load_state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [c.step for c in full.checkpoints()] == [c.step for c in run.checkpoints()]
    assert full.metrics().to_dict("records") == run.metrics().to_dict("records")
    assert not list(out.rglob("*.tmp")), "a temporary file was left looking like data"


def _wait_until(pred, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        try:
            if pred():
                return
        except Exception:  # a sidecar being renamed into place while we read the folder
            pass
        time.sleep(0.01)
