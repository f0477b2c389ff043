"""Other people's checkpoints: find them, validate them, load them offline.

:func:`discover` turns a folder (or ``hf:ORG/NAME``, see :mod:`repeatlens.hub`) into a
:class:`ForeignFolder`: its checkpoints, each with a training step, tokens seen, a validated
BOS id for the probes and a loader, plus the problems and warnings found on the way.
Layouts understood:

* **TransformerLens** (what TransformerLens' own ``train.py`` writes): state-dict files
  ``model_{step}.pt`` with the model's ``HookedTransformerConfig`` beside them as
  ``config.json`` (its ``to_dict()``, e.g. ``json.dumps(cfg.to_dict(), default=str)``).
* **Hugging Face**: one subfolder per revision, each what ``save_pretrained`` writes
  (``config.json`` plus ``model.safetensors`` / ``pytorch_model.bin``, possibly sharded),
  for every architecture in :data:`repeatlens.model.HF_ARCHITECTURES`. Converted by
  :func:`repeatlens.model.model_from_hf_folder` with ``local_files_only=True``.
* **nanoGPT**: ``ckpt.pt`` files as karpathy/nanoGPT's ``train.py`` saves them (``model``,
  ``model_args``, ``iter_num``, ...): one ``ckpt.pt`` in the folder, several files
  (``ckpt_1000.pt``, ``step1000.pt``), or one per revision subfolder (``step1000/ckpt.pt``).
  The step is ``iter_num``.
* **one checkpoint folder** passed itself (e.g. a Trainer's ``checkpoint-1000/``): its step
  from its name or from ``trainer_state.json``'s ``global_step``.

Revision names, as people publish them (:func:`parse_revision`): ``step1000``,
``step_1000``, ``global_step1000``, ``step1000-tokens4B`` and ``stage1-step1000-tokens4B``
(OLMo; tokens seen taken from the name), ``checkpoint-1000`` (Hugging Face Trainer),
``iter_0001000`` (Megatron / GPT-NeoX), ``ckpt_1000``.

Every ``.pt`` file is read ONLY through ``torch.load(weights_only=True)``: a pickle that is
anything but plain tensors and containers is refused before any of its code can run.

A bad revision never stops the others: what discovery can tell (no config, no weights, a
missing shard, an unsupported architecture, a revision of another model than the rest,
two revisions claiming one step) is in :attr:`ForeignFolder.problems`; what only loading
tells (a config that disagrees with its weights, a truncated file) is a one-line
:class:`~repeatlens.errors.CheckpointError` from :meth:`ForeignFolder.load_model`.

Tokens seen: ``step * tokens_per_step`` when the caller gives ``tokens_per_step``
(Pythia: 2,097,152), else the count in the revision name when it has one (OLMo's
``tokens4B``: rounded as published), else a Trainer checkpoint's
``trainer_state.json`` ``num_input_tokens_seen`` (recorded when it trained with
``include_num_input_tokens_seen``), else unknown: ``tokens_seen`` then holds the step, and
:meth:`ForeignFolder.axis` says so (the table records it, the figures plot against the step).

Special ids: each checkpoint's probe BOS and excluded ids, and where they came from
(:attr:`ForeignCheckpoint.special`, a :class:`~repeatlens.probe_ids.SpecialIds`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional, Sequence

from repeatlens.data.special import SpecialIds
from repeatlens.deprecation import renamed
from repeatlens.errors import CheckpointError, ConfigError, WriteError, damaged_file_errors, first_line

__all__ = [
    "ForeignCheckpoint",
    "ForeignFolder",
    "Revision",
    "discover",
    "looks_foreign",
    "parse_revision",
    "config_special_ids",
    "load_tl_state_dict",
    "load_pt",
    "weights_digest",
    "TL_CONFIG",
]

__getattr__ = renamed(__name__, {"special_ids": "config_special_ids"})  # scores.special_ids reads a model

TL_FILE = re.compile(r"^model_(\d+)\.pt$")
TL_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
NANOGPT_FILE = "ckpt.pt"
DIGEST_CACHE = ".repeatlens_digests.json"

Kind = Literal["transformerlens", "huggingface", "nanogpt"]

_TOKEN_UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_REVISION_PATTERNS = [
    re.compile(r"^(?:[\w.]+[-_])?(?:global_)?step[-_]?(?P<step>\d+)(?:[-_]tok(?:en)?s?[-_]?(?P<tokens>\d+(?:\.\d+)?)(?P<unit>[kmbgt]?))?$", re.I),
    re.compile(r"^checkpoint[-_](?P<step>\d+)$", re.I),
    re.compile(r"^iter(?:ation)?[-_]?(?P<step>\d+)$", re.I),
    re.compile(r"^ckpt[-_]?(?P<step>\d+)$", re.I),
]


@dataclass(frozen=True)
class Revision:
    """What a revision's name says: the training step, and tokens seen when it says so."""

    name: str
    step: int
    tokens: Optional[int] = None


