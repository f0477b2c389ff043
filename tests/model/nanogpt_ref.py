"""karpathy/nanoGPT's ``model.py`` GPT (MIT licence), reduced to what a checkpoint holds.

The module and parameter names are nanoGPT's exactly (``transformer.wte``, ``transformer.h.{i}.attn.c_attn``,
``lm_head`` tied to ``wte`` ...), so ``state_dict()`` is what nanoGPT's ``train.py`` saves
under ``ckpt["model"]``; the forward pass is nanoGPT's, returning logits at every position
(nanoGPT returns only the last one when no targets are given). An independent reference
for the TransformerLens conversion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = 96
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 32
    dropout: float = 0.0
    bias: bool = True


class LayerNorm(nn.Module):
    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head, self.n_embd = config.n_head, config.n_embd
        # nanoGPT without flash attention keeps the causal mask as a buffer named "bias"
        self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size)).view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT does

    def forward(self, idx):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def nanogpt_checkpoint(seed: int = 0, iter_num: int = 1000, compiled: bool = False, **config) -> tuple[GPT, dict]:
    """A random nanoGPT and the dict ``train.py`` saves as ``ckpt.pt`` for it.

    Norm gains and biases are drawn away from 1 and 0 and matrices at 1.5/sqrt(fan-in), so
    a conversion that dropped one would show in the logits. ``compiled``: keys carry the
    ``_orig_mod.`` prefix a ``torch.compile``d model's state dict has.
    """
    cfg = GPTConfig(**config)
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5 * 1.5)
    state = model.state_dict()
    if compiled:
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model_args = {k: v for k, v in asdict(cfg).items() if k != "dropout"} | {"dropout": cfg.dropout}
    ckpt = {
        "model": state,
        "optimizer": opt.state_dict(),
        "model_args": model_args,
        "iter_num": iter_num,
        "best_val_loss": torch.tensor(2.5),
        "config": {"dataset": "shakespeare_char", "batch_size": 12, "learning_rate": 1e-3, "compile": compiled},
    }
    return model, ckpt
