"""repeatlens.config: the torch-free config layer (presets, parameter counts, one-line errors)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from repeatlens.config import PRESETS, CheckpointSchedule, ModelConfig, config_from_dict
from repeatlens.errors import ConfigError


def test_importing_the_config_layer_loads_neither_torch_nor_transformer_lens() -> None:
    code = "import sys, repeatlens.config, repeatlens.checkpoints, repeatlens.results.schema"
    out = subprocess.run([sys.executable, "-c", code + "; print(sorted(m for m in ('torch', 'transformer_lens', 'transformers') if m in sys.modules))"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("preset", sorted(p for p, shape in PRESETS.items() if shape["d_model"] <= 256))  # CPU presets
@pytest.mark.parametrize("positional, normalization, act", [("standard", "LN", "gelu"), ("rotary", "RMS", "solu_ln"),
                                                            ("shortformer", "LNPre", "solu_ln"), ("rotary", None, "relu")])
def test_parameter_counts_from_the_shape_match_the_built_model(preset: str, positional: str, normalization, act: str) -> None:
    from repeatlens.model import build_model, n_params

    cfg = ModelConfig(preset=preset, positional_embedding=positional, normalization=normalization, act_fn=act)
    model = build_model(cfg, d_vocab=100)
    assert cfg.n_params(100) == n_params(model)
    embedding = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] in ("embed", "pos_embed", "unembed"))
    assert cfg.n_params(100, embeddings=False) == n_params(model) - embedding


def test_presets_fill_what_is_left_out_and_unknown_ones_are_one_line() -> None:
    cfg = ModelConfig(preset="rot2-d128", n_ctx=64)
    assert (cfg.d_model, cfg.d_head, cfg.n_ctx, cfg.positional_embedding) == (128, 32, 64, "rotary")
    with pytest.raises(ConfigError, match=r"^c: field 'model': unknown preset 'nope'; expected one of attn1-tiny"):
        config_from_dict({"mixture": {"total_tokens": 1000}, "model": {"preset": "nope"}}, where="c")
    with pytest.raises(ConfigError, match="model.d_vocab: not set"):
        ModelConfig().n_params()


def test_checkpoint_schedule_is_data() -> None:
    """steps = {0} + 12 log-spaced + every T/8 + T, as declared."""
    assert CheckpointSchedule(log_count=0, every=5).steps(12) == [0, 5, 10, 12]
    logs = {round(10 ** (3 * i / 11)) for i in range(12)}  # 1 ... 1000, 12 points evenly spaced in log10
    assert CheckpointSchedule().steps(1000) == sorted({0, 1000} | logs | set(range(125, 1001, 125)))
