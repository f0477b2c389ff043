"""The layouts a folder of checkpoints can have (TransformerLens ``model_{step}.pt``, Hugging Face revision folders, trainer ``checkpoint-N`` folders, nanoGPT ``ckpt.pt``) and the scan that recognises them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from repeatlens.foreign.folder import ForeignCheckpoint, ForeignFolder
from repeatlens.foreign.ids import _ids_source, config_special_ids
from repeatlens.foreign.loading import _nanogpt_file, load_pt
from repeatlens.foreign.revisions import HF_WEIGHTS, Kind, NANOGPT_FILE, Revision, TL_CONFIG, TL_FILE, parse_revision


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