def parse_revision(name: str) -> Optional[Revision]:
    """Step (and tokens) from a revision name; None when the name gives no step.

    ``step1000``, ``step_1000``, ``global_step1000``, ``step1000-tokens4B`` (4 x 10^9
    tokens; K, M, B/G, T suffixes, or a plain count), ``stage1-step1000-tokens4B``,
    ``checkpoint-1000``, ``iter_0001000``, ``ckpt_1000``; a ``.pt`` suffix is ignored.

    >>> parse_revision("stage1-step20000-tokens84B")
    Revision(name='stage1-step20000-tokens84B', step=20000, tokens=84000000000)
    >>> parse_revision("checkpoint-1000").step, parse_revision("iter_0001000").step, parse_revision("main")
    (1000, 1000, None)
    """
    stem = name[:-3] if name.endswith(".pt") else name
    for pat in _REVISION_PATTERNS:
        m = pat.match(stem)
        if m:
            d = m.groupdict()
            tokens = None
            if d.get("tokens"):
                tokens = int(round(float(d["tokens"]) * _TOKEN_UNITS[(d.get("unit") or "").lower()]))
            return Revision(name, int(d["step"]), tokens)
    return None


NO_BOS = 0
"""The id the probes start with when neither a checkpoint's config nor a tokenizer beside it
names a BOS or EOS id; said in one warning line, which names the file to add."""


def config_special_ids(config: Any, vocab: int, where: str, tokenizer: Optional[Path] = None) -> tuple[int, tuple[int, ...], list[str]]:
    """Validated special ids of a config: ``(bos, exclude, warnings)``.

    ``bos_token_id``, ``eos_token_id`` and ``pad_token_id`` (an int, a list of ints or
    None) are kept when ``0 <= id < vocab``; any other value is ignored, with one warning
    line naming ``where`` and the fields. The probes' BOS is the BOS id, else the (first) EOS
    id; when the config names neither, the ``tokenizer`` (a ``tokenizer.json`` beside the
    checkpoint, read by :func:`repeatlens.data.special.from_tokenizer`) decides; failing that,
    :data:`NO_BOS`, with a warning saying so. Every kept id is excluded from the probes'
    random tokens.
    """
    kept: dict[str, list[int]] = {}
    bad = []
    for fld in ("bos_token_id", "eos_token_id", "pad_token_id"):
        raw = config.get(fld) if isinstance(config, dict) else getattr(config, fld, None)
        if raw is None:
            continue
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        good = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab]
        if len(good) != len(values):
            bad.append(f"{fld} {raw!r}")
        kept[fld] = good
    named = kept.get("bos_token_id", []) + kept.get("eos_token_id", [])
    extra: set[int] = set()
    from_tok = None
    if not named and tokenizer is not None and tokenizer.is_file():
        from repeatlens.data.special import from_token_file
        from repeatlens.errors import DataError

        try:
            from_tok = from_token_file(str(tokenizer), str(tokenizer))
        except DataError:
            from_tok = None
        if from_tok is not None and from_tok.bos < vocab:
            named, extra = [from_tok.bos], {i for i in from_tok.special if i < vocab}
    bos = named[0] if named else NO_BOS
    exclude = tuple(sorted({bos, *extra, *(v for vs in kept.values() for v in vs)}))
    notes = []
    if bad:
        verb = "is" if len(bad) == 1 else "are"
        notes.append(f"{where}: {' and '.join(bad)} {verb} outside the vocabulary (vocab_size {vocab}); ignored, probes use BOS {bos}")
    elif not named:
        beside = f"no {tokenizer.name} beside it" if tokenizer is not None else "no tokenizer"
        notes.append(f"{where}: names no BOS or EOS id and {beside} names one; the probes start with id {bos} "
                     f"(put the tokenizer.json the model was trained with beside the checkpoint)")
    return bos, exclude, notes


