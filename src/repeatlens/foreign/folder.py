"""A discovered folder of someone else's checkpoints: its revisions, their models, their duplicates (:class:`ForeignFolder`)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from repeatlens.data.special import SpecialIds
from repeatlens.errors import CheckpointError, WriteError
from repeatlens.foreign.digests import weights_digest
from repeatlens.foreign.ids import NO_BOS
from repeatlens.foreign.loading import _nanogpt_file, load_pt, load_tl_state_dict
from repeatlens.foreign.revisions import DIGEST_CACHE, Kind


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
