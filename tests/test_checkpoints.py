"""repeatlens.checkpoints: run directories, the typed manifest, reading a run without torch."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repeatlens.checkpoints import RunDir
from repeatlens.errors import CheckpointError
from repeatlens.checkpoints.manifest import Manifest
from repeatlens.train import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    return train(tiny_config(), tmp_path_factory.mktemp("ckpt") / "run", progress=False)


def test_the_manifest_is_typed_and_names_its_quantities_as_the_config_does(run: RunDir) -> None:
    man = run.manifest()
    assert isinstance(man, Manifest) and man.format_version == 3
    assert set(man.files) == {"config.yaml", "data/rows.npy", "data/schedule.npy", "data/is_synthetic.npy"}  # no tokenizer: synthetic
    for rel, record in man.files.items():
        data = (run.path / rel).read_bytes()
        assert (record.sha256, record.bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    cfg = run.config()
    assert (man.total_tokens, man.repeat_count, man.requested_fraction) == (cfg.mixture.total_tokens, 4, 0.25)
    assert man.repeated_tokens == man.n_repeated * man.seq_len and man.n_params == cfg.model.n_params(man.vocab_size)
    raw = json.loads(run.manifest_path.read_text())
    assert {"total_tokens", "repeated_fraction", "repeat_count", "repeated_tokens"} <= set(raw) and "E" not in raw
    assert raw["seeds"] == {"seed": 0, "model_init": 0, "pool": [0, 0], "test_synthetic": [0, 1], "train_synthetic": [0, 2],
                            "schedule": [0, 3], "train_rows": [0, 4], "test_rows": [0, 5]}


def test_a_manifest_written_before_format_2_reads_the_same(run: RunDir, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(run.path, old)
    raw = json.loads((old / "manifest.json").read_text())
    for new, short in (("total_tokens", "D"), ("repeated_fraction", "f"), ("repeat_count", "E"), ("repeated_tokens", "S")):
        raw[short] = raw.pop(new)
    for key in ("n_params", "n_params_nonembedding", "synthetic_ids"):
        raw.pop(key)
    raw["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(raw))
    a, b = run.manifest(), RunDir(old).manifest()
    assert (b.total_tokens, b.repeated_fraction, b.repeat_count, b.repeated_tokens) == (a.total_tokens, a.repeated_fraction, a.repeat_count, a.repeated_tokens)
    from repeatlens.results.store import run_coordinates

    assert run_coordinates(RunDir(old)) == run_coordinates(run)  # parameter counts from the config's shape


def test_a_broken_manifest_is_one_line_naming_the_file_and_field(run: RunDir, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(run.path, bad)
    raw = json.loads((bad / "manifest.json").read_text())
    raw["repeat_count"] = "many"
    (bad / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"manifest\.json: field 'repeat_count': Input should be a valid integer") as e:
        RunDir(bad).manifest()
    assert "\n" not in str(e.value)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable manifest"):
        RunDir(bad).manifest()


def test_info_reads_a_run_without_torch_or_transformer_lens(run: RunDir) -> None:
    code = ("import sys; from repeatlens.cli import run_summary; "
            f"text = run_summary({str(run.path)!r}); assert 'E=4' in text, text; "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ what checkpoints keep


def test_weights_at_every_checkpoint_and_training_state_at_the_last_two(run: RunDir) -> None:
    """train.keep_optimizer: last (the default): resume needs the latest training state, and
    verify --replay of the last interval the one before it; the others are dropped."""
    ckpts = run.checkpoints()
    assert [c.step for c in ckpts] == [0, 1, 3, 5, 10, 12]
    assert all(c.weights_path.is_file() for c in ckpts)
    kept = [c.step for c in ckpts if c.sidecar.get("train_state")]
    assert kept == [10, 12] and sorted(p.name for p in run.ckpt_dir.glob("*.train.safetensors")) == [
        "step_0000010.train.safetensors", "step_0000012.train.safetensors"]
    for c in ckpts[:4]:
        assert c.sidecar["train_state_dropped"]["why"] == "train.keep_optimizer: last (keeps 2)"


def test_keep_optimizer_all_keeps_every_training_state_and_costs_the_bytes_it_says(run: RunDir, tmp_path: Path) -> None:
    every = train(tiny_config(train={"keep_optimizer": "all"}), tmp_path / "all", progress=False)
    assert all(c.sidecar.get("train_state") for c in every.checkpoints())
    size = lambda r: sum(p.stat().st_size for p in r.ckpt_dir.iterdir())  # noqa: E731
    dropped = sum((every.ckpt_dir / f"step_{s:07d}.train.safetensors").stat().st_size for s in (0, 1, 3, 5))
    sidecars = sum((every.ckpt_dir / n).stat().st_size - (run.ckpt_dir / n).stat().st_size for n in (f"step_{s:07d}.json" for s in (0, 1, 3, 5)))
    assert size(every) - size(run) == dropped + sidecars and dropped > 2 * sidecars  # the four states and their records, nothing else
    # the same weights either way: what is kept changes no bit of the training
    for a, b in zip(run.checkpoints(), every.checkpoints()):
        assert a.load_state_dict().keys() == b.load_state_dict().keys()
        assert all((a.load_state_dict()[k] == b.load_state_dict()[k]).all() for k in a.load_state_dict())


def test_prune_cleans_a_state_file_left_by_a_crash(run: RunDir, tmp_path: Path) -> None:
    from repeatlens.checkpoints import prune_train_states

    copy = RunDir(shutil.copytree(run.path, tmp_path / "copy"))
    orphan = copy.ckpt_dir / "step_0000005.train.safetensors"
    orphan.write_bytes(b"left between the sidecar rewrite and the unlink")
    assert prune_train_states(copy, keep=2) == [] and not orphan.exists()


def test_resume_restores_the_cuda_rng_state_it_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    """rng.cuda was saved but never restored: restore_rng puts it back where CUDA is available."""
    import torch

    from repeatlens.checkpoints import restore_rng

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state: calls.append(state))
    cpu, cuda = torch.get_rng_state(), torch.arange(16, dtype=torch.uint8)
    torch.manual_seed(123)
    restore_rng({"rng.torch": cpu, "rng.cuda": cuda})
    assert torch.equal(torch.get_rng_state(), cpu) and len(calls) == 1 and torch.equal(calls[0], cuda)
    restore_rng({"rng.torch": cpu})  # a checkpoint written without CUDA
    assert len(calls) == 1


# ----------------------------------------------------- run directories written before issue 22

#: A run that main's code wrote (commit 2e45871) before pools were stored by reference and
#: special ids recorded: data/pool.npy, every checkpoint with its training state, BOS 0.
#: Made with: seed 0, Shakespeare BPE 300 mixed half with the synthetic source (16 ids),
#: seq_len 32, D = 3072, f = 0.25, E = 4, attn2-tiny at d_model 8, checkpoints 0, 6, 12.
OLD_RUN = Path(__file__).parent / "fixtures" / "run_before_issue22"


def test_a_run_written_before_the_pool_was_referenced_reads_as_before(tmp_path: Path) -> None:
    import numpy as np

    from repeatlens.analysis import run_probe_source

    old = RunDir(shutil.copytree(OLD_RUN, tmp_path / "old"))
    assert old.manifest().special_ids is None and not old.rows_path.exists()
    rows = np.load(old.pool_path)
    assert np.array_equal(np.asarray(old.pool()), rows) and (rows[:, 0] == 0).all()
    special = old.special_ids()
    assert (special.bos, special.special) == (0, (0,))  # BOS 0, as it was trained, and the tokenizer's one special id
    source = run_probe_source(old)
    assert source.bos == 0 and source.exclude == (0,) and source.synthetic_ids == (1, 17)
    model = old.load_model()
    assert int(model.to_tokens("to be")[0, 0]) == 0
    assert old.is_synthetic().sum() == old.manifest().n_synthetic


@pytest.mark.cuda
def test_restore_rng_puts_back_the_cuda_generator() -> None:
    import torch

    from repeatlens.checkpoints import restore_rng

    torch.cuda.manual_seed(1)
    saved = {"rng.torch": torch.get_rng_state(), "rng.cuda": torch.cuda.get_rng_state()}
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed(2)
    restore_rng(saved)
    assert torch.equal(torch.rand(4, device="cuda"), expected)
