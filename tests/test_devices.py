"""--device auto picks CUDA, then MPS, then the CPU; unknown or absent devices are one line."""

from __future__ import annotations

import pytest
import torch

from repeatlens.cli import main
from repeatlens.devices import resolve_device
from repeatlens.errors import ConfigError


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_order(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == expected


def test_explicit_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^--device 'cuda:1': CUDA is not available on this machine; expected auto or cpu$"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match=r"^--device 'mps': the MPS backend is not available"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match=r"^train.device 'gpu': not a torch device .*expected auto, cpu, cuda, cuda:N or mps$"):
        resolve_device("gpu", where="train.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ConfigError, match="this machine has 1 CUDA device"):
        resolve_device("cuda:3")


def test_score_device_is_checked_first(tmp_path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["score", str(tmp_path), "--device", "tpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device 'tpu': not a torch device")