def _ids_source(config: Any, bos: int, where: str, tokenizer: Optional[Path] = None) -> tuple[str, str]:
    """Where the BOS :func:`config_special_ids` chose came from: ``("config", "<where> <field>")``,
    ``("tokenizer", "<tokenizer.json>")`` for one beside the checkpoint, or ``("default",
    why)`` when neither gave it (:data:`NO_BOS`)."""
    for fld in ("bos_token_id", "eos_token_id"):
        raw = config.get(fld) if isinstance(config, dict) else getattr(config, fld, None)
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        if any(isinstance(v, int) and not isinstance(v, bool) and v == bos for v in values):
            return "config", f"{where} {fld}"
    if tokenizer is not None and tokenizer.is_file():
        from repeatlens.data.special import from_token_file
        from repeatlens.errors import DataError

        with contextlib.suppress(DataError):
            if from_token_file(str(tokenizer), str(tokenizer)).bos == bos:
                return "tokenizer", str(tokenizer)
    return "default", f"{where} names no bos_token_id or eos_token_id inside the vocabulary and no tokenizer.json beside it names a BOS: id {bos}"


@dataclass(frozen=True)
class ForeignCheckpoint:
    """One checkpoint of a foreign folder.

    Attributes:
        path: the ``model_{step}.pt`` / ``ckpt.pt`` file or the revision folder.
        step: training step.
        tokens_seen: tokens seen at that step (see the module docstring).
        revision: the name it was found under (``step1000``, ``model_10.pt``, a hub ref).
        kind: ``"transformerlens"``, ``"huggingface"`` or ``"nanogpt"``.
        bos: validated BOS id for the probes (:func:`config_special_ids`).
        exclude: valid special ids kept out of the probes' random tokens.
        weights: the files holding its tensors (hashed by :meth:`ForeignFolder.duplicates`).
        label: how messages name it when the path would not say (hub snapshots).
        ids_from: ``(source, where)`` of ``bos`` and ``exclude`` (see :attr:`special`).
        tokens_from: where ``tokens_seen`` came from (``--tokens-per-step N``, ``revision
            name``, ``trainer_state.json``), or None: unknown, ``tokens_seen`` is the step.
    """

    path: Path
    step: int
    tokens_seen: int
    revision: str = ""
    kind: Kind = "huggingface"
    bos: int = NO_BOS
    exclude: tuple[int, ...] = (NO_BOS,)
    weights: tuple[Path, ...] = ()
    label: str = ""
    ids_from: tuple[str, str] = ("default", "no config or tokenizer names a special id")
    tokens_from: Optional[str] = None

    @property
    def name(self) -> str:
        """How messages name it: ``label`` (e.g. ``hf:ORG/NAME@step1000``), else the path."""
        return self.label or str(self.path)

    @property
    def special(self) -> SpecialIds:
        """The probes' BOS and excluded ids for this checkpoint, and where they came from."""
        return SpecialIds(self.bos, tuple(self.exclude), source=self.ids_from[1], kind=self.ids_from[0])


