"""What a training result depends on, and the settings that make it bit-reproducible.

A seed pins a run only if every operation of the training step gives the same bits for the
same inputs. Bisected on torch 2.13.0+cpu at 2 threads (issue 15; every parameter,
gradient and logit compared after each step of two runs): the first difference was always
the gradient of the embedding matrix ``W_E`` in step 0, nothing else. Its forward is the
gather ``W_E[tokens]`` (the fused path and TransformerLens' ``Embed`` alike), whose backward
is ``index_put_(..., accumulate=True)``; at more than one thread torch's CPU kernel adds the
rows of the gradient in parallel with atomic adds, in whatever order the threads get there,
so rows that share a token are summed in a different order each run (~1e-9), and the step's
AdamW update carries the difference into every weight from step 1 on. The matmuls (MKL),
scaled-dot-product attention, the loss, AdamW's foreach kernels and the eval were
bit-identical at a fixed thread count.

Under ``torch.use_deterministic_algorithms(True)`` that kernel runs serially, which is the
kernel a one-thread run already uses, so one-thread runs keep their bits. The mode also
NaN-fills every new tensor (``torch.utils.deterministic.fill_uninitialized_memory``), which
cost a whole training run ~10% (profiled: ~230 extra ``fill_`` calls per step); no kernel
of the step reads memory it did not write (the bits equal a one-thread run's, which does
not fill), so training turns the fill off. The remaining cost is within the noise
(benchmarks/README.md). Training turns the mode on for its own duration
(:func:`deterministic_algorithms`) and puts the caller's settings back afterwards.

On CUDA deterministic mode also needs cuBLAS' workspace pinned (``CUBLAS_WORKSPACE_CONFIG``),
read when torch first creates a cuBLAS handle: :func:`prepare_process` sets it, and the CLI
and the sweep workers call it before torch starts. A process that started CUDA without it
(a notebook) trains without deterministic mode, says so in one warning, and records it.

What a result depends on (thread count, device, torch / TransformerLens / CUDA versions,
deterministic mode) is :func:`environment`; the trainer writes it into every checkpoint
sidecar and ``complete.json``, and warns when a resume changes any of it. Importing this
module imports neither torch nor TransformerLens (``repeatlens info`` reads these records).
"""

from __future__ import annotations

import contextlib
import os
import platform
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from repeatlens.errors import ConfigError, first_line

__all__ = [
    "ReproducibilityWarning",
    "prepare_process",
    "deterministic_algorithms",
    "environment",
    "environment_changes",
    "warn_if_changed",
    "describe",
    "run_environment_lines",
]

#: The variable cuBLAS reads for its workspace, and the two settings torch accepts as deterministic.
CUBLAS_VAR = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")

#: Fields of :func:`environment` that bit-identity is promised for; a change in any voids it.
PINNED = ("threads", "device", "device_name", "cpu_capability", "torch", "transformer_lens", "cuda", "deterministic")


class ReproducibilityWarning(UserWarning):
    """A result is not promised bit-identical (a resume on another thread count or device ...)."""


def prepare_process() -> None:
    """Pin cuBLAS' workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``) unless the user chose one.

    Call before torch starts CUDA (the CLI and the sweep workers do). Harmless without CUDA.
    """
    os.environ.setdefault(CUBLAS_VAR, CUBLAS_DETERMINISTIC[0])


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: str) -> Iterator[bool]:
    """Run the block under ``torch.use_deterministic_algorithms(enabled)``; restore the caller's mode after.

    Yields whether deterministic mode is on in the block: False when ``enabled`` is False, or
    on CUDA when CUDA was started before ``CUBLAS_WORKSPACE_CONFIG`` was set (then one
    :class:`ReproducibilityWarning` says so).

    Raises:
        ConfigError: an operation of the block has no deterministic implementation on this
            device (names it, and ``train.deterministic: false`` as the way out).
    """
    import torch

    import torch.utils.deterministic as det

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              det.fill_uninitialized_memory)
    if enabled and device.startswith("cuda") and os.environ.get(CUBLAS_VAR) not in CUBLAS_DETERMINISTIC:
        if torch.cuda.is_initialized():
            warnings.warn(
                f"CUDA was started before {CUBLAS_VAR} was set, so this run trains without deterministic mode and is not "
                f"bit-reproducible; set {CUBLAS_VAR}={CUBLAS_DETERMINISTIC[0]} before importing torch (the CLI does)",
                ReproducibilityWarning,
                stacklevel=3,
            )
            enabled = False
        else:
            prepare_process()
    torch.use_deterministic_algorithms(enabled)
    det.fill_uninitialized_memory = False  # NaN-filling every new tensor cost ~6% of a step; no kernel here reads unset memory
    try:
        yield enabled
    except RuntimeError as e:
        msg = str(e)
        if enabled and "deterministic" in msg:
            op = first_line(msg.split(", but you set")[0])
            raise ConfigError(
                f"train.deterministic = true: {op} on {device}; set train.deterministic: false to train without the "
                f"bit-reproducibility promise"
            ) from None
        raise
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        det.fill_uninitialized_memory = before[2]


