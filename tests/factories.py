"""The tests' factories, in one place: tiny run configurations (``tiny_config``, the run
configs the session trains) and tiny randomly initialised models (``tiny_model``).
``transformers`` models of every converted architecture are in :mod:`tests.model.tiny_hf`
(``hf_config``, ``hf_model``, ``save_tiny``); tables for the figures in
:mod:`tests.plots.plot_factories`; corpora and tokenizers in :mod:`tests.data.factories`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from repeatlens.config import RunConfig, config_from_dict, merge

if TYPE_CHECKING:  # the model factories import TransformerLens when called, not when a conftest imports this
    from repeatlens.model import HookedTransformer, ModelConfig

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


#: A seconds-fast run mixing the bundled corpus (its own BPE tokenizer.json) with the synthetic source.
TINY_MIXED: dict[str, Any] = merge(TINY_SYNTHETIC, {
    "data": {"source": "shakespeare", "vocab_size": 300, "synthetic_fraction": 0.5, "synthetic": {"token_ids": 20}},
    "mixture": {"total_tokens": 32 * 8 * 6},
})


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


def tiny_model_config(
    d_vocab: int = 64, n_ctx: int = 32, d_model: int = 64, n_heads: int = 4, n_layers: int = 2, positional: str = "standard"
) -> "ModelConfig":
    """The :class:`ModelConfig` of a tiny attention-only model (no run, no data)."""
    from repeatlens.model import ModelConfig

    return ModelConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        n_ctx=n_ctx,
        d_vocab=d_vocab,
        attn_only=True,
        positional_embedding=positional,
    )


def tiny_model(d_vocab: int = 64, n_ctx: int = 32, seed: int = 0, **kw) -> "HookedTransformer":
    """A randomly initialised tiny attention-only model."""
    from repeatlens.model import build_model

    return build_model(tiny_model_config(d_vocab, n_ctx, **kw), seed=seed).eval()
