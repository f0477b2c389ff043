"""errors.damaged_file_errors: what a damaged weights or config file raises, measured, and
that an except around such a read lets our own bugs through."""

from __future__ import annotations

import json
import shutil
import warnings
import sys
from pathlib import Path

import pytest
import torch

from repeatlens.errors import damaged_file_errors
from repeatlens.foreign import load_pt
from repeatlens.model import model_from_hf_folder, read_hf_config
from tests.model.tiny_hf import save_as_bin, save_tiny


def _damaged(data: bytes, step: int) -> list[bytes]:
    """Every ``step``-th truncation of ``data`` and a byte flipped at every ``step``-th offset."""
    cuts = [data[:i] for i in range(0, len(data), step)]
    flips = [data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:] for i in range(0, len(data), step)]
    return cuts + flips


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_damaged_pt_file_raises_only_damaged_file_errors(tmp_path: Path, legacy: bool) -> None:
    good = tmp_path / "good.pt"
    torch.save({"a": torch.ones(30), "b": torch.zeros(4, 4)}, good, _use_new_zipfile_serialization=not legacy)
    path = tmp_path / "x.pt"
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in _damaged(good.read_bytes(), 11):
            path.write_bytes(data)
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except damaged_file_errors() as e:
                seen.add(type(e).__name__)
            except Exception as e:  # noqa: BLE001 - the measurement: anything else fails the test
                pytest.fail(f"torch.load of a damaged file raised {type(e).__name__}, not in damaged_file_errors(): {e}")
    assert len(seen) >= 2  # the damage reached more than one reader path


def test_a_damaged_hf_folder_raises_only_damaged_file_errors(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "st", "gpt_neox")
    save_as_bin(model, tmp_path / "bin")
    for folder, name in ((tmp_path / "st", "model.safetensors"), (tmp_path / "bin", "pytorch_model.bin")):
        data = (folder / name).read_bytes()
        for damaged in _damaged(data, max(1, len(data) // 6))[1:]:
            shutil.rmtree(tmp_path / "x", ignore_errors=True)
            shutil.copytree(folder, tmp_path / "x")
            (tmp_path / "x" / name).write_bytes(damaged)
            try:
                model_from_hf_folder(tmp_path / "x")
            except ValueError:  # what model_from_hf_folder turns a damaged_file_errors() into
                pass
    good = json.loads((tmp_path / "st" / "config.json").read_text())
    for text in ("", "{", "[1, 2]", json.dumps({**good, "model_type": "nope"}), json.dumps({**good, "num_hidden_layers": "two"})):
        (tmp_path / "st" / "config.json").write_text(text)
        with pytest.raises(ValueError, match="unreadable config.json"):
            read_hf_config(tmp_path / "st")


def test_a_bug_under_a_read_surfaces_as_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TypeError inside the guarded reads is a bug, not "unreadable weights"."""
    import transformers

    save_tiny(tmp_path / "st", "gpt_neox")
    torch.save({"a": torch.ones(2)}, tmp_path / "w.pt")

    def bug(*args, **kwargs):
        raise TypeError("a bug of ours")

    monkeypatch.setattr(torch, "load", bug)
    with pytest.raises(TypeError, match="a bug of ours"):
        load_pt(tmp_path / "w.pt")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", bug)
    with pytest.raises(TypeError, match="a bug of ours"):
        model_from_hf_folder(tmp_path / "st")
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", bug)
    with pytest.raises(TypeError, match="a bug of ours"):
        read_hf_config(tmp_path / "st")


@pytest.mark.parametrize("module, call, expected", [
    ("datasketch", lambda: __import__("repeatlens.corpus_audit.near", fromlist=["x"])._require_datasketch(),
     "the 'datasketch' package is needed for near-duplicate search: pip install 'repeatlens[audit]' (or pass --no-near)"),
    ("pydivsufsort", lambda: __import__("repeatlens.corpus_audit.spans", fromlist=["x"])._require_pydivsufsort(),
     "the 'pydivsufsort' package is needed for repeated spans: pip install 'repeatlens[audit]' (or pass --no-spans)"),
    ("kaleido", lambda: __import__("repeatlens.plots.export", fromlist=["x"])._kaleido(),
     "the 'kaleido' package is needed for PNG/PDF/SVG export: pip install 'repeatlens[export]'"),
])
def test_a_missing_optional_package_is_one_line_naming_it_and_its_extra(monkeypatch: pytest.MonkeyPatch, module: str, call, expected: str) -> None:
    from repeatlens.errors import RepeatlensError

    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed: its import raises ImportError
    with pytest.raises(RepeatlensError) as err:
        call()
    assert str(err.value) == expected
