"""hf:ORG/NAME from the local hub cache: layout, revisions, no network, the cache left alone.

The cache is built here the way huggingface_hub lays it out (blobs named by content hash,
snapshots of symlinks, refs holding commit hashes); huggingface_hub's own cache reader
(``scan_cache_dir``) and resolver (``snapshot_download(local_files_only=True)``) are asked
to agree with it before repeatlens reads it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from repeatlens import hub
from repeatlens.results.store import load_scores
from repeatlens.cli import main
from repeatlens.errors import ConfigError
from tests.model.tiny_hf import save_tiny

REPO = "Org/tiny-pythia"


def add_revision(cache: Path, repo: str, ref: str | None, src: Path, commit: str) -> Path:
    """Put the files of ``src`` into the cache as huggingface_hub does for one commit."""
    root = hub.repo_dir(repo, cache)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)
    for f in sorted(src.iterdir()):
        data = f.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    if ref is not None:
        (root / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


def commit_of(i: int) -> str:
    return hashlib.sha1(str(i).encode()).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hub cache holding step0, step1000 and main (= step1000) of a tiny GPT-NeoX."""
    c = tmp_path / "hf-home" / "hub"
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for i, step in enumerate((0, 1000)):
        save_tiny(tmp_path / "src" / f"step{step}", "gpt_neox", seed=step)
        add_revision(c, REPO, f"step{step}", tmp_path / "src" / f"step{step}", commit_of(i))
    (hub.repo_dir(REPO, c) / "refs" / "main").write_text(commit_of(1))
    return c


def snapshot_of_cache(c: Path) -> dict[str, bytes]:
    return {str(p.relative_to(c)): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes()) for p in sorted(c.rglob("*")) if not p.is_dir()}


def test_the_fake_cache_is_what_huggingface_hub_reads(cache: Path) -> None:
    import huggingface_hub

    assert hub.cache_dir() == cache
    info = huggingface_hub.scan_cache_dir(cache)
    (repo,) = info.repos
    assert repo.repo_id == REPO and not info.warnings
    assert {ref for rev in repo.revisions for ref in rev.refs} == {"step0", "step1000", "main"}
    for ref in ("step0", "step1000"):
        resolved = huggingface_hub.snapshot_download(REPO, revision=ref, cache_dir=str(cache), local_files_only=True)
        assert Path(resolved) == hub.snapshot(REPO, ref)
    assert hub.cached_refs(REPO) == {"main": commit_of(1), "step0": commit_of(0), "step1000": commit_of(1)}
    assert hub.snapshot(REPO, commit_of(0)) == hub.repo_dir(REPO) / "snapshots" / commit_of(0)
    assert hub.snapshot(REPO, "step5") is None


def test_hf_source_is_scored_offline_and_the_cache_left_alone(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_network) -> None:
    before = snapshot_of_cache(cache)
    out = tmp_path / "out"
    main(["analyze", f"hf:{REPO}", "--out", str(out), "-q", "-m", "induction", "--tokens-per-step", "2097152"])
    err = capsys.readouterr().err
    assert f"hf:{REPO}: skipped cached revision(s) main: their names give no training step" in err
    assert "duplicate: revision" not in err  # main is not analysed, so it cannot duplicate step1000
    df = load_scores(out)
    assert sorted(df.step.unique()) == [0, 1000] and (df.run_id == "tiny-pythia").all()
    assert df[df.step == 1000].tokens_seen.iloc[0] == 1000 * 2_097_152
    assert snapshot_of_cache(cache) == before  # nothing written to the cache
    assert not list(cache.rglob("scores.parquet"))


def test_named_revisions_and_missing_ones(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_network) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["analyze", f"hf:{REPO}", "--out", str(out), "-q", "-m", "induction", "--revisions", f"step1000,step2000,{commit_of(0)},main"])
    assert exc.value.code == 1
    err = capsys.readouterr().err.splitlines()
    missing = [ln for ln in err if f"hf:{REPO}@step2000" in ln]
    assert len(missing) == 1 and "not in the local hub cache" in missing[0] and "--download" in missing[0]
    assert len([ln for ln in err if f"hf:{REPO}@{commit_of(0)}" in ln and "gives no training step" in ln]) == 1
    assert len([ln for ln in err if f"hf:{REPO}@main" in ln and "gives no training step" in ln]) == 1
    assert sorted(load_scores(out).step.unique()) == [1000]


def test_hf_source_needs_out_and_a_cached_repo(cache: Path) -> None:
    from repeatlens.foreign import discover

    with pytest.raises(ConfigError, match="--out is required"):
        discover(f"hf:{REPO}")
    with pytest.raises(ConfigError, match="hf:Org/absent: not in the local hub cache"):
        discover("hf:Org/absent", out="x")
    with pytest.raises(ConfigError, match="expected hf:ORG/NAME"):
        hub.parse_source("hf:no-slash")


def test_download_fetches_only_what_is_asked_through_one_function(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--download: the missing revision goes through huggingface_hub.snapshot_download with
    the offline switch lifted for that call only (the network itself is simulated)."""
    import huggingface_hub
    from huggingface_hub import constants

    from repeatlens.foreign import discover

    save_tiny(tmp_path / "src" / "step2000", "gpt_neox", seed=2000)
    calls = []

    def fake_snapshot_download(repo_id, *, revision, cache_dir, allow_patterns, **kw):
        calls.append((repo_id, revision, constants.HF_HUB_OFFLINE, allow_patterns))
        return str(add_revision(Path(cache_dir), repo_id, revision, tmp_path / "src" / "step2000", commit_of(2)))

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    folder = discover(f"hf:{REPO}", out=tmp_path / "out", revisions=["step0", "step2000"], download=True)
    assert calls == [(REPO, "step2000", False, hub.DOWNLOAD_PATTERNS)]  # step0 came from the cache
    assert constants.HF_HUB_OFFLINE is True  # restored
    assert [c.step for c in folder.checkpoints] == [0, 2000] and not folder.problems


def test_download_without_a_network_is_one_line(cache: Path, tmp_path: Path, no_network) -> None:
    from repeatlens.foreign import discover

    folder = discover(f"hf:{REPO}", out=tmp_path / "out", revisions=["step3000"], download=True)
    ((where, reason),) = folder.problems
    assert where == f"hf:{REPO}@step3000" and reason.startswith("download failed (") and "\n" not in reason
