"""Weight-only scores: OV copying and composition between heads (no forward pass).

Weights and LayerNorm. Scores read the model's unprocessed TransformerLens weights and
fold the *linear* part of each LayerNorm into the weights that read through it, as
TransformerLens' ``fold_ln`` + ``center_writing_weights``/``center_unembed`` processing
would: a weight ``W`` (``[d_model, n]``) read through a LayerNorm with gain ``w`` becomes
``C diag(w) W`` with ``C = I - 11^T/d_model`` the centring projection (``LN``: centre and
gain; ``LNPre``: centre; ``RMS``: gain; ``RMSPre``/none: nothing). The per-token ``1/sigma``
scale and the biases are ignored: the copying score is invariant to a global positive
scale, and the composition scores to any positive scale of either factor. So for head
``h`` of layer ``l``:

* ``W_V' = C diag(w_ln1[l]) W_V[l, h]`` (and likewise ``W_Q'``, ``W_K'``),
* ``W_U' = C diag(w_ln_final) W_U``.

Two layouts put a norm elsewhere, and the same linear part is folded where it acts:

* **post-norm blocks** (OLMo-2, :func:`repeatlens.model.is_post_norm`): ``ln1`` normalises
  the attention *output* before it joins the residual stream, so the heads read the raw
  residual (``W_Q, W_K, W_V`` unfolded) and ``W_O' = W_O diag(w_ln1) C`` (``C`` only for LN);
* **an embedding LayerNorm** (BLOOM's ``post_embedding_ln``): ``W_E' = W_E C diag(w_embed_ln)``.

The full OV circuit of a head is read along the direct path ``W_E W_V' W_O W_U'``
(token embedding straight into the head, head output straight to the unembedding), as in
Elhage et al. 2021, for heads of every layer. Q- and K-composition read ``W_Q W_K^T``
as it stands: with rotary embeddings the position-dependent rotation between them is
left out (the OV scores are unaffected).
"""

from __future__ import annotations

import weakref
from typing import Literal, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from repeatlens.model import HookedTransformer
from repeatlens.results.metric_facts import MetricFacts
from repeatlens.scores.registry import register

__all__ = [
    "folded_read",
    "head_weights",
    "ov_eigenvalues",
    "ov_copying_score",
    "copying_ov",
    "copying_top1",
    "copying_top1_se",
    "top1_copying_share",
    "top1_copying_estimate",
    "top1_sample",
    "top1_standard_error",
    "folded_write",
    "composition_matrix",
    "composition_scores",
    "random_composition_baseline",
    "k_composition",
    "q_composition",
    "v_composition",
]

CompKind = Literal["K", "Q", "V"]

# Elements of one [rows, columns] tile of a head's OV logits in copying_top1 (2 MiB of float32:
# it stays in the CPU's cache, where a [heads, rows, vocab] block went through memory twice).
TOP1_CHUNK_ELEMENTS = 1 << 19
#: Vocabulary columns per tile in copying_top1 (a running first argmax across tiles).
TOP1_TILE_COLUMNS = 2048
#: copying_top1 reads every token up to this vocabulary size, a seeded sample above it.
TOP1_EXACT_MAX_VOCAB = 4096
#: Tokens sampled above :data:`TOP1_EXACT_MAX_VOCAB` (standard error <= 0.022).
TOP1_SAMPLE_TOKENS = 512
TOP1_SEED = 0


def folded_read(W: Float[Tensor, "... d_model n"], ln: Optional[torch.nn.Module], normalization: Optional[str]) -> Float[Tensor, "... d_model n"]:
    """Fold the linear part of LayerNorm ``ln`` into a weight that reads through it.

    Args:
        W: weight reading the residual stream (its ``d_model`` axis second to last).
        ln: the LayerNorm module (``w`` is its gain, absent for ``*Pre`` variants).
        normalization: TransformerLens' ``normalization_type`` (LN, LNPre, RMS, RMSPre, None).

    Returns:
        ``C diag(w) W`` (``C`` the centring projection for LN/LNPre).
    """
    if normalization in ("LN", "RMS") and ln is not None and hasattr(ln, "w"):
        W = ln.w.detach()[:, None].to(W.dtype) * W
    if normalization in ("LN", "LNPre"):
        W = W - W.mean(dim=-2, keepdim=True)
    return W


