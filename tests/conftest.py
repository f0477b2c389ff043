"""Shared test set-up: offline, a private tokenizer cache, small factories."""

from __future__ import annotations

import os

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

from repeatlens.config import RunConfig, config_from_dict, merge  # noqa: E402

TINY_SYNTHETIC: dict[str, Any] = {
    "seed": 0,
    "data": {"source": "synthetic", "seq_len": 32, "test_sequences": 16, "synthetic": {"vocab_size": 64, "min_len": 3, "max_len": 8}},
    "mixture": {"total_tokens": 32 * 8 * 12, "repeated_fraction": 0.25, "repeat_count": 4},
    "model": {"preset": "attn2-tiny", "n_ctx": 32, "d_model": 16, "n_heads": 2},
    "train": {"batch_size": 8, "warmup_steps": 2, "progress": False, "eval_sequences": 8, "checkpoints": {"log_count": 3, "every": 5}},
}


def tiny_config(**sections: Any) -> RunConfig:
    """A seconds-fast RunConfig on the synthetic source; keyword sections are merged in."""
    return config_from_dict(merge(TINY_SYNTHETIC, sections), where="tiny_config")


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


#: Settings that form induction heads (layer-1 induction ~0.9, layer-0 previous-token ~0.6)
#: in a 2-layer attention-only model by ~600 steps: rotary positions, n_ctx 64, a 64-token
#: vocabulary, random segments of length 2-30 tiled 2-4 times. With n_ctx 32, segments of 4
#: or more, or learned absolute positions, models learn to copy through a shifted circuit
#: (layer 0 looking several tokens back) that scores ~0 on the induction definition.
INDUCTION_RUN: dict[str, Any] = {
    "seed": 0,
    "data": {"source": "synthetic", "seq_len": 64, "test_sequences": 32,
             "synthetic": {"vocab_size": 64, "min_len": 2, "max_len": 30, "max_gap": 0, "max_prefix": 8}},
    "mixture": {"total_tokens": 64 * 32 * 800},
    "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_head": 16, "n_ctx": 64, "positional_embedding": "rotary"},
    "train": {"batch_size": 32, "lr": 3e-3, "warmup_steps": 50, "weight_decay": 0.01, "decay": "constant",
              "betas": [0.9, 0.999], "grad_clip": None, "progress": False, "checkpoints": {"log_count": 4, "every": 200}},
}


@pytest.fixture(scope="session")
def induction_run(tmp_path_factory: pytest.TempPathFactory):
    """A run trained (once per session, ~1 min on 2 cores) until induction heads form."""
    from repeatlens.train import train

    return train(config_from_dict(INDUCTION_RUN, where="INDUCTION_RUN"), tmp_path_factory.mktemp("induction") / "run")


#: A seconds-fast run mixing the bundled corpus (its own BPE tokenizer.json) with the synthetic source.
TINY_MIXED: dict[str, Any] = merge(TINY_SYNTHETIC, {
    "data": {"source": "shakespeare", "vocab_size": 300, "synthetic_fraction": 0.5, "synthetic": {"token_ids": 20}},
    "mixture": {"total_tokens": 32 * 8 * 6},
})


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory):
    """A complete TINY_MIXED run (every kind of file a run directory holds), trained once per session;
    tests that damage it work on a copy."""
    from repeatlens.train import train

    return train(config_from_dict(TINY_MIXED, where="TINY_MIXED"), tmp_path_factory.mktemp("mixed") / "run")
