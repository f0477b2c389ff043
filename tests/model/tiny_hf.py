"""Tiny randomly initialised ``transformers`` models, one per architecture the adapter converts.

d_model 32 (Gemma: 32 with head_dim 8), 2 layers, vocabulary 96-128, context 64: each
builds and saves in well under a second. Norm gains and biases are drawn away from 1 and
0 (transformers initialises them to exactly that), so a conversion that dropped or
misplaced one would change the logits; weight matrices are redrawn at 1.5/sqrt(fan-in)
(transformers' std 0.02 leaves attention almost uniform, which would hide a wrong mask,
window or rotary convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

VOCAB = 96
N_CTX = 160
WINDOW = 128  # local windows: >= the probe rows (101 tokens), < the test sequences (144)


def _configs() -> dict[str, Callable[[], Any]]:
    import transformers as T

    common_llama = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=N_CTX, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return {
        "gpt2": lambda: T.GPT2Config(vocab_size=VOCAB, n_positions=N_CTX, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0),
        "gpt_neo": lambda: T.GPTNeoConfig(vocab_size=VOCAB, max_position_embeddings=N_CTX, hidden_size=32, num_layers=2, num_heads=4,
                                          attention_types=[[["global", "local"], 1]], window_size=WINDOW, bos_token_id=0, eos_token_id=0),
        "gptj": lambda: T.GPTJConfig(vocab_size=VOCAB, n_positions=N_CTX, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, bos_token_id=0, eos_token_id=0),
        "opt": lambda: T.OPTConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, ffn_dim=48, num_attention_heads=4,
                                   max_position_embeddings=N_CTX, word_embed_proj_dim=32, pad_token_id=1, bos_token_id=2, eos_token_id=2),
        "gpt_neox": lambda: T.GPTNeoXConfig(vocab_size=VOCAB, max_position_embeddings=N_CTX, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=48, rotary_pct=0.25, bos_token_id=0, eos_token_id=0),
        "llama": lambda: T.LlamaConfig(**common_llama, num_key_value_heads=2),
        "mistral": lambda: T.MistralConfig(**common_llama, num_key_value_heads=2, sliding_window=WINDOW),
        "qwen2": lambda: T.Qwen2Config(**common_llama, num_key_value_heads=2),
        "qwen3": lambda: T.Qwen3Config(**common_llama, num_key_value_heads=2, head_dim=8),
        "gemma": lambda: T.GemmaConfig(**common_llama, num_key_value_heads=1, head_dim=8),
        "phi": lambda: T.PhiConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                   max_position_embeddings=N_CTX, partial_rotary_factor=0.5, bos_token_id=1, eos_token_id=2),
        "phi3": lambda: T.Phi3Config(**{**common_llama, "pad_token_id": 3}, num_key_value_heads=2),
        "olmo": lambda: T.OlmoConfig(**{**common_llama, "num_key_value_heads": 4}, clip_qkv=1.5),
        "olmo2": lambda: T.Olmo2Config(**{**common_llama, "num_key_value_heads": 4}),
        "bloom": lambda: T.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2),
    }


ARCHS = ["gpt2", "gpt_neo", "gptj", "opt", "gpt_neox", "llama", "mistral", "qwen2", "qwen3",
         "gemma", "phi", "phi3", "olmo", "olmo2", "bloom"]


def hf_config(arch: str, **over: Any):
    cfg = _configs()[arch]()
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def hf_model(arch: str, seed: int = 0, **over: Any):
    """A tiny random ``transformers`` causal LM of ``arch``, in eval mode."""
    import transformers as T

    attn = over.pop("attn_implementation", None)
    torch.manual_seed(seed)
    model = T.AutoModelForCausalLM.from_config(hf_config(arch, **over), **({"attn_implementation": attn} if attn else {}))
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln" in name or name.endswith("bias")):
                p.add_(0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5 * 1.5)  # O(1) attention logits
    return model.eval()


def save_tiny(folder: Path, arch: str, seed: int = 0, **over: Any):
    """``save_pretrained`` a tiny model into ``folder``; returns the model."""
    model = hf_model(arch, seed, **over)
    model.save_pretrained(folder)
    return model


def save_as_bin(model, folder: Path) -> None:
    """Save the way transformers 4 did for Pythia's revisions: ``config.json`` plus a pickled
    ``pytorch_model.bin`` state dict (transformers 5 writes only safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
