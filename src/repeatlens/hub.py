"""Revisions of a Hugging Face model from the local hub cache, with no network.

``repeatlens analyze hf:ORG/NAME`` reads the revisions (branches such as Pythia's
``step1000``, OLMo's ``step1000-tokens4B``, or commit hashes) that the hub cache already
holds. The cache is where ``huggingface_hub`` puts downloads (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and is laid out as::

    models--ORG--NAME/
        refs/step1000            # a text file holding the commit hash the branch points at
        snapshots/<commit>/      # that commit's files (symlinks into blobs/)
            config.json  model.safetensors ...
        blobs/<sha256>           # the file contents

Nothing here writes to the cache except :func:`download`, the one function that touches
the network, called only when the user asks for it (``--download``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from repeatlens.errors import ConfigError, first_line

__all__ = ["PREFIX", "HubRevisions", "parse_source", "cache_dir", "repo_dir", "cached_refs", "snapshot", "find_revisions", "download", "DOWNLOAD_PATTERNS"]

PREFIX = "hf:"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

#: Files fetched for a revision by :func:`download`: the config and the weights, nothing else.
DOWNLOAD_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json"]


def parse_source(source: str) -> Optional[str]:
    """``"ORG/NAME"`` for ``"hf:ORG/NAME"``, None for anything not starting with ``hf:``.

    Raises:
        ConfigError: ``hf:`` followed by something that is not ``ORG/NAME``.
    """
    s = str(source)
    if not s.startswith(PREFIX):
        return None
    repo = s[len(PREFIX) :].strip("/")
    if not _REPO.match(repo):
        raise ConfigError(f"{s}: expected hf:ORG/NAME, e.g. hf:EleutherAI/pythia-70m")
    return repo


def cache_dir() -> Path:
    """The hub cache: ``$HF_HUB_CACHE``, ``$HUGGINGFACE_HUB_CACHE``, ``$HF_HOME/hub`` or
    ``~/.cache/huggingface/hub`` (``$XDG_CACHE_HOME`` instead of ``~/.cache`` when set),
    as ``huggingface_hub`` resolves it, read from the environment at call time."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def repo_dir(repo: str, cache: Optional[Path] = None) -> Path:
    """``models--ORG--NAME`` in the cache."""
    return (cache or cache_dir()) / ("models--" + repo.replace("/", "--"))


def cached_refs(repo: str, cache: Optional[Path] = None) -> dict[str, str]:
    """Every ref (branch or tag name, nested ones as ``a/b``) the cache records, with its commit."""
    refs = repo_dir(repo, cache) / "refs"
    out: dict[str, str] = {}
    if not refs.is_dir():
        return out
    for f in sorted(refs.rglob("*")):
        if f.is_file():
            try:
                commit = f.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
            out[f.relative_to(refs).as_posix()] = commit
    return out


def snapshot(repo: str, revision: str, cache: Optional[Path] = None) -> Optional[Path]:
    """The snapshot folder of ``revision`` (a ref name or a commit hash), or None if not cached."""
    commit = cached_refs(repo, cache).get(revision) or (revision if _COMMIT.match(revision) else None)
    if commit is None:
        return None
    path = repo_dir(repo, cache) / "snapshots" / commit
    return path if path.is_dir() else None


@dataclass
class HubRevisions:
    """What :func:`find_revisions` found: ``(revision, snapshot folder)`` pairs, and
    ``(revision, reason)`` for the requested ones it could not provide."""

    repo: str
    found: list[tuple[str, Path]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def find_revisions(
    repo: str,
    revisions: Optional[Sequence[str]] = None,
    *,
    allow_download: bool = False,
    cache: Optional[Path] = None,
    has_step=None,
) -> HubRevisions:
    """The revisions of ``repo`` to analyse, from the cache (and the hub when allowed).

    Args:
        repo: ``ORG/NAME``.
        revisions: ref names or commit hashes; None: every ref the cache holds whose name
            gives a training step (``has_step(name)``; the others, such as ``main``, are
            listed in :attr:`HubRevisions.skipped`).
        allow_download: fetch requested revisions the cache lacks (:func:`download`).
        cache: the hub cache (default :func:`cache_dir`).
        has_step: predicate on a revision name (default: every name passes).
    """
    cache = cache or cache_dir()
    out = HubRevisions(repo)
    if revisions is None:
        refs = cached_refs(repo, cache)
        if not refs and not allow_download:
            raise ConfigError(
                f"hf:{repo}: not in the local hub cache ({repo_dir(repo, cache)}); download it first, "
                "or pass --download with --revisions"
            )
        names = [r for r in refs if has_step is None or has_step(r)]
        out.skipped = [r for r in refs if r not in names]
    else:
        names = list(dict.fromkeys(revisions))
    want = []
    for name in names:
        snap = snapshot(repo, name, cache)
        if snap is not None:
            out.found.append((name, snap))
        else:
            want.append(name)
    if want and allow_download:
        got = download(repo, want, cache)
        for name in want:
            res = got[name]
            if isinstance(res, Path):
                out.found.append((name, res))
            else:
                out.missing.append((name, res))
    else:
        out.missing += [(name, f"not in the local hub cache ({repo_dir(repo, cache)}); pass --download to fetch it") for name in want]
    return out


def download(repo: str, revisions: Sequence[str], cache: Optional[Path] = None) -> dict[str, Path | str]:
    """Fetch ``revisions`` of ``repo`` (config and weights only) into the hub cache.

    The only function in repeatlens that uses the network. ``HF_HUB_OFFLINE`` (which the
    CLI sets by default) is lifted for these calls only: the user asked for the download.

    Returns:
        ``revision -> snapshot folder``, or ``revision -> one-line reason`` when it failed.
    """
    import huggingface_hub
    from huggingface_hub import constants

    out: dict[str, Path | str] = {}
    was_offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        for rev in revisions:
            try:
                path = huggingface_hub.snapshot_download(repo, revision=rev, cache_dir=str(cache or cache_dir()), allow_patterns=DOWNLOAD_PATTERNS)
                out[rev] = Path(path)
            except Exception as e:  # noqa: BLE001 - no network, no such revision, gated repo: each is one line
                out[rev] = f"download failed ({type(e).__name__}: {first_line(e)})"
    finally:
        constants.HF_HUB_OFFLINE = was_offline
    return out
