"""Training through failures of writing: a full disk mid-checkpoint and a real short write.

The disk-full test is monkeypatched (a tiny tmpfs needs root, and ``/dev/full`` is not a
device on every machine): it raises exactly what safetensors' Rust writer raises on ENOSPC,
``SafetensorError('… (os error 28)')``, after writing part of the temporary file. The
real-filesystem test uses ``RLIMIT_FSIZE``: the kernel cuts a real write short (EFBIG, not
ENOSPC) inside safetensors' real writer. The write and lock primitives themselves are
tested in tests/test_io.py.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors import SafetensorError

import repeatlens.checkpoints.writing as ckpt_mod  # where _save_tensors looks save_file up
from repeatlens.checkpoints import RunDir, load_train_state, step_name
from repeatlens.cli import main
from repeatlens.errors import DiskFullError
from repeatlens.train import train
from tests.conftest import TINY_SYNTHETIC, config_from_dict
from tests.test_resume import assert_same_run, subprocess_env, train_argv

ENOSPC_TEXT = "Error while serializing: I/O error: No space left on device (os error 28)"


# -------------------------------------------------------------------------- checkpoints


def _cfg_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY_SYNTHETIC))
    return path


def _assert_intact(run: RunDir, steps: list[int]) -> None:
    """Exactly ``steps`` count as checkpoints, each loads sha256-checked (the training state at
    the last two: train.keep_optimizer: last), nothing else is left."""
    assert [c.step for c in run.checkpoints()] == steps
    kept = steps[-2:]
    for c in run.checkpoints():
        c.load_state_dict()  # sha256 checked against the sidecar
        if c.step in kept:
            load_train_state(c)
        else:
            assert not c.sidecar.get("train_state")
    names = {p.name for p in run.ckpt_dir.iterdir()}
    assert names == {f"{step_name(s)}{ext}" for s in steps for ext in (".safetensors", ".json")} | {
        f"{step_name(s)}.train.safetensors" for s in kept}
    assert not list(run.path.rglob("*.tmp")), "a temporary file was left behind"
    assert not run.is_complete()


def test_disk_full_during_a_checkpoint_stops_training_clearly_and_a_rerun_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Monkeypatched ENOSPC while step 10's training state is written (its weights already were)."""
    full = train(config_from_dict(TINY_SYNTHETIC), tmp_path / "full")
    cfg_file, out = _cfg_file(tmp_path), tmp_path / "run"
    real_save = ckpt_mod.save_file

    def save_file(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        if Path(filename).name.startswith(".step_0000010.train.safetensors."):
            with open(filename, "r+b") as fh:  # half of it reached the disk
                fh.truncate(os.path.getsize(filename) // 2)
            raise SafetensorError(ENOSPC_TEXT)

    monkeypatch.setattr(ckpt_mod, "save_file", save_file)
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg_file), "--out", str(out), "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {out / 'checkpoints' / 'step_0000010.train.safetensors'}: the disk is full")
    _assert_intact(RunDir(out), [0, 1, 3, 5])  # step 10's weights, written first, were removed again

    monkeypatch.undo()  # space freed: the same command resumes from step 5
    main(["train", str(cfg_file), "--out", str(out), "-q"])
    assert RunDir(out).is_complete()
    assert_same_run(full, RunDir(out))


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.timeout(300)
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_real_short_write_of_a_checkpoint_in_a_subprocess_keeps_the_earlier_ones(tmp_path: Path) -> None:
    """Real file system: the kernel refuses bytes past RLIMIT_FSIZE mid-file (EFBIG, not ENOSPC).

    The limit lies between a checkpoint's weights file and its larger training-state file,
    so the resumed process writes step 5's weights, then its training state is cut short
    inside safetensors' own writer.
    """
    cfg_file, out = _cfg_file(tmp_path), tmp_path / "run"
    run = train(config_from_dict(TINY_SYNTHETIC), out, stop_after=4)  # checkpoints 0, 1, 3
    last = run.checkpoints()[-1]
    weights, state = last.weights_path.stat().st_size, last.train_state_path.stat().st_size
    assert weights < state and max(p.stat().st_size for p in out.rglob("*") if p.is_file() and "checkpoints" not in p.parts) < weights

    proc = subprocess.run(
        train_argv(cfg_file, out), env={**subprocess_env(), "PYTHONDONTWRITEBYTECODE": "1"},  # no .pyc past the limit
        capture_output=True, text=True, timeout=240, preexec_fn=_limit_file_size((weights + state) // 2),
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"error: {out / 'checkpoints' / 'step_0000005.train.safetensors'}: could not be written (File too large); "
        "its previous version, if any, is intact"
    )
    _assert_intact(run, [0, 1, 3])

    main(["train", str(cfg_file), "--out", str(out), "-q"])  # no limit now: resumes from step 3
    assert_same_run(train(config_from_dict(TINY_SYNTHETIC), tmp_path / "full"), run)