@dataclass
class ForeignFolder:
    """Other people's checkpoints, found by :func:`discover`.

    Attributes:
        path: the folder analysed (for ``hf:`` sources, the table folder).
        kind: the checkpoints' kind, or ``"mixed"``.
        checkpoints: loadable-looking checkpoints, sorted by step.
        problems: ``(path or revision, reason)`` for revisions already known to be unusable.
        warnings: one line each (special ids ignored, a context cut to a local window, ...).
        table_dir: where the scores table goes (the folder itself, or ``--out``).
        run_id: the ``run_id`` of the rows.
    """

    path: Path
    kind: str
    checkpoints: list[ForeignCheckpoint]
    problems: list[tuple[Path | str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    table_dir: Optional[Path] = None
    run_id: str = ""
    _hcfg: Any = field(default=None, repr=False)
    on_warning: Optional[Callable[[str], None]] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.table_dir = self.table_dir or self.path
        self.run_id = self.run_id or self.path.resolve().name

    def axis(self) -> dict[str, str]:
        """What ``tokens_seen`` means in this folder's table: ``{"x": "tokens_seen",
        "tokens_from": ...}`` when every checkpoint has a token count, else ``{"x": "step",
        "tokens_from": "unknown"}`` (``tokens_seen`` then holds the step where no count is known)."""
        sources = {c.tokens_from for c in self.checkpoints}
        if self.checkpoints and None not in sources:
            return {"x": "tokens_seen", "tokens_from": ", ".join(sorted(str(x) for x in sources))}
        return {"x": "step", "tokens_from": "unknown"}

    def warn(self, message: str) -> None:
        """Record a warning once (and pass it to :attr:`on_warning`)."""
        if message not in self.warnings:
            self.warnings.append(message)
            if self.on_warning is not None:
                self.on_warning(message)

    def load_model(self, ckpt: ForeignCheckpoint, device: str = "cpu"):
        """The ``HookedTransformer`` of ``ckpt``; a one-line CheckpointError if it is bad."""
        from repeatlens import model as adapter

        try:
            if ckpt.kind == "transformerlens":
                return adapter.model_from_foreign_state_dict(self._hcfg, load_tl_state_dict(ckpt.path), device=device)
            if ckpt.kind == "nanogpt":
                return adapter.model_from_nanogpt(load_pt(_nanogpt_file(ckpt.path)), device=device)
            return adapter.model_from_hf_folder(ckpt.path, device=device)
        except ValueError as e:
            raise CheckpointError(f"{ckpt.name}: {e}") from None

    def duplicates(self, progress: bool = False) -> dict[str, str]:
        """Revisions whose weights equal an earlier revision's: ``{revision: earlier revision}``.

        Tensor hashes (:func:`weights_digest`) are compared; the revision with the lowest
        step of a group of equal ones is the one the others duplicate. Digests are cached
        in ``table_dir/.repeatlens_digests.json`` by file path, size and modification
        time, so a re-run does not read the weights again. Unreadable files are skipped
        here (loading reports them).
        """
        cache_path = Path(self.table_dir) / DIGEST_CACHE
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8"))
            cache = cache if isinstance(cache, dict) else {}
        except (OSError, ValueError):
            cache = {}
        first: dict[str, str] = {}
        out: dict[str, str] = {}
        changed = False
        from tqdm.auto import tqdm

        for ckpt in tqdm(self.checkpoints, desc="weight hashes", unit="rev", disable=not progress, leave=False):
            try:
                key = json.dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in ckpt.weights])
                digest = cache.get(key)
                if digest is None:
                    digest = weights_digest(ckpt.weights, nanogpt=ckpt.kind == "nanogpt")
                    cache[key], changed = digest, True
            except (OSError, ValueError):
                continue
            if digest in first:
                out[ckpt.revision] = first[digest]
            else:
                first[digest] = ckpt.revision
        if changed:
            try:
                from repeatlens.io import atomic_write_text

                atomic_write_text(cache_path, json.dumps(cache))
            except (OSError, WriteError):  # a read-only folder only loses the cache
                pass
        return out


# ----------------------------------------------------------------------------- reading .pt


