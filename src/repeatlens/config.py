"""Typed run configuration, validated once at the boundary.

A run is fully described by one YAML file (``config.yaml`` in the run directory)::

    seed: 0
    data:  {source: shakespeare, vocab_size: 2048, seq_len: 128, synthetic_fraction: 0.5}
    mixture: {total_tokens: 2_000_000, repeated_fraction: 0.1, repeat_count: 100}
    model: {preset: attn2-small}
    train: {batch_size: 32, lr: 1.0e-3}

:func:`load_config` turns YAML (plus ``key=value`` overrides) into a :class:`RunConfig` or
raises a one-line :class:`~repeatlens.errors.ConfigError` naming the field, the value and
what was expected. Everything after this boundary trusts its inputs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from repeatlens.errors import ConfigError, os_error_message, shorten

# allow_inf_nan=False: a .nan or .inf in YAML is a one-line error, not a NaN loss at step 1
_STRICT = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

#: Largest seed: TransformerLens seeds NumPy's legacy generator with it, which takes 32 bits.
MAX_SEED = 2**32 - 1
#: Largest count of tokens, sequences or ids a config may name: 2**53, so that f·D and the
#: other products of the plan are exact in floating point and never overflow int64.
MAX_COUNT = 2**53
#: Largest BPE vocabulary: the `tokenizers` trainer aborts the process (a Rust allocation
#: failure, no exception) far above it (measured at 1e9; 1e8 trains).
MAX_BPE_VOCAB = 2**24
#: Device names a config may hold (whether this machine has the device is checked when training starts).
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _device_name(device: str) -> str:
    if not DEVICE_PATTERN.fullmatch(device):
        raise ValueError("expected auto, cpu, cuda, cuda:N or mps")
    return device


#: A torch device name as a config or sweep file may give it (:data:`DEVICE_PATTERN`).
DeviceName = Annotated[str, AfterValidator(_device_name)]


# Named shapes. CPU presets train in minutes on 2 cores; GPU presets are for a real study.
PRESETS: dict[str, dict[str, Any]] = {
    # CPU
    "attn1-tiny": dict(n_layers=1, d_model=32, n_heads=4, d_head=8, n_ctx=64, attn_only=True),
    "attn2-tiny": dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=64, attn_only=True),
    "attn2-small": dict(n_layers=2, d_model=64, n_heads=4, d_head=16, n_ctx=128, attn_only=True),
    "attn2-base": dict(n_layers=2, d_model=128, n_heads=8, d_head=16, n_ctx=256, attn_only=True),
    "mlp2-small": dict(n_layers=2, d_model=64, n_heads=4, d_head=16, n_ctx=128, attn_only=False),
    # the natural-text scaling study (analyses/repeated_data_scaling): 2 attention-only layers,
    # 4 rotary heads of d_model/4, context 128, widths 16 to 128
    **{
        f"rot2-d{d}": dict(n_layers=2, d_model=d, n_heads=4, d_head=d // 4, n_ctx=128, attn_only=True, positional_embedding="rotary")
        for d in (16, 24, 32, 48, 64, 96, 128)
    },
    # GPU
    "attn2-gpu": dict(n_layers=2, d_model=256, n_heads=8, d_head=32, n_ctx=512, attn_only=True),
    "mlp4-gpu": dict(n_layers=4, d_model=512, n_heads=8, d_head=64, n_ctx=1024, attn_only=False),
    "mlp8-gpu": dict(n_layers=8, d_model=768, n_heads=12, d_head=64, n_ctx=1024, attn_only=False),
}


class ModelConfig(BaseModel):
    """Shape and initialisation of a model, validated once, mapped onto TransformerLens.

    Either name a ``preset`` (its values fill every field you leave out) or give the
    fields. ``d_vocab`` is normally left empty: it is filled from the tokenizer/data.
    """

    model_config = _STRICT

    preset: Optional[str] = None
    n_layers: int = Field(2, ge=1)
    d_model: int = Field(64, ge=1)
    n_heads: int = Field(4, ge=1)
    d_head: int = Field(16, ge=1)
    n_ctx: int = Field(128, ge=2)
    d_vocab: Optional[int] = Field(None, ge=2)
    attn_only: bool = True
    d_mlp: Optional[int] = Field(None, ge=1, description="default 4*d_model")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu", "solu_ln"] = "gelu"
    positional_embedding: Literal["standard", "rotary", "shortformer"] = "standard"
    normalization: Optional[Literal["LN", "LNPre", "RMS", "RMSPre"]] = "LN"
    init_mode: Literal["gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"] = "gpt2"
    init_range: Optional[float] = Field(None, gt=0, le=10, description="default 0.8/sqrt(d_model) (gpt2 init); at most 10")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if not isinstance(name, str) or name not in PRESETS:
                raise ValueError(f"unknown preset {shorten(repr(name))}; expected one of {', '.join(PRESETS)}")
            return {**PRESETS[name], **data}
        return data

    @model_validator(mode="after")
    def _rotary_pairs(self) -> "ModelConfig":
        if self.positional_embedding == "rotary" and self.d_head % 2:
            raise ValueError(
                f"d_head = {self.d_head} with positional_embedding rotary: rotary embeddings turn pairs of dimensions; expected an even d_head"
            )
        return self

    def n_params(self, d_vocab: Optional[int] = None, *, embeddings: bool = True) -> int:
        """Trainable parameters of the ``HookedTransformer`` this config builds, counted
        from the shape alone (no torch; checked against the built model in the tests).

        ``embeddings=False`` leaves out the token and position embeddings and the
        unembedding (``W_E``, ``W_pos``, ``W_U``, ``b_U``): the non-embedding count N of
        Kaplan et al. 2020, which Hernandez et al. 2022 fit their scaling laws to.

        Args:
            d_vocab: vocabulary size when ``self.d_vocab`` is not set.

        >>> cfg = ModelConfig(preset="rot2-d64")
        >>> cfg.n_params(1024), cfg.n_params(1024, embeddings=False)
        (165760, 33664)
        """
        vocab = d_vocab if d_vocab is not None else self.d_vocab
        if vocab is None:
            raise ConfigError("model.d_vocab: not set and no vocabulary given to count parameters with")
        d, h, dh = self.d_model, self.n_heads, self.d_head
        norm = {"LN": 2 * d, "RMS": d}.get(self.normalization or "", 0)  # LNPre / RMSPre / None have no weights
        attn = 4 * h * d * dh + 3 * h * dh + d  # W_Q, W_K, W_V, W_O; b_Q, b_K, b_V; b_O
        layer = norm + attn
        if not self.attn_only:
            d_mlp = self.d_mlp or 4 * d
            layer += norm + 2 * d * d_mlp + d_mlp + d  # ln2, W_in, W_out, b_in, b_out
            if self.act_fn == "solu_ln" and self.normalization == "LN":
                layer += 2 * d_mlp  # the LayerNorm inside SoLU (weightless for the other norms)
        total = self.n_layers * layer + norm  # + ln_final
        if embeddings:
            total += vocab * d + d * vocab + vocab  # W_E, W_U, b_U
            if self.positional_embedding in ("standard", "shortformer"):
                total += self.n_ctx * d  # W_pos
        return int(total)


class SyntheticConfig(BaseModel):
    """Random tokens with in-context repeats of varying length and position.

    Each synthetic sequence is BOS, a random prefix of random length, then blocks: a
    random segment of length L ~ U[min_len, max_len] written ``repeats`` times in a row,
    separated by random gaps. Repeat length and position vary, so only a content-based
    induction mechanism (not a fixed positional offset) predicts the copies.
    """

    model_config = _STRICT
    min_len: int = Field(6, ge=1, le=MAX_COUNT)
    max_len: int = Field(20, ge=1, le=MAX_COUNT)
    min_repeats: int = Field(2, ge=2, le=MAX_COUNT)
    max_repeats: int = Field(4, ge=2, le=MAX_COUNT)
    max_gap: int = Field(8, ge=0, le=MAX_COUNT)
    max_prefix: Optional[int] = Field(None, ge=0, le=MAX_COUNT, description="random tokens before the first block; default seq_len//4")
    vocab_size: int = Field(512, ge=8, le=2**32, description="vocabulary when the source is synthetic only")
    token_ids: Optional[int] = Field(
        None, ge=2, le=2**32,
        description="mixed with a corpus: draw synthetic tokens from only the first N non-special ids "
        "(default: the whole vocabulary); fewer ids means each is seen more often, so copying circuits form sooner",
    )

    @model_validator(mode="after")
    def _ranges(self) -> "SyntheticConfig":
        if self.max_len < self.min_len:
            raise ValueError(f"max_len {self.max_len} is below min_len {self.min_len}")
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"max_repeats {self.max_repeats} is below min_repeats {self.min_repeats}")
        return self


class DataConfig(BaseModel):
    """Where training text comes from and how it is cut into sequences."""

    model_config = _STRICT
    source: str = Field("shakespeare", description="bundled name, file, glob, folder, HF dataset dir, .bin, or 'synthetic'")
    format: Literal["auto", "text", "jsonl", "parquet", "hf", "bin"] = "auto"
    text_field: str = "text"
    bin_dtype: Literal["uint16", "uint32"] = "uint16"
    bin_vocab_size: Optional[int] = Field(None, ge=2, le=2**32, description="vocabulary of a pre-tokenized .bin corpus; default max id + 1")
    bin_bos_id: int = Field(0, ge=0, lt=2**32, description="id used as BOS at the start of each sequence cut from a .bin corpus")
    tokenizer: Optional[str] = Field(None, description="path to a tokenizer.json (any layout); default: train a BPE on the corpus")
    bos_token: Optional[str] = Field(
        None, min_length=1,
        description="the token of data.tokenizer that opens every sequence; default the first of <|endoftext|>, "
        "<|begin_of_text|>, <|startoftext|>, <s>, <bos>, <BOS>, [BOS] it holds",
    )
    extensions: Optional[list[str]] = Field(
        None, min_length=1,
        description="a folder source: the file name endings to read, e.g. [.py, .txt]; default .txt, .md, .jsonl, .jsonl.gz, .parquet",
    )
    vocab_size: int = Field(2048, ge=258, le=MAX_BPE_VOCAB, description="BPE vocabulary size when a tokenizer is trained")
    seq_len: int = Field(128, ge=4, le=MAX_COUNT, description="tokens per training sequence, BOS included")
    synthetic_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of sequences from the synthetic source")
    synthetic: SyntheticConfig = SyntheticConfig()
    test_sequences: int = Field(64, ge=1, le=MAX_COUNT, description="held-out sequences, disjoint from every training pool")
    cache_dir: Optional[str] = Field(None, description="tokenized-corpus cache; default $REPEATLENS_CACHE or ~/.cache/repeatlens")

    @field_validator("source")
    @classmethod
    def _named_source(cls, source: str) -> str:
        if not source.strip():
            raise ValueError("empty; expected a bundled corpus name (shakespeare), a file, folder or glob, or 'synthetic'")
        return source

    @field_validator("extensions")
    @classmethod
    def _endings(cls, extensions: Optional[list[str]]) -> Optional[list[str]]:
        for ext in extensions or []:
            if not ext.startswith(".") or len(ext) < 2 or "/" in ext or any(c in ext for c in "*?["):
                raise ValueError(f"{ext!r} is not a file name ending; expected e.g. .py or .jsonl.gz (a glob goes in data.source)")
        return extensions

    @property
    def synthetic_only(self) -> bool:
        return self.source == "synthetic" or self.synthetic_fraction == 1.0

    @property
    def synthetic_share(self) -> float:
        """The share of sequences from the synthetic source: 1 for ``source: synthetic`` (whose
        ``synthetic_fraction`` stays 0), else ``synthetic_fraction``.

        >>> DataConfig(source="synthetic").synthetic_share, DataConfig(synthetic_fraction=0.5).synthetic_share
        (1.0, 0.5)
        """
        return 1.0 if self.synthetic_only else self.synthetic_fraction


class MixtureConfig(BaseModel):
    """The repetition spec of Hernandez et al. (2022).

    D = ``total_tokens``; f = ``repeated_fraction`` of D is spent on a repeated subset of
    S = f·D/E tokens whose sequences are each seen E = ``repeat_count`` times, spread
    uniformly over the run; the other (1−f)·D tokens are unique, each seen once.
    """

    model_config = _STRICT
    total_tokens: int = Field(..., ge=1, le=MAX_COUNT)
    repeated_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    repeat_count: int = Field(1, ge=1, le=MAX_COUNT)
    repeated_source: Literal["any", "corpus", "synthetic"] = Field(
        "any",
        description="where the repeated subset's sequences come from when a corpus is mixed with the synthetic source: "
        "'any' (drawn like every training row, so in proportion to data.synthetic_fraction), 'corpus' (natural text only) "
        "or 'synthetic' (synthetic sequences only); the unique data keeps data.synthetic_fraction either way",
    )
    data_matched: Optional[float] = Field(
        None, gt=0.0, lt=1.0,
        description="a data-matched control for repeated fraction f: with repeated_fraction = 0, train on the (1-f)*D "
        "unique tokens a run at f sees (D = total_tokens), so that 'fewer unique tokens' is not mistaken for repetition",
    )

    @model_validator(mode="after")
    def _control(self) -> "MixtureConfig":
        if self.data_matched is not None and self.repeated_fraction > 0:
            raise ValueError(
                f"data_matched = {self.data_matched} is a control (it trains on unique data only) but repeated_fraction = "
                f"{self.repeated_fraction}; expected repeated_fraction = 0"
            )
        return self

    @property
    def control(self) -> str:
        """``'full'`` (f = 0 on all D tokens), ``'data_matched'`` (f = 0 on (1-f)·D) or ``'none'`` (a repeated run)."""
        if self.repeated_fraction > 0:
            return "none"
        return "data_matched" if self.data_matched is not None else "full"


class CheckpointSchedule(BaseModel):
    """Checkpoint steps declared as data: log-spaced early steps plus linear steps.

    steps = {0} ∪ {round(10^x) : x evenly spaced in [0, log10(T)], ``log_count`` points}
            ∪ {k·``every`` : k ≥ 1} ∪ {T}, for T total steps.

    >>> CheckpointSchedule(log_count=4, every=40).steps(100)
    [0, 1, 5, 22, 40, 80, 100]
    """

    model_config = _STRICT
    log_count: int = Field(12, ge=0, le=10_000)
    every: Optional[int] = Field(None, ge=1, description="linear spacing; default T/8")
    include_zero: bool = True

    def steps(self, total_steps: int) -> list[int]:
        out = {total_steps}
        if self.include_zero:
            out.add(0)
        if self.log_count > 0 and total_steps > 1:
            hi = math.log10(total_steps)
            out |= {int(round(10 ** (hi * i / max(self.log_count - 1, 1)))) for i in range(self.log_count)}
        every = self.every or max(total_steps // 8, 1)
        out |= set(range(every, total_steps + 1, every))
        return sorted(s for s in out if 0 <= s <= total_steps)


class WandbConfig(BaseModel):
    """Optional Weights & Biases logging (off by default; offline mode works without a network)."""

    model_config = _STRICT
    enabled: bool = False
    project: str = "repeatlens"
    mode: Literal["offline", "online", "disabled"] = "offline"


class TrainConfig(BaseModel):
    """Optimiser, schedule, evaluation and checkpointing."""

    model_config = _STRICT
    batch_size: int = Field(32, ge=1, le=MAX_COUNT)
    lr: float = Field(1e-3, gt=0, le=10, description="peak learning rate, at most 10 (AdamW moves every weight by about lr a step)")
    micro_batch_size: Optional[int] = Field(
        None, ge=1, description="gradient accumulation: forward and backward this many sequences at a time; default the whole batch"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the forward pass (fp32 master weights and checkpoints; fp16 adds a gradient scaler)"
    )
    tf32: bool = Field(True, description="on CUDA, let fp32 matmuls and convolutions use TF32 tensor cores")
    keep_optimizer: Literal["last", "all"] = Field(
        "last",
        description="which checkpoints keep the optimizer and RNG state: 'last' (the latest, to resume, and the one before it, "
        "for verify --replay) or 'all'; weights are kept at every checkpoint either way",
    )
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.05, ge=0, le=10)
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW's moment decay rates, each in [0, 1)")
    warmup_steps: int = Field(100, ge=0)
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    grad_clip: Optional[float] = Field(1.0, gt=0)
    device: DeviceName = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, mps")
    eval_every: Optional[int] = Field(None, ge=1, description="default: at checkpoints only")
    eval_sequences: int = Field(64, ge=1, description="test / repeated sequences per eval")
    log_every: int = Field(10, ge=1)
    checkpoints: CheckpointSchedule = CheckpointSchedule()
    fast_attention: bool = Field(True, description="fused SDPA path while no hooks are attached")
    compile: bool = False
    deterministic: bool = Field(True, description="torch deterministic algorithms: bit-identical reruns at a fixed thread count and device")
    progress: bool = True
    wandb: WandbConfig = WandbConfig()

    @field_validator("betas")
    @classmethod
    def _betas_below_one(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError("AdamW needs each beta in [0, 1)")
        return betas

    @model_validator(mode="after")
    def _micro(self) -> "TrainConfig":
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise ValueError(f"micro_batch_size = {self.micro_batch_size} exceeds batch_size = {self.batch_size}; expected at most the batch")
        return self


class RunConfig(BaseModel):
    """One training run: data, repetition mixture, model, training."""

    model_config = _STRICT
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data: DataConfig = DataConfig()
    mixture: MixtureConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        if self.data.seq_len > self.model.n_ctx:
            raise ValueError(f"data.seq_len = {self.data.seq_len} exceeds model.n_ctx = {self.model.n_ctx}; expected seq_len <= n_ctx")
        if self.mixture.total_tokens < self.data.seq_len:
            raise ValueError(
                f"mixture.total_tokens = {self.mixture.total_tokens} is below one sequence (data.seq_len = {self.data.seq_len})"
            )
        source = self.mixture.repeated_source
        if source == "corpus" and self.data.synthetic_only:
            raise ValueError("mixture.repeated_source = 'corpus' but the data are synthetic only; expected a corpus in data.source")
        if source == "synthetic" and not self.data.synthetic_only and self.data.synthetic_fraction == 0:
            raise ValueError(
                "mixture.repeated_source = 'synthetic' but data.synthetic_fraction = 0; expected a synthetic share, or 'any'/'corpus'"
            )
        data, syn = self.data, self.data.synthetic
        if data.synthetic_only or data.synthetic_fraction > 0:
            if 1 + 2 * syn.min_len > data.seq_len:
                raise ValueError(
                    f"data.synthetic.min_len = {syn.min_len} leaves no room for a segment and its copy in data.seq_len = "
                    f"{data.seq_len} (BOS + 2 x min_len tokens); expected min_len <= {(data.seq_len - 1) // 2}"
                )
            if syn.max_len > data.seq_len - 1:
                raise ValueError(f"data.synthetic.max_len = {syn.max_len} is longer than a sequence after BOS; expected at most {data.seq_len - 1}")
        if data.synthetic_only and syn.token_ids is not None:
            raise ValueError(
                "data.synthetic.token_ids applies to a run mixing a corpus with the synthetic source; "
                "a synthetic-only run draws from data.synthetic.vocab_size ids"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------- loading


def format_validation_error(err: ValidationError, where: str, section: str = "") -> str:
    """One line for pydantic's first error: ``<where>: field '<section>.<dotted.name>' = <value>: <what was expected>``."""
    e = err.errors()[0]
    loc = ".".join([section] * bool(section) + [str(x) for x in e["loc"] if not str(x).startswith("function-after")])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"{where}: unknown field '{loc}'"
    if e["type"] == "missing":
        return f"{where}: field '{loc}' is required"
    value = e.get("input")
    shown = "" if isinstance(value, dict) or not loc else f" = {shorten(repr(value))}"
    field = f" field '{loc}'{shown}:" if loc else ""
    return f"{where}:{field} {msg}"


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=3e-4", "mixture.repeat_count=10"]`` -> nested dict (values parsed as YAML).

    Raises:
        ConfigError: an item is not ``dotted.key=value``, or its value is not YAML.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {shorten(repr(item))}: expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"--set {shorten(repr(item))}: expected a dotted field name before '=', e.g. train.lr=3e-4")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {shorten(repr(item))}: the value is not valid YAML ({getattr(e, 'problem', None) or 'parse error'})") from None
        node = out
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {shorten(repr(item))}: '{'.'.join(parts[: i + 1])}' is set to a value above; it cannot also have fields")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``over`` wins. Neither input is modified."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(d: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a plain dict into a :class:`RunConfig` (one-line ConfigError otherwise)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping of fields at the top level, got {type(d).__name__}")
    try:
        return RunConfig.model_validate(d)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors naming the file."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:  # unreadable (permissions), a name too long …
        raise ConfigError(os_error_message(e, p)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a config") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{line}: invalid YAML ({shorten(str(getattr(e, 'problem', None) or e))})") from None
    if d is None:
        raise ConfigError(f"{p}: empty config; expected at least a 'mixture' section")
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a mapping of fields at the top level, got {type(d).__name__}")
    return d


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load ``path`` (YAML), apply ``key=value`` overrides, validate."""
    return config_from_dict(merge(read_yaml(path), parse_overrides(overrides)), where=str(path))
