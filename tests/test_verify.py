"""``repeatlens verify``: hashes against the records, and replays compared bit for bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from repeatlens.checkpoints import RunDir
from repeatlens.io import sha256_file
from repeatlens.train import train
from tests.conftest import tiny_config
from tests.test_cli import _run

# tiny_config(): 12 steps, checkpoints at 0, 1, 3, 5, 10, 12


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """Every checkpoint keeps its training state, so that any step can be replayed."""
    return train(tiny_config(train={"keep_optimizer": "all"}), tmp_path_factory.mktemp("verify") / "run")


@pytest.fixture
def copy(trained: RunDir, tmp_path: Path) -> RunDir:
    """A copy of the trained run to damage."""
    return RunDir(shutil.copytree(trained.path, tmp_path / trained.path.name))


def _flip_byte(path: Path, offset: int = -9) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_sound_run_verifies_clean_and_replays_bit_identical(trained: RunDir, capsys) -> None:
    assert [c.step for c in trained.checkpoints()] == [0, 1, 3, 5, 10, 12]
    code, out, err = _run(["verify", str(trained.path), "--replay", "10", "--replay", "12"], capsys)
    assert code == 0, out + err
    assert out.splitlines() == [
        f"verified {trained.path}: config, manifest and data files, 6 checkpoint(s), replay of step 10 bit-identical, "
        "replay of step 12 bit-identical: no findings"
    ]


@pytest.mark.parametrize(
    "target, problem",
    [
        ("checkpoints/step_0000005.safetensors", "sha256 does not match its sidecar (corrupted or truncated file)"),
        ("checkpoints/step_0000010.train.safetensors", "sha256 does not match its sidecar's train_state (corrupted or truncated file)"),
        ("data/rows.npy", "sha256 does not match manifest.json (changed after the run was written)"),
        ("data/is_synthetic.npy", "sha256 does not match manifest.json (changed after the run was written)"),
    ],
)
def test_a_flipped_byte_is_one_finding_naming_the_file(copy: RunDir, capsys, target: str, problem: str) -> None:
    _flip_byte(copy.path / target)
    code, out, _ = _run(["verify", str(copy.path)], capsys)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{copy.path / target}: {problem}"), lines
    assert lines[1].endswith(": 1 finding(s)")


def test_a_reordered_schedule_is_found(copy: RunDir, capsys) -> None:
    schedule = np.load(copy.schedule_path)
    i = int(np.flatnonzero(schedule != schedule[0])[0])
    schedule[[0, i]] = schedule[[i, 0]]  # the same rows, two swapped in order
    np.save(copy.schedule_path, schedule)
    code, out, _ = _run(["verify", str(copy.path)], capsys)
    assert code == 1
    assert out.splitlines()[0] == f"{copy.schedule_path}: sha256 does not match manifest.json (changed after the run was written)"
    assert len(out.splitlines()) == 2


def test_a_missing_checkpoint_is_found(copy: RunDir, capsys) -> None:
    for f in copy.ckpt_dir.glob("step_0000005.*"):
        f.unlink()
    code, out, _ = _run(["verify", str(copy.path)], capsys)
    assert code == 1
    assert out.splitlines()[0] == f"{copy.ckpt_dir / 'step_0000005.json'}: missing: manifest.json declares a checkpoint at step 5"


def test_a_replay_mismatch_is_found_though_every_hash_agrees(copy: RunDir, capsys) -> None:
    """Injected: step 10's saved weights nudged by one float32 ulp in one element, sidecar re-hashed to match."""
    info = copy.checkpoint(10)
    tensors = load_file(str(info.weights_path))
    name = "blocks.0.attn.W_Q"
    before = tensors[name].flatten()[3].clone()
    flat = tensors[name].flatten()
    flat[3] = torch.nextafter(flat[3], torch.tensor(float("inf")))
    tensors[name] = flat.reshape(tensors[name].shape)
    ulp = float(flat[3].double() - before.double())
    assert ulp > 0
    save_file(tensors, str(info.weights_path))
    sidecar = copy.ckpt_dir / "step_0000010.json"
    meta = json.loads(sidecar.read_text())
    meta["sha256"] = sha256_file(info.weights_path)
    sidecar.write_text(json.dumps(meta))

    code, out, _ = _run(["verify", str(copy.path)], capsys)  # the hashes alone cannot see it
    assert code == 0, out
    code, out, _ = _run(["verify", str(copy.path), "--replay", "10"], capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"replay step 10 from step 5: 1 of {len(tensors)} weight tensors differ (largest |diff| {ulp:.3g} in {name})"
    assert len(lines) == 2 and lines[1].endswith("replay of step 10: 1 finding(s)")


def test_replays_that_cannot_be_carried_out_are_one_line_errors(trained: RunDir, tmp_path: Path, capsys) -> None:
    code, _, err = _run(["verify", str(trained.path), "--replay", "7"], capsys)
    assert code == 2 and err.strip() == f"error: {trained.path}: --replay 7: no checkpoint at step 7; steps saved: 0, 1, 3, 5, 10, 12"
    code, _, err = _run(["verify", str(trained.path), "--replay", "0"], capsys)
    assert code == 2 and err.strip() == f"error: {trained.path}: --replay 0: no checkpoint with training state before step 0 to replay from"
    code, _, err = _run(["verify", str(tmp_path)], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path}: not a repeatlens run directory (no config.yaml and manifest.json)"


# ------------------------------------------------------------- issue 26: what verify used to miss


def _edit_config(path: Path, section: str, key: str, value) -> None:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    cfg[section][key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _flip_header(path: Path, old: bytes, new: bytes) -> None:
    """Change the first ``old`` of a ``.npy`` header into ``new`` (one flipped bit: ``)`` 0x29 -> ``(`` 0x28)."""
    data = path.read_bytes()
    end = data.index(b"\n") + 1
    path.write_bytes(data[:end].replace(old, new, 1) + data[end:])


def _half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "target, damage, problem",
    [
        ("config.yaml", _half, "bytes, but manifest.json records"),  # parsed, with defaults filling the lost half
        ("config.yaml", lambda p: _edit_config(p, "train", "lr", 0.5), "bytes, but manifest.json records"),
        ("config.yaml", lambda p: _edit_config(p, "model", "n_heads", 4), "sha256 does not match manifest.json (changed after the run was written)"),
        ("tokenizer.json", _half, "bytes, but manifest.json records"),
        ("data/is_synthetic.npy", lambda p: np.save(p, ~np.load(p)), "sha256 does not match manifest.json (changed after the run was written)"),
        # found by the full fuzz run (benchmarks/fuzz.py) on the runs that reference their corpus: tracebacks in verify and analyze
        ("data/is_synthetic.npy", lambda p: np.save(p, np.load(p)[:-1]), "bytes, but manifest.json records"),
        ("data/rows.npy", lambda p: np.save(p, np.load(p)[:-1]), "bytes, but manifest.json records"),
        ("data/rows.npy", lambda p: _flip_header(p, b")", b"("), "sha256 does not match manifest.json"),
    ],
    ids=["config cut in half", "lr edited", "n_heads edited", "tokenizer truncated", "is_synthetic inverted", "is_synthetic a row short",
         "rows a row short", "rows header unclosed"],
)
def test_what_verify_missed_is_found_and_every_reader_refuses(mixed_run: RunDir, tmp_path: Path, capsys, target: str, damage, problem: str) -> None:
    """Issue 26, case 7: each of these verified "no findings", and info, analyze and report read the damaged run."""
    run = RunDir(shutil.copytree(mixed_run.path, tmp_path / "run"))
    damage(run.path / target)
    code, out, _ = _run(["verify", str(run.path)], capsys)
    assert code == 1
    assert out.splitlines()[0].startswith(f"{run.path / target}: ") and problem in out.splitlines()[0], out
    for argv in (["info", str(run.path)], ["analyze", str(run.path), "-m", "test_loss", "-q"], ["report", str(run.path)]):
        code, out, err = _run(argv, capsys)
        assert code == 2 and err.startswith(f"error: {run.path / target}: ") and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (run.path / "scores.parquet").exists() and not (run.path / "report.html").exists()


def test_a_run_written_before_the_manifest_recorded_every_file_still_loads_and_says_what_was_not_checked(
    mixed_run: RunDir, tmp_path: Path, capsys
) -> None:
    run = RunDir(shutil.copytree(mixed_run.path, tmp_path / "run"))
    raw = json.loads(run.manifest_path.read_text())
    raw.pop("files")
    raw["format_version"] = 2
    run.manifest_path.write_text(json.dumps(raw))
    for side in run.ckpt_dir.glob("step_*.json"):  # older sidecars recorded neither hash
        meta = json.loads(side.read_text())
        meta.pop("config_sha256"), meta.pop("manifest_sha256")
        side.write_text(json.dumps(meta))
    assert _run(["info", str(run.path)], capsys)[0] == 0
    code, out, _ = _run(["verify", str(run.path)], capsys)
    assert code == 0 and out.splitlines()[0] == (
        "not checked: config.yaml, tokenizer.json, data/is_synthetic.npy: no sha256 recorded (manifest format < 3); "
        "config.yaml checked for truncation and against manifest.json"
    ), out
    text = run.config_path.read_text()
    run.config_path.write_text(text[: text.index("\ntrain:") + 1])  # cut short at a line: still valid YAML; caught without a hash too
    code, out, _ = _run(["verify", str(run.path)], capsys)
    assert code == 1 and out.startswith(f"{run.config_path}: cut short: no train.wandb.mode, which every version writes last"), out
    shutil.copyfile(mixed_run.config_path, run.config_path)
    _edit_config(run.config_path, "model", "positional_embedding", "rotary")  # a change of shape: the parameter count differs
    code, out, _ = _run(["verify", str(run.path)], capsys)
    assert code == 1 and "model (parameter count) = " in out and "but manifest.json was written for" in out, out


def test_a_checkpoint_trained_under_another_config_or_manifest_is_found(mixed_run: RunDir, tmp_path: Path, capsys) -> None:
    run = RunDir(shutil.copytree(mixed_run.path, tmp_path / "run"))
    raw = json.loads(run.manifest_path.read_text())
    raw["corpus"]["fingerprint"] = "0" * 16  # a field nothing else cross-checks
    run.manifest_path.write_text(json.dumps(raw, indent=2))
    code, out, _ = _run(["verify", str(run.path)], capsys)
    assert code == 1 and out.splitlines()[0].startswith(f"{run.manifest_path}: differs from the manifest.json step_0000000.json was trained under"), out
    assert _run(["info", str(run.path)], capsys)[0] == 2


def test_metrics_without_a_checkpoints_test_loss_are_found(copy: RunDir, capsys) -> None:
    """The metrics table is not hashed (it grows with every checkpoint), but each saved checkpoint's test loss must be in it."""
    met = copy.metrics()
    met[met.step != 5].to_parquet(copy.metrics_path)
    code, out, _ = _run(["verify", str(copy.path)], capsys)
    assert code == 1 and out.splitlines()[0] == (
        f"{copy.metrics_path}: no test loss at checkpoint step(s) 5; every checkpoint is evaluated before it is saved"), out
def test_by_default_the_last_interval_replays_and_an_older_one_says_why_not(tmp_path: Path, capsys) -> None:
    """train.keep_optimizer: last keeps the training state at the last two checkpoints (10, 12)."""
    run = train(tiny_config(), tmp_path / "run")
    code, out, err = _run(["verify", str(run.path), "--replay", "12"], capsys)
    assert code == 0 and out.strip().endswith("replay of step 12 bit-identical: no findings"), out + err
    code, _, err = _run(["verify", str(run.path), "--replay", "10"], capsys)
    assert code == 2 and err.strip() == (
        f"error: {run.path}: --replay 10: no checkpoint with training state before step 10 to replay from (train.keep_optimizer: "
        "last keeps it at the last two checkpoints only, steps 10, 12: replay step 12, or train with train.keep_optimizer: all to "
        "replay any step)")


def test_a_run_written_before_the_pool_was_referenced_verifies(tmp_path: Path, capsys) -> None:
    """The committed run main's code wrote (tests/fixtures/run_before_issue22: data/pool.npy, no special ids)."""
    from tests.test_checkpoints import OLD_RUN

    old = RunDir(shutil.copytree(OLD_RUN, tmp_path / "old"))
    code, out, err = _run(["verify", str(old.path)], capsys)
    assert code == 0, out + err
    assert out.strip().splitlines() == [
        "not checked: config.yaml, tokenizer.json, data/is_synthetic.npy: no sha256 recorded (manifest format < 3); "
        "config.yaml checked for truncation and against manifest.json",
        f"verified {old.path}: config, manifest and data files, 3 checkpoint(s): no findings",
    ]
    _flip_byte(old.pool_path)
    code, out, _ = _run(["verify", str(old.path)], capsys)
    assert code == 1 and out.splitlines()[0].startswith(f"{old.pool_path}: sha256 does not match manifest.json pool.sha256")


def _old_layout(run: RunDir, dest: Path) -> RunDir:
    """A copy of ``run`` as runs were written before issue 22: its rows in data/pool.npy, no references, no special ids."""
    old = RunDir(shutil.copytree(run.path, dest))
    np.save(old.pool_path, np.asarray(run.pool()))
    old.rows_path.unlink()
    raw = json.loads(old.manifest_path.read_text())
    raw["pool"] = {"file": "data/pool.npy", "sha256": sha256_file(old.pool_path), "dtype": raw["pool"]["dtype"], "is_synthetic": "data/is_synthetic.npy"}
    raw["corpus"] = {k: v for k, v in raw["corpus"].items() if k != "stream"}
    raw.pop("special_ids")
    raw.pop("files"), raw.update(format_version=2)  # and, as then, no record of every file
    old.manifest_path.write_text(json.dumps(raw))
    return old


def test_a_run_in_the_old_layout_replays_bit_identically(trained: RunDir, tmp_path: Path, capsys) -> None:
    old = _old_layout(trained, tmp_path / "old")
    np.testing.assert_array_equal(np.asarray(old.pool()), np.asarray(trained.pool()))
    code, out, err = _run(["verify", str(old.path), "--replay", "5"], capsys)
    assert code == 0 and out.strip().endswith("replay of step 5 bit-identical: no findings"), out + err
