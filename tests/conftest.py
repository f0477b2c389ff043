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
