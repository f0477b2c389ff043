"""Shared test set-up: offline, a private tokenizer cache, small factories."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from typing import Any  # noqa: E402

import pytest  # noqa: E402

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


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["REPEATLENS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return tiny_config()


#: Settings that form induction heads in a 2-layer attention-only model within ~1.5M tokens:
#: synthetic sequences whose repeat length (3-14) and position vary, a small vocabulary.
INDUCTION_RUN: dict[str, Any] = {
    "seed": 0,
    "data": {"source": "synthetic", "seq_len": 32, "test_sequences": 32,
             "synthetic": {"vocab_size": 64, "min_len": 3, "max_len": 14, "max_gap": 0}},
    "mixture": {"total_tokens": 32 * 32 * 1500},
    "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_head": 16, "n_ctx": 32},
    "train": {"batch_size": 32, "lr": 3e-3, "warmup_steps": 50, "weight_decay": 0.01, "decay": "constant",
              "betas": [0.9, 0.999], "grad_clip": None, "progress": False, "checkpoints": {"log_count": 4, "every": 500}},
}


@pytest.fixture(scope="session")
def induction_run(tmp_path_factory: pytest.TempPathFactory):
    """A run trained (once per session, ~1 min on 2 cores) until induction heads form."""
    from repeatlens.train import train

    return train(config_from_dict(INDUCTION_RUN, where="INDUCTION_RUN"), tmp_path_factory.mktemp("induction") / "run")