def load_pt(path: str | Path, *, mmap: bool = False) -> Any:
    """Read a ``.pt`` file with ``torch.load(weights_only=True)`` and nothing else.

    Raises:
        ValueError: one line: unreadable or truncated file, or a pickle that is not plain
            weights (the refused global is named).
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as e:
                if mmap and "mmap" in str(e):  # the legacy (non-zip) format cannot be memory-mapped
                    return torch.load(path, map_location="cpu", weights_only=True)
                raise
    except damaged_file_errors() as e:  # a damaged or hostile file is reported; anything else is a bug and surfaces
        text = str(e)
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            what = f"it refers to {glob.group(1)}" if glob else "it holds more than tensors"
            raise ValueError(f"refused to unpickle: not plain weights ({what}; only torch.load(weights_only=True) is used)") from None
        raise ValueError(f"unreadable or truncated .pt file ({first_line(e)})") from None


def load_tl_state_dict(path: str | Path) -> dict[str, Any]:
    """A TransformerLens state dict from ``path`` (:func:`load_pt`), checked to be a mapping.

    Raises:
        ValueError: one line (see :func:`load_pt`), or the file holds something else.
    """
    obj = load_pt(path)
    if not isinstance(obj, dict):
        raise ValueError(f"not a state dict: the file holds a {type(obj).__name__}, expected a mapping of parameter names to tensors")
    return obj


# ------------------------------------------------------------------------------- hashing

_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}


def _safetensors_entries(path: Path) -> Iterable[tuple[str, str, tuple[int, ...], bytes]]:
    """``(name, dtype, shape, sha256 of the bytes)`` of every tensor of a safetensors file,
    read from its header and data section (no tensor is materialised)."""
    import mmap
    import struct

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100_000_000:
            raise ValueError(f"{path}: not a safetensors file")
        header = json.loads(f.read(n))
        base = 8 + n
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                start, stop = meta["data_offsets"]
                if base + stop > len(mm):
                    raise ValueError(f"{path}: truncated")
                digest = hashlib.sha256(memoryview(mm)[base + start : base + stop]).digest()
                yield name, _SAFETENSORS_DTYPES.get(meta["dtype"], meta["dtype"]), tuple(meta["shape"]), digest


def _torch_entries(obj: dict[str, Any]) -> Iterable[tuple[str, str, tuple[int, ...], bytes]]:
    import torch

    for name, t in obj.items():
        if torch.is_tensor(t):
            raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            yield name, str(t.dtype).removeprefix("torch."), tuple(t.shape), hashlib.sha256(memoryview(raw)).digest()


def weights_digest(files: Sequence[Path], *, nanogpt: bool = False) -> str:
    """sha256 over the set of distinct tensors (dtype, shape, sha256 of the bytes), sorted.

    Independent of how the tensors are split into files or serialised (safetensors,
    ``.bin`` or ``.pt``), so two revisions get one digest exactly when they hold the same
    tensors. Names are left out on purpose: one model's keys differ between formats and
    library versions (transformers 5 saves GPT-NeoX's ``lm_head.weight`` as
    ``embed_out.weight``; a pickled state dict lists tied embeddings twice, safetensors
    once), while two revisions holding the same tensors under permuted names do not occur.
    For nanoGPT checkpoints only ``ckpt["model"]`` counts; optimizer state and counters do not.
    """
    entries = []
    for path in files:
        if path.suffix == ".safetensors":
            entries += list(_safetensors_entries(path))
            continue
        obj = load_pt(path, mmap=True)
        if nanogpt and isinstance(obj, dict):
            obj = {k.removeprefix("_orig_mod."): v for k, v in (obj.get("model") or {}).items()}
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: not a state dict")
        entries += list(_torch_entries(obj))
    h = hashlib.sha256()
    for dtype, shape, digest in sorted({(dtype, shape, digest) for _, dtype, shape, digest in entries}):
        h.update(f"{dtype}\0{shape}\0".encode())
        h.update(digest)
    return h.hexdigest()


# ----------------------------------------------------------------------------- discovery


@dataclass
class _Found:
    """A revision found on disk before validation."""

    revision: Revision
    path: Path
    kind: Kind


def looks_foreign(path: str | Path) -> bool:
    """Cheap test: does ``path`` hold a layout :func:`discover` reads (or is it ``hf:``)?"""
    from repeatlens import hub

    if hub.parse_source(str(path)) is not None:
        return True
    path = Path(path)
    if not path.is_dir():
        return False
    return bool(_scan(path))


def _scan(path: Path) -> list[_Found]:
    """Candidate revisions in ``path`` (no file is opened)."""
    found = []
    for entry in sorted(path.iterdir()):
        if entry.is_file() and (m := TL_FILE.match(entry.name)):
            found.append(_Found(Revision(entry.name, int(m.group(1))), entry, "transformerlens"))
        elif entry.is_file() and entry.suffix == ".pt" and (entry.name == NANOGPT_FILE or parse_revision(entry.name)):
            rev = parse_revision(entry.name) or Revision(entry.name, -1)
            found.append(_Found(rev, entry, "nanogpt"))
        elif entry.is_dir() and (rev := parse_revision(entry.name)) is not None:
            kind: Kind = "nanogpt" if (entry / NANOGPT_FILE).is_file() and not (entry / "config.json").is_file() else "huggingface"
            found.append(_Found(rev, entry, kind))
    if not found and (path / "config.json").is_file() and any((path / w).is_file() for w in HF_WEIGHTS):
        found.append(_Found(_own_revision(path), path, "huggingface"))  # one save_pretrained folder, e.g. checkpoint-1000/
    return found


def _trainer_state(path: Path) -> dict[str, Any]:
    """A Hugging Face Trainer checkpoint's ``trainer_state.json`` ({} when absent or unreadable)."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _trainer_tokens(path: Path, step: int) -> Optional[int]:
    """Tokens seen at ``step`` by ``trainer_state.json``: its ``num_input_tokens_seen`` when it
    trained with ``include_num_input_tokens_seen`` (0 or absent otherwise) and the state is
    that step's; None when it does not say."""
    state = _trainer_state(path)
    n = state.get("num_input_tokens_seen")
    if state.get("global_step") == step and isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    return None


