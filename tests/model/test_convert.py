"""Conversion into HookedTransformer, checked against the source model's own logits.

Tolerance: logits equal to atol = rtol = 1e-4. Both sides compute in float32 with
different operation orders (fused QKV vs per-head einsums, rotary by halves in place vs
concatenated); the largest difference observed over these tiny models is ~2e-5 at logits
of magnitude ~7, while a wrong mapping (rotary pairing, window, parallel block, clip, rope
base) moves logits by O(1) (``test_a_wrong_mapping_is_caught``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repeatlens.model import hooked_spec, model_from_hf_folder, model_from_nanogpt, read_hf_config
from repeatlens.model import convert as convert_mod
from tests.model.nanogpt_ref import nanogpt_checkpoint
from tests.model.tiny_hf import ARCHS, VOCAB, save_tiny

TOL = dict(atol=1e-4, rtol=1e-4)


def tokens(n: int = 144, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_matches_transformers(tmp_path: Path, arch: str, no_network) -> None:
    hf = save_tiny(tmp_path / "step0", arch, seed=1)
    tl = model_from_hf_folder(tmp_path / "step0")
    assert tl.cfg.original_architecture == type(hf).__name__
    x = tokens()  # 144 tokens: past the 128-token local windows of gpt_neo / mistral
    with torch.no_grad():
        torch.testing.assert_close(tl(x), hf(x).logits, **TOL)


@pytest.mark.parametrize(
    "arch, field, value",
    [
        ("gpt_neo", "attn_types", ["global", "global"]),  # the local layer's window
        ("mistral", "use_local_attn", False),  # the sliding window
        ("gptj", "rotary_adjacent_pairs", False),  # GPT-J rotates adjacent pairs
        ("gpt_neox", "rotary_dim", 8),  # rotary_pct 0.25 of d_head 8 is 2
        ("phi", "parallel_attn_mlp", False),
        ("olmo", "clip_qkv", None),
        ("llama", "rotary_base", 500.0),
    ],
)
def test_a_wrong_mapping_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, field: str, value) -> None:
    """The logit comparison above is sharp enough to catch each of these mistakes."""
    hf = save_tiny(tmp_path / "m", arch, seed=1)

    def wrong(cfg):
        spec = hooked_spec(cfg)
        spec.kwargs[field] = value
        return spec

    monkeypatch.setattr(convert_mod, "hooked_spec", wrong)
    tl = model_from_hf_folder(tmp_path / "m")
    with torch.no_grad():
        assert (tl(tokens()) - hf(tokens()).logits).abs().max() > 0.1


def test_grouped_query_heads_are_expanded_per_query_head(tmp_path: Path) -> None:
    save_tiny(tmp_path / "m", "llama", seed=1)  # 4 query heads sharing 2 key/value heads
    tl = model_from_hf_folder(tmp_path / "m")
    attn = tl.blocks[0].attn
    assert tl.cfg.n_key_value_heads == 2 and attn.W_K.shape == attn.W_Q.shape == (4, 32, 8)
    assert torch.equal(attn.W_V[0], attn.W_V[1]) and torch.equal(attn.W_V[2], attn.W_V[3])
    assert not torch.equal(attn.W_V[1], attn.W_V[2])
    _, cache = tl.run_with_cache(tokens(20), names_filter=lambda n: n.endswith("hook_pattern"))
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 4, 20, 20)  # one pattern per query head


def test_window_shorter_than_the_probes_cuts_the_context(tmp_path: Path) -> None:
    hf = save_tiny(tmp_path / "m", "gpt_neo", seed=1, window_size=8)
    spec = hooked_spec(read_hf_config(tmp_path / "m"))
    assert spec.kwargs["n_ctx"] == 8 and len(spec.notes) == 1 and "window 8" in spec.notes[0]
    tl = model_from_hf_folder(tmp_path / "m")
    assert tl.cfg.n_ctx == 8 and tl.W_pos.shape[0] == 8
    x = tokens(8)
    with torch.no_grad():
        torch.testing.assert_close(tl(x), hf(x).logits, **TOL)  # inside the window, the same model


def test_config_that_disagrees_with_the_weights_is_refused(tmp_path: Path) -> None:
    import json

    save_tiny(tmp_path / "m", "gpt2", seed=1)
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "n_layer": 3}))  # transformers would randomly initialise layer 2
    with pytest.raises(ValueError, match=r"disagrees with the weights: transformer\.h\.2\..* is not in the weights") as e:
        model_from_hf_folder(tmp_path / "m")
    assert "\n" not in str(e.value)
    cfg_path.write_text(json.dumps({**cfg, "n_embd": 64}))
    with pytest.raises(ValueError, match=r"disagrees with the weights: .* is \[.*\] in the weights, \[.*\] by the config") as e:
        model_from_hf_folder(tmp_path / "m")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bias, compiled", [(True, False), (False, False), (True, True)], ids=["bias", "no-bias", "compiled"])
def test_nanogpt_matches_its_own_forward(bias: bool, compiled: bool) -> None:
    ref, ckpt = nanogpt_checkpoint(seed=2, bias=bias, compiled=compiled)
    tl = model_from_nanogpt(ckpt)
    x = tokens(64)
    with torch.no_grad():
        torch.testing.assert_close(tl(x), ref(x), **TOL)


def test_nanogpt_checkpoint_faults_are_one_line() -> None:
    _, ckpt = nanogpt_checkpoint()
    with pytest.raises(ValueError, match="not a nanoGPT checkpoint"):
        model_from_nanogpt({"model": ckpt["model"]})
    with pytest.raises(ValueError, match="model_args lacks a positive integer n_head"):
        model_from_nanogpt({**ckpt, "model_args": {**ckpt["model_args"], "n_head": "4"}})
    with pytest.raises(ValueError, match="disagree with the weights|do not match the config"):
        model_from_nanogpt({**ckpt, "model_args": {**ckpt["model_args"], "n_layer": 3}})
    with pytest.raises(ValueError, match="do not match the config: .*size mismatch"):
        model_from_nanogpt({**ckpt, "model_args": {**ckpt["model_args"], "vocab_size": 100}})
