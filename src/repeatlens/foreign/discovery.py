"""Finding the checkpoints under a path or ``hf:ORG/NAME`` in the local hub cache (:func:`discover`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from repeatlens.errors import ConfigError
from repeatlens.foreign.folder import ForeignFolder
from repeatlens.foreign.layouts import _Builder, _scan
from repeatlens.foreign.revisions import parse_revision


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
