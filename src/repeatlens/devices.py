"""Which torch device a command runs on: ``auto`` picks CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

from repeatlens.errors import ConfigError, first_line

__all__ = ["resolve_device"]


def resolve_device(name: str, where: str = "--device") -> str:
    """``name`` as a torch device string; ``"auto"``: ``cuda`` when CUDA is available, else
    ``mps`` when the MPS backend is, else ``cpu``.

    Raises:
        ConfigError: one line naming ``where``: an unknown device, or one this machine lacks.
    """
    import torch

    name = str(name).strip()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"{where} {name!r}: not a torch device ({first_line(e)}); expected auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{where} {name!r}: CUDA is not available on this machine; expected auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{where} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{where} {name!r}: the MPS backend is not available on this machine; expected auto or cpu")
    return name
