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
from repeatlens.results.schema import Manifest
from repeatlens.train import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    return train(tiny_config(), tmp_path_factory.mktemp("ckpt") / "run", progress=False)


def test_the_manifest_is_typed_and_names_its_quantities_as_the_config_does(run: RunDir) -> None:
    man = run.manifest()
    assert isinstance(man, Manifest) and man.format_version == 3
    assert set(man.files) == {"config.yaml", "data/pool.npy", "data/schedule.npy", "data/is_synthetic.npy"}  # no tokenizer: synthetic
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