def folded_write(W: Float[Tensor, "... n d_model"], ln: Optional[torch.nn.Module], normalization: Optional[str]) -> Float[Tensor, "... n d_model"]:
    """Fold the linear part of LayerNorm ``ln`` into a weight whose output it normalises.

    Returns:
        ``W C diag(w)`` (``C`` the centring projection for LN/LNPre, ``w`` the gain for LN/RMS).
    """
    if normalization in ("LN", "LNPre"):
        W = W - W.mean(dim=-1, keepdim=True)
    if normalization in ("LN", "RMS") and ln is not None and hasattr(ln, "w"):
        W = W * ln.w.detach().to(W.dtype)
    return W


_HEAD_WEIGHTS_MEMO: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, dict[str, Tensor]]]" = weakref.WeakKeyDictionary()


def head_weights(model: HookedTransformer) -> dict[str, Tensor]:
    """The model's weights in float64 with LayerNorm gains/centring folded in.

    Computed once per model (and weights) and shared by every weight score: at a GPT-2
    vocabulary the float64 ``W_E`` and ``W_U`` are most of the work. Read-only: the tensors
    are shared between callers.

    Returns:
        ``W_E [d_vocab, d_model]`` (folded with an embedding LayerNorm, if any), ``W_U
        [d_model, d_vocab]`` (folded with ``ln_final``), and per layer ``W_Q, W_K, W_V
        [layer, head, d_model, d_head]`` (folded with that layer's ``ln1``) and ``W_O
        [layer, head, d_head, d_model]`` (folded with ``ln1`` instead in post-norm blocks).
    """
    from repeatlens.scores import reference

    if reference.active():  # as before issue 23: computed again for every weight score
        return _head_weights(model)
    key = _weights_key(model)
    hit = _HEAD_WEIGHTS_MEMO.get(model)
    if hit is not None and hit[0] == key:
        return dict(hit[1])
    res = _head_weights(model)
    _HEAD_WEIGHTS_MEMO[model] = (key, res)
    return dict(res)


def _head_weights(model: HookedTransformer) -> dict[str, Tensor]:
    from repeatlens.model import is_post_norm

    cfg = model.cfg
    norm = cfg.normalization_type
    post = is_post_norm(cfg)
    dt = torch.float64
    out: dict[str, list[Tensor]] = {"W_Q": [], "W_K": [], "W_V": [], "W_O": []}
    for block in model.blocks:
        attn = block.attn
        ln1 = getattr(block, "ln1", None)
        for name in ("W_Q", "W_K", "W_V"):
            W = getattr(attn, name).detach().to(dt)
            out[name].append(W if post else folded_read(W, ln1, norm))
        W_O = attn.W_O.detach().to(dt)
        out["W_O"].append(folded_write(W_O, ln1, norm) if post else W_O)
    res = {k: torch.stack(v) for k, v in out.items()}
    res["W_E"] = model.W_E.detach().to(dt)
    if getattr(cfg, "post_embedding_ln", False):
        res["W_E"] = folded_write(res["W_E"], getattr(model.embed, "ln", None), "LN")
    res["W_U"] = folded_read(model.W_U.detach().to(dt), getattr(model, "ln_final", None), norm)
    return res


# ------------------------------------------------------------------------------ OV copying