def _own_revision(path: Path) -> Revision:
    """The step of a lone checkpoint folder: from its name, else trainer_state.json's global_step, else -1."""
    rev = parse_revision(path.resolve().name)
    if rev is not None:
        return rev
    step = _trainer_state(path).get("global_step")
    if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
        return Revision(path.resolve().name, step)
    return Revision(path.resolve().name, -1)


def _nanogpt_file(path: Path) -> Path:
    return path / NANOGPT_FILE if path.is_dir() else path


def _hf_weight_files(d: Path) -> tuple[list[Path], Optional[str]]:
    """The weight files of a save_pretrained folder, or a reason it has none usable."""
    for name in HF_WEIGHTS:
        f = d / name
        if not f.is_file():
            continue
        if not name.endswith(".index.json"):
            return [f], None
        try:
            shards = sorted(set(json.loads(f.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            return [], f"unreadable shard index {name} ({type(e).__name__})"
        missing = [s for s in shards if not (d / s).is_file()]
        if missing:
            return [], f"missing shard {missing[0]} (of {len(shards)} listed in {name})" + (f", and {len(missing) - 1} more" if len(missing) > 1 else "")
        return [d / s for s in shards], None
    return [], f"no weights file; expected one of {', '.join(HF_WEIGHTS)}"


class _Builder:
    """Collects checkpoints, problems and warnings, then checks they form one model."""

    def __init__(self, tokens_per_step: Optional[int]):
        self.tokens_per_step = tokens_per_step
        self.items: list[tuple[ForeignCheckpoint, tuple]] = []  # (checkpoint, model signature)
        self.problems: list[tuple[Path | str, str]] = []
        self.notes: dict[str, list[str]] = {}  # message without the file -> files it applies to
        self.hcfg: Any = None

    def note(self, message: str) -> None:
        self.notes.setdefault(message, [])

    def special(self, config: Any, vocab: int, where: str, tokenizer: Optional[Path] = None) -> tuple[int, tuple[int, ...], tuple[str, str]]:
        bos, exclude, notes = config_special_ids(config, vocab, where, tokenizer)
        for n in notes:  # group identical complaints of many revisions into one line
            self.notes.setdefault(n[len(where) + 2 :], []).append(where)
        return bos, exclude, _ids_source(config, bos, where, tokenizer)

    def tokens(self, rev: Revision, step: int, folder: Optional[Path] = None) -> tuple[int, Optional[str]]:
        """Tokens seen at ``step`` and where that count came from (None: unknown, the step)."""
        if self.tokens_per_step:
            return step * int(self.tokens_per_step), f"--tokens-per-step {int(self.tokens_per_step)}"
        if rev.tokens is not None:
            return rev.tokens, "revision names"
        n = _trainer_tokens(folder, step) if folder is not None else None
        return (n, "trainer_state.json num_input_tokens_seen") if n is not None else (step, None)

    def add(
        self, path: Path, rev: Revision, step: int, kind: Kind, signature: tuple, bos: int,
        exclude: tuple[int, ...], weights: Sequence[Path] = (), label: str = "", ids_from: tuple[str, str] = ("default", "no config or tokenizer names a special id"),
    ) -> None:
        tokens, tokens_from = self.tokens(rev, step, path if path.is_dir() else None)
        ckpt = ForeignCheckpoint(path, step, tokens, rev.name, kind, bos, tuple(exclude), tuple(weights), label, ids_from, tokens_from)
        self.items.append((ckpt, signature))

    # -------------------------------------------------------------- per layout

    def transformerlens(self, top: Path, found: list[_Found]) -> None:
        from repeatlens.model import hooked_config_from_json

        cfg_path = top / TL_CONFIG
        reason = None
        if not cfg_path.is_file():
            reason = f"no {TL_CONFIG} beside it; expected the model's HookedTransformerConfig.to_dict() as JSON"
        else:
            try:
                self.hcfg = hooked_config_from_json(json.loads(cfg_path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                reason = f"{cfg_path} is unreadable ({e})"
            except ValueError as e:
                reason = f"{cfg_path} is not a HookedTransformerConfig: {e}"
        for f in found:
            if reason is not None:
                self.problems.append((f.path, reason))
            else:
                c = self.hcfg
                sig = ("TransformerLens", c.n_layers, c.d_model, c.n_heads, c.d_vocab)
                bos, exclude, ids_from = self.special({}, int(c.d_vocab), str(cfg_path), top / "tokenizer.json")
                self.add(f.path, f.revision, f.revision.step, "transformerlens", sig, bos, exclude, weights=[f.path], ids_from=ids_from)

    def huggingface(self, d: Path, rev: Revision, label: str = "") -> None:
        from repeatlens.model import hooked_spec, read_hf_config

        where = label or d
        if rev.step < 0:
            self.problems.append((where, "one checkpoint folder whose name gives no step (and no trainer_state.json global_step); "
                                         "put it in a step{N}/ folder inside the folder analysed"))
            return
        if not (d / "config.json").is_file():
            self.problems.append((where, "no config.json; expected a Hugging Face save_pretrained folder or a nanoGPT ckpt.pt"))
            return
        files, reason = _hf_weight_files(d)
        if reason is not None:
            self.problems.append((where, reason))
            return
        try:
            hf_config = read_hf_config(d)
            spec = hooked_spec(hf_config)
        except ValueError as e:
            self.problems.append((where, str(e)))
            return
        for n in spec.notes:
            self.note(n)
        bos, exclude, ids_from = self.special(hf_config, int(spec.kwargs["d_vocab"]), f"{label}/config.json" if label else str(d / "config.json"),
                                              d / "tokenizer.json")
        self.add(d, rev, rev.step, "huggingface", spec.signature, bos, exclude, files, label, ids_from)

    def nanogpt(self, path: Path, rev: Revision) -> None:
        from repeatlens.model import nanogpt_spec

        file = _nanogpt_file(path)
        try:
            ckpt = load_pt(file, mmap=True)
        except ValueError as e:
            self.problems.append((file, str(e)))
            return
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_args"), dict) or not isinstance(ckpt.get("model"), dict):
            self.problems.append((file, "not a nanoGPT checkpoint: expected a dict with 'model', 'model_args' and 'iter_num'"))
            return
        try:
            spec = nanogpt_spec(ckpt["model_args"])
        except ValueError as e:
            self.problems.append((file, str(e)))
            return
        it = ckpt.get("iter_num")
        step = it if isinstance(it, int) and not isinstance(it, bool) and it >= 0 else rev.step
        if step < 0:
            self.problems.append((file, "no iter_num in the checkpoint and no step in its name"))
            return
        if 0 <= rev.step != step:
            self.note(f"{file}: iter_num {step} differs from the step {rev.step} in its name; iter_num is used")
        vocab = int(spec.kwargs["d_vocab"])
        # nanoGPT saves no special ids: a tokenizer.json beside the checkpoint decides (GPT-2's for its BPE data)
        beside = [file.parent / "tokenizer.json", file.parent.parent / "tokenizer.json"]  # the run's folder, or the one above
        bos, exclude, ids_from = self.special({}, vocab, str(file), next((p for p in beside if p.is_file()), beside[0]))
        self.add(path, rev, step, "nanogpt", spec.signature, bos, exclude, [file], ids_from=ids_from)

    # -------------------------------------------------------------- checks and result

    def finish(self, path: Path, *, table_dir: Optional[Path] = None, run_id: str = "") -> ForeignFolder:
        items = sorted(self.items, key=lambda t: (t[0].step, t[0].revision))
        if items:  # one model: the most common signature wins; the others are named
            counts = Counter(sig for _, sig in items)
            top = max(counts, key=lambda s: (counts[s], -min(c.step for c, g in items if g == s)))
            keep = []
            for ckpt, sig in items:
                if sig == top:
                    keep.append(ckpt)
                else:
                    self.problems.append((ckpt.name, f"{_describe(sig)} differs from the other revisions' {_describe(top)}; one folder holds one model's checkpoints"))
            items = [(c, top) for c in keep]
        checkpoints: list[ForeignCheckpoint] = []
        for ckpt, _ in items:
            same = next((c for c in checkpoints if c.step == ckpt.step), None)
            if same is not None:
                self.problems.append((ckpt.name, f"step {ckpt.step} is also revision {same.revision}; each step must be one revision"))
            else:
                checkpoints.append(ckpt)
        kinds = {c.kind for c in checkpoints}
        folder = ForeignFolder(
            path, kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "huggingface"), checkpoints,
            problems=self.problems, table_dir=table_dir, run_id=run_id, _hcfg=self.hcfg,
        )
        known = [c for c in checkpoints if c.tokens_from is not None]
        if known and len(known) < len(checkpoints):
            unknown = [c.revision for c in checkpoints if c.tokens_from is None]
            self.note(f"{path}: tokens seen are known for {len(known)} of {len(checkpoints)} revisions (not for {', '.join(unknown[:3])}"
                      f"{', ...' if len(unknown) > 3 else ''}); the table's axis is the step: give --tokens-per-step to plot against tokens seen")
        for message, files in self.notes.items():
            if files:
                more = f" (and {len(files) - 1} other revision{'s' if len(files) > 2 else ''})" if len(files) > 1 else ""
                folder.warn(f"{files[0]}{more}: {message}")
            else:
                folder.warn(message)
        return folder


def _describe(sig: tuple) -> str:
    arch, layers, d_model, heads, vocab = sig
    return f"{arch} ({layers} layers, d_model {d_model}, {heads} heads, vocab {vocab})"


def discover(
    source: str | Path,
    tokens_per_step: Optional[int] = None,
    *,
    revisions: Optional[Sequence[str]] = None,
    out: Optional[str | Path] = None,
    download: bool = False,
) -> Optional[ForeignFolder]:
    """The foreign checkpoints of ``source``, or None when it holds no layout read here.

    Args:
        source: a folder (see the module docstring) or ``hf:ORG/NAME`` (the hub cache).
        tokens_per_step: ``tokens_seen = step * tokens_per_step``.
        revisions: ``hf:`` only: ref names or commit hashes (default: every cached ref
            whose name gives a step).
        out: where the scores table goes (required for ``hf:``; default the folder).
        download: ``hf:`` only: fetch requested revisions missing from the cache.

    Raises:
        ConfigError: ``hf:`` without ``out``, or a repository the cache does not hold.
    """
    from repeatlens import hub

    repo = hub.parse_source(str(source))
    if repo is not None:
        return _discover_hub(repo, tokens_per_step, revisions, out, download)
    if revisions is not None or download:
        raise ConfigError(f"{source}: --revisions and --download are for hf:ORG/NAME sources")
    path = Path(source)
    if not path.is_dir():
        return None
    found = _scan(path)
    if not found:
        return None
    b = _Builder(tokens_per_step)
    tl = [f for f in found if f.kind == "transformerlens"]
    if tl:
        b.transformerlens(path, tl)
    hf = [f for f in found if f.kind == "huggingface"]
    if hf:
        _need_transformers(path)
    for f in found:
        if f.kind == "huggingface":
            b.huggingface(f.path, f.revision)
        elif f.kind == "nanogpt":
            b.nanogpt(f.path, f.revision)
    return b.finish(path, table_dir=Path(out) if out is not None else None)


def _need_transformers(path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise ConfigError(f"{path}: Hugging Face checkpoints need transformers; pip install 'repeatlens[hf]'")


def _discover_hub(repo: str, tokens_per_step: Optional[int], revisions: Optional[Sequence[str]], out, download: bool) -> ForeignFolder:
    from repeatlens import hub

    if out is None:
        raise ConfigError(f"hf:{repo}: --out is required (the tables go there; the hub cache is never written)")
    out = Path(out)
    _need_transformers(out)
    found = hub.find_revisions(repo, revisions, allow_download=download, has_step=lambda r: parse_revision(r) is not None)
    b = _Builder(tokens_per_step)
    for name, reason in found.missing:
        b.problems.append((f"hf:{repo}@{name}", reason))
    for name, snap in found.found:
        rev = parse_revision(name)
        if rev is None:
            b.problems.append((f"hf:{repo}@{name}", "the revision name gives no training step (expected step1000, step1000-tokens4B, checkpoint-1000, iter_0001000)"))
            continue
        b.huggingface(snap, rev, label=f"hf:{repo}@{name}")
    folder = b.finish(out, table_dir=out, run_id=repo.split("/")[-1])
    if found.skipped:
        folder.warn(f"hf:{repo}: skipped cached revision(s) {', '.join(found.skipped)}: their names give no training step")
    return folder