def environment(device: str) -> dict[str, Any]:
    """What a training result depends on, beyond its config and seed (JSON-able).

    ``threads`` is torch's intra-op thread count now; ``deterministic`` whether
    ``torch.use_deterministic_algorithms`` is on now (so call it inside
    :func:`deterministic_algorithms`).
    """
    import importlib.metadata as md

    import torch

    try:
        tl = md.version("transformer-lens")
    except md.PackageNotFoundError:
        tl = "unknown"
    cuda = device.startswith("cuda")
    return {
        "threads": torch.get_num_threads(),
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if cuda else _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformer_lens": tl,
        "cuda": torch.version.cuda if cuda else None,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cublas_workspace_config": os.environ.get(CUBLAS_VAR) if cuda else None,
        "python": platform.python_version(),
    }


def _cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment_changes(old: Optional[Mapping[str, Any]], new: Mapping[str, Any]) -> list[str]:
    """The :data:`PINNED` fields that differ, as ``"threads 1 -> 2"``; [] when ``old`` is None (not recorded)."""
    if not old:
        return []
    return [f"{k} {old.get(k)} -> {new.get(k)}" for k in PINNED if k in old and old.get(k) != new.get(k)]


def warn_if_changed(old: Optional[Mapping[str, Any]], new: Mapping[str, Any], what: str) -> list[str]:
    """One :class:`ReproducibilityWarning` when ``new`` differs from ``old`` in a pinned field.

    ``what`` names the earlier record, e.g. ``"runs/x: resuming from step 40"``. Returns the changes.
    """
    changes = environment_changes(old, new)
    if changes:
        warnings.warn(
            f"{what} with {', '.join(changes)}; the result is not promised bit-identical to an uninterrupted run",
            ReproducibilityWarning,
            stacklevel=3,
        )
    return changes


def describe(env: Mapping[str, Any]) -> str:
    """One line: ``cpu (AMD EPYC, AVX512), 2 torch threads, torch 2.13.0+cpu, TransformerLens 3.9.0, deterministic``."""
    where = f"{env.get('device')} ({env.get('device_name')}" + (f", {env['cpu_capability']})" if env.get("cpu_capability") else ")")
    cuda = f", CUDA {env['cuda']}" if env.get("cuda") else ""
    mode = "deterministic" if env.get("deterministic") else "NOT deterministic"
    threads = env.get("threads")
    return (
        f"{where}, {threads} torch thread{'s' if threads != 1 else ''}, torch {env.get('torch')}{cuda}, "
        f"TransformerLens {env.get('transformer_lens')}, {mode}"
    )


def run_environment_lines(complete: Optional[Mapping[str, Any]], sidecars: list[Mapping[str, Any]]) -> list[str]:
    """``repeatlens info``'s lines: the environment of the run (or its last checkpoint) and any change between checkpoints.

    Args:
        complete: ``complete.json`` of the run, or None while it is unfinished.
        sidecars: the checkpoints' sidecars in step order.
    """
    recorded = [(s["step"], s["environment"]) for s in sidecars if s.get("environment")]
    final = (complete or {}).get("environment") or (recorded[-1][1] if recorded else None)
    if final is None:
        return ["environment not recorded (written before repeatlens recorded it)"]
    lines = [f"environment {describe(final)}"]
    for (_, a), (step, b) in zip(recorded, recorded[1:]):
        changes = environment_changes(a, b)
        if changes:
            lines.append(f"            changed at step {step} ({', '.join(changes)}): not promised bit-identical to an uninterrupted run")
    return lines