def ov_eigenvalues(
    W_E: Float[Tensor, "d_vocab d_model"],
    W_V: Float[Tensor, "... d_model d_head"],
    W_O: Float[Tensor, "... d_head d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
) -> Tensor:
    """Nonzero eigenvalues of the full OV circuit ``W_E W_V W_O W_U``, in d_head space.

    The vocab x vocab matrix ``(W_E W_V)(W_O W_U)`` has rank <= d_head and the same nonzero
    eigenvalues as the d_head x d_head product ``(W_O W_U)(W_E W_V) = W_O (W_U W_E) W_V``
    (``eig(AB)`` and ``eig(BA)`` agree away from 0), so no vocab x vocab matrix is ever
    formed. Leading dimensions of ``W_V``/``W_O`` (layer, head) broadcast.

    Returns:
        Complex eigenvalues ``[..., d_head]``.
    """
    G = W_U.double() @ W_E.double()  # [d_model, d_model], one contraction over the vocabulary
    M = W_O.double() @ G @ W_V.double()  # [..., d_head, d_head]
    return torch.linalg.eigvals(M)


def ov_copying_score(
    W_E: Float[Tensor, "d_vocab d_model"],
    W_V: Float[Tensor, "... d_model d_head"],
    W_O: Float[Tensor, "... d_head d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
) -> Float[Tensor, "..."]:
    """OV copying score ``sum_i Re(lambda_i) / sum_i |lambda_i|`` in [-1, 1].

    ``lambda`` are the eigenvalues of the full OV circuit ``W_E W_V W_O W_U`` (computed in
    d_head space, see :func:`ov_eigenvalues`). 1: the head copies the tokens it attends to
    (positive eigenvalues); -1: it suppresses them. Elhage et al. 2021, "A Mathematical
    Framework for Transformer Circuits" (detecting copying with eigenvalues). 0 for a
    head with an all-zero circuit.
    """
    lam = ov_eigenvalues(W_E, W_V, W_O, W_U)
    den = lam.abs().sum(-1)
    return torch.where(den > 0, lam.real.sum(-1) / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(den))


@register("copying_ov", kind="weights", per_head=True,
          facts=MetricFacts("OV copying score", "eigenvalues, −1…1", range=(-1.0, 1.0), higher_is_better=True))
def copying_ov(model: HookedTransformer) -> Float[Tensor, "layer head"]:
    """OV copying score of every head: ``sum Re(lambda) / sum |lambda|`` of the full OV
    circuit ``W_E W_V' W_O W_U'`` (LayerNorm folded as in the module docstring).

    Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"; used to show
    repeated data damages copying by Hernandez et al. 2022, "Scaling Laws and
    Interpretability of Learning from Repeated Data".
    """
    w = head_weights(model)
    return ov_copying_score(w["W_E"], w["W_V"], w["W_O"], w["W_U"]).float()


def top1_copying_share(
    W_E: Float[Tensor, "d_vocab d_model"],
    W_V: Float[Tensor, "head d_model d_head"],
    W_O: Float[Tensor, "head d_head d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    chunk_elements: int = TOP1_CHUNK_ELEMENTS,
    tokens: Optional[Int[Tensor, "n"]] = None,
) -> Float[Tensor, "head"]:
    """Share of tokens ``t`` whose row of ``W_E W_V W_O W_U`` peaks on column ``t``.

    ``share_h = mean_t [argmax_c (W_E W_V^h W_O^h W_U)[t, c] = t]`` over every token, or over
    ``tokens`` when given. Each row is ``(W_E[t] W_V)(W_O W_U)``: ``W_O W_U`` (``[head,
    d_head, vocab]``) is formed once, then each head's rows in tiles of at most
    ``chunk_elements`` logits (:data:`TOP1_TILE_COLUMNS` columns wide, a running first
    argmax across the tiles), so no vocab x vocab matrix exists. Cost per head: ``d_head *
    d_model * vocab`` for ``W_O W_U`` plus ``n * d_head * vocab`` for ``n`` rows.
    """
    from repeatlens.scores import reference

    if reference.active():
        return reference.top1_copying_share(W_E, W_V, W_O, W_U, tokens)
    H, V = W_V.shape[0], W_E.shape[0]
    rows = torch.arange(V, device=W_E.device) if tokens is None else tokens.to(W_E.device)
    X = W_E[rows].float() @ W_V.float()  # [head, n, d_head]
    Yt = (W_O.float() @ W_U.float()).transpose(1, 2).contiguous()  # [head, vocab, d_head]
    cols = max(1, min(V, chunk_elements, TOP1_TILE_COLUMNS))
    step = max(1, chunk_elements // cols)
    hits = torch.zeros(H, dtype=torch.long)
    for h in range(H):
        for start in range(0, rows.numel(), step):
            x = X[h, start : start + step]
            best = torch.full((x.shape[0],), -torch.inf, device=x.device)
            arg = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            for v0 in range(0, V, cols):
                z = torch.nn.functional.linear(x, Yt[h, v0 : v0 + cols])
                top = z.amax(-1)
                better = top > best  # strictly: the first maximum wins, as argmax
                if better.any():  # the argmax only of the rows whose maximum moved (fewer with every tile)
                    arg[better] = z[better].argmax(-1) + v0
                    best = torch.where(better, top, best)
            hits[h] += int((arg == rows[start : start + x.shape[0]]).sum())
    return hits.double() / max(1, rows.numel())


def top1_sample(d_vocab: int, exact_max_vocab: int = TOP1_EXACT_MAX_VOCAB, n: int = TOP1_SAMPLE_TOKENS, seed: int = TOP1_SEED) -> Optional[Int[Tensor, "n"]]:
    """The tokens :func:`copying_top1` reads: None (every token) when ``d_vocab <=
    exact_max_vocab``, else ``n`` distinct ids drawn uniformly with a private generator
    seeded ``seed`` (the same ids for every checkpoint of a vocabulary)."""
    if d_vocab <= exact_max_vocab or n >= d_vocab:
        return None
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(d_vocab, generator=g)[:n].sort().values


def top1_standard_error(share: Tensor, n: int, d_vocab: int) -> Tensor:
    """Standard error of a top-1 share estimated on ``n`` of ``d_vocab`` tokens drawn without
    replacement: ``sqrt(p (1 - p) / n * (V - n) / (V - 1))`` with ``p = (hits + 1/2) / (n + 1)``.

    The finite-population factor makes it exactly 0 when every token was read (``n = V``:
    the share is exact). ``p`` is the share pulled half a token toward 1/2 so that a sampled
    estimate never reports 0 even when every sampled token agreed (hits 0 or n), and an SE of
    0 therefore always means "exact".
    """
    if n >= d_vocab:
        return torch.zeros_like(share)
    p = (share * n + 0.5) / (n + 1)
    return (p * (1 - p) / n * (d_vocab - n) / (d_vocab - 1)).sqrt()


_TOP1_MEMO: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, Tensor, Tensor]]" = weakref.WeakKeyDictionary()


def _weights_key(model: torch.nn.Module) -> tuple:
    """Changes whenever any parameter is replaced or modified in place."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def top1_copying_estimate(model: HookedTransformer) -> tuple[Float[Tensor, "layer head"], Float[Tensor, "layer head"]]:
    """``(share, standard error)`` of every head's top-1 copying, as :func:`copying_top1`
    defines them; computed once per model (and weights), shared by its two metrics."""
    key = _weights_key(model)
    hit = _TOP1_MEMO.get(model)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    w = head_weights(model)
    V = int(w["W_E"].shape[0])
    tokens = top1_sample(V)
    n = V if tokens is None else int(tokens.numel())
    share = torch.stack(
        [top1_copying_share(w["W_E"], w["W_V"][layer], w["W_O"][layer], w["W_U"], tokens=tokens) for layer in range(w["W_V"].shape[0])]
    )
    se = top1_standard_error(share, n, V)
    _TOP1_MEMO[model] = (key, share.float(), se.float())
    return share.float(), se.float()


@register("copying_top1", kind="weights", per_head=True, version=2,
          facts=MetricFacts("OV copying top-1 rate", range=(0.0, 1.0), higher_is_better=True))
def copying_top1(model: HookedTransformer) -> Float[Tensor, "layer head"]:
    """Share of tokens each head's OV circuit maps most strongly to themselves.

    For head ``h``: ``mean_t [argmax_c (W_E W_V' W_O W_U')[t, c] = t]`` (LayerNorm folded as
    in the module docstring). Chance is ``1/d_vocab``. Elhage et al. 2021, "A Mathematical
    Framework for Transformer Circuits" (copying heads); Hernandez et al. 2022 (repeated
    data and copying).

    **Exact** (every token ``t``) when ``d_vocab <= TOP1_EXACT_MAX_VOCAB`` (4096);
    **estimated** above it, on ``TOP1_SAMPLE_TOKENS`` (512) distinct tokens drawn with seed
    ``TOP1_SEED`` (:func:`top1_sample`; the same tokens for every checkpoint of a vocabulary),
    and the metric ``copying_top1_se`` holds the estimate's standard error (0 exactly when
    the value is exact, :func:`top1_standard_error`). Cost per head: ``d_head * vocab *
    (d_model + n)`` for ``n`` tokens read; never a vocab x vocab matrix.
    """
    return top1_copying_estimate(model)[0]


@register("copying_top1_se", kind="weights", per_head=True,
          facts=MetricFacts("standard error of the OV copying top-1 rate", range=(0.0, 0.5), level=False))
def copying_top1_se(model: HookedTransformer) -> Float[Tensor, "layer head"]:
    """Standard error of :func:`copying_top1` for each head: 0 when ``copying_top1`` is exact
    (``d_vocab <= 4096``), else ``sqrt(p (1 - p) / n * (V - n) / (V - 1))`` for its sample of
    ``n = 512`` of the ``V`` tokens (:func:`top1_standard_error`). Elhage et al. 2021 (the
    score it qualifies).
    """
    return top1_copying_estimate(model)[1]


# ----------------------------------------------------------------------------- composition


def _factor_fro2(A1: Tensor, A2: Tensor) -> Tensor:
    """``||A1 A2||_F^2`` for ``A1 [..., d, r]``, ``A2 [..., r, d]`` via r x r products."""
    return ((A1.mT @ A1) * (A2 @ A2.mT)).sum(dim=(-2, -1))


def composition_scores(A1: Tensor, A2: Tensor, B1: Tensor, B2: Tensor) -> Tensor:
    """``||A B||_F / (||A||_F ||B||_F)`` for low-rank ``A = A1 A2``, ``B = B1 B2``.

    ``A1, B1 [..., d_model, r]``, ``A2, B2 [..., r, d_model]``; leading dimensions
    broadcast. Computed through r x r matrices: with ``C = A2 B1``,
    ``||A1 C B2||_F^2 = tr(C^T (A1^T A1) C (B2 B2^T))``.
    """
    C = A2 @ B1
    num = ((C.mT @ (A1.mT @ A1) @ C) * (B2 @ B2.mT)).sum(dim=(-2, -1))
    return (num.clamp_min(0) / (_factor_fro2(A1, A2) * _factor_fro2(B1, B2)).clamp_min(1e-300)).sqrt()


def _later_factors(w: dict[str, Tensor], layer: int, kind: CompKind) -> tuple[Tensor, Tensor]:
    """Factors ``(B1, B2)`` of the later head's matrix that reads the earlier output.

    Row-vector convention (``x W_V W_O``, scores ``x_q W_Q W_K^T x_k^T``): the earlier
    head's output ``x W_OV`` composes as ``W_OV W_QK`` (Q), ``W_OV W_QK^T`` (K) and
    ``W_OV W_OV'`` (V), matching Elhage et al. 2021 in their column convention.
    """
    if kind == "Q":
        return w["W_Q"][layer], w["W_K"][layer].mT
    if kind == "K":
        return w["W_K"][layer], w["W_Q"][layer].mT
    return w["W_V"][layer], w["W_O"][layer]


def random_composition_baseline(d_model: int, d_head: int, n_draws: int = 8, seed: int = 0) -> float:
    """Mean composition score of random Gaussian factors with the model's shapes.

    ``n_draws`` independent draws of ``W_V, W_O`` for the earlier head and the two factors
    of the later head, seeded, averaged. The score is scale-invariant, so the entries'
    variance does not matter. K-, Q- and V-composition share it: all three multiply two
    rank-``d_head`` products of ``[d_model, d_head]`` and ``[d_head, d_model]`` factors.
    """
    g = torch.Generator().manual_seed(seed)
    shapes = [(n_draws, d_model, d_head), (n_draws, d_head, d_model)] * 2
    A1, A2, B1, B2 = (torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes)
    return float(composition_scores(A1, A2, B1, B2).mean())


def composition_matrix(model: HookedTransformer, kind: CompKind, *, baseline: bool = True) -> Float[Tensor, "layer_pair head_later head_earlier"]:
    """Composition scores between every head of layer ``l+1`` and every head of layer ``l``.

    ``score = ||W_OV^{e} M^{l}||_F / (||W_OV^{e}||_F ||M^{l}||_F)`` with ``M`` the later
    head's ``W_QK`` (Q-composition), ``W_QK^T`` (K) or ``W_OV`` (V), minus the same score for
    random Gaussian matrices of the same shapes (``baseline=True``). Elhage et al. 2021,
    "A Mathematical Framework for Transformer Circuits" (K-, Q- and V-composition).
    MLPs between the layers are ignored.

    Returns:
        ``[n_layers - 1, n_heads, n_heads]``: entry ``[l, i, j]`` composes head ``i`` of
        layer ``l + 1`` with head ``j`` of layer ``l``.
    """
    if kind not in ("K", "Q", "V"):
        raise ValueError(f"composition kind {kind!r}; expected 'K', 'Q' or 'V'")
    w = head_weights(model)
    n_layers = w["W_V"].shape[0]
    out = []
    for layer in range(1, n_layers):
        A1, A2 = w["W_V"][layer - 1][None], w["W_O"][layer - 1][None]  # [1, earlier, ...]
        B1, B2 = (t[:, None] for t in _later_factors(w, layer, kind))  # [later, 1, ...]
        out.append(composition_scores(A1, A2, B1, B2))
    cfg = model.cfg
    res = torch.stack(out) if out else torch.zeros(0, cfg.n_heads, cfg.n_heads, dtype=torch.float64, device=w["W_V"].device)
    if baseline:
        res = res - random_composition_baseline(cfg.d_model, cfg.d_head)
    return res.float()


def _max_over_earlier(model: HookedTransformer, kind: CompKind) -> Float[Tensor, "layer head"]:
    comp = composition_matrix(model, kind)
    first = torch.full((1, model.cfg.n_heads), float("nan"), device=comp.device)  # layer 0 has no earlier head
    return torch.cat([first, comp.amax(dim=-1)]) if comp.numel() else first


@register("k_composition", kind="weights", per_head=True, facts=MetricFacts("K-composition", "above random baseline"))
def k_composition(model: HookedTransformer) -> Float[Tensor, "layer head"]:
    """K-composition of each head of layer ``l >= 1``: the MAX over heads of layer ``l-1``
    of ``||W_OV^{l-1} W_QK^{l T}||_F / (||W_OV|| ||W_QK||)`` minus a random-matrix baseline.

    Layer-0 heads have no row. See :func:`composition_matrix` for every pair. Elhage et al.
    2021, "A Mathematical Framework for Transformer Circuits" (induction heads K-compose
    with previous-token heads).
    """
    return _max_over_earlier(model, "K")


@register("q_composition", kind="weights", per_head=True, facts=MetricFacts("Q-composition", "above random baseline"))
def q_composition(model: HookedTransformer) -> Float[Tensor, "layer head"]:
    """Q-composition of each head of layer ``l >= 1``: the MAX over heads of layer ``l-1``
    of ``||W_OV^{l-1} W_QK^{l}||_F / (||W_OV|| ||W_QK||)`` minus a random-matrix baseline.

    Layer-0 heads have no row. Elhage et al. 2021, "A Mathematical Framework for
    Transformer Circuits".
    """
    return _max_over_earlier(model, "Q")


@register("v_composition", kind="weights", per_head=True, facts=MetricFacts("V-composition", "above random baseline"))
def v_composition(model: HookedTransformer) -> Float[Tensor, "layer head"]:
    """V-composition of each head of layer ``l >= 1``: the MAX over heads of layer ``l-1``
    of ``||W_OV^{l-1} W_OV^{l}||_F / (||W_OV^{l-1}|| ||W_OV^{l}||)`` minus a random-matrix
    baseline.

    Layer-0 heads have no row. Elhage et al. 2021, "A Mathematical Framework for
    Transformer Circuits".
    """
    return _max_over_earlier(model, "V")
