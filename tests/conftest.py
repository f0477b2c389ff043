"""Shared test set-up: offline, a private tokenizer cache, one thread, the session's trained runs
(the factories live in :mod:`tests.factories`)."""

from __future__ import annotations

import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from repeatlens.determinism import prepare_process  # noqa: E402

prepare_process()  # cuBLAS' workspace pinned before any test starts CUDA (pytest -m cuda trains deterministically)

from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models train fastest on one thread, and far faster than on two when other processes
# share the cores (measured 20-40x per step under contention on a 2-core machine).
torch.set_num_threads(1)

from repeatlens.config import RunConfig, config_from_dict, merge  # noqa: E402,F401 (tests import merge from here)
from tests.factories import INDUCTION_RUN, TINY_MIXED, TINY_SYNTHETIC, tiny_config  # noqa: E402,F401 (re-exported: tests import them from here)

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA device: skipped without one (``pytest -m cuda`` runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["REPEATLENS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection fails the test (offline code paths only)."""
    import socket

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return tiny_config()


def shared_run(tmp_path_factory: pytest.TempPathFactory, name: str, cfg: dict[str, Any]):
    """The run of ``cfg`` trained once per test session, under ``pytest -n`` (pytest-xdist) once
    for all workers: the first worker to take the lock in the session's shared temporary root
    trains it, the others wait and read it. Tests only read it (those that damage a run work on
    a copy)."""
    from repeatlens.checkpoints import RunDir
    from repeatlens.io import file_lock
    from repeatlens.train import train

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # every worker's basetemp sits in this session's one folder
    folder = root / f"shared-{name}"
    with file_lock(root / f"shared-{name}.lock"):
        if not (folder / "run").exists() or not RunDir(folder / "run").is_complete():
            shutil.rmtree(folder, ignore_errors=True)
            train(config_from_dict(cfg, where=name), folder / "run")
    return RunDir(folder / "run")


@pytest.fixture(scope="session")
def induction_run(tmp_path_factory: pytest.TempPathFactory):
    """A run trained (once per session, ~1 min on 2 cores) until induction heads form."""
    return shared_run(tmp_path_factory, "INDUCTION_RUN", INDUCTION_RUN)


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory):
    """A complete TINY_MIXED run (every kind of file a run directory holds), trained once per session;
    tests that damage it work on a copy."""
    return shared_run(tmp_path_factory, "TINY_MIXED", TINY_MIXED)
