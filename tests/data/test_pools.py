"""Pools by reference: the rows are the same as when they were copied, a run's disk grows with
its rows and not its tokens, and a deleted cache is one line and one command away."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from repeatlens.checkpoints import RunDir
from repeatlens.data.streams import cache_root, token_sha256
from repeatlens.errors import DataError
from repeatlens.train import prepare_run, train
from repeatlens.verify import verify_run
from tests.conftest import tiny_config
from tests.data.factories import tiny_text_run, write_text_corpus


def _h(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


#: (rows, is_synthetic, schedule) hashes of these configs' pools as main wrote them into
#: data/pool.npy before pools were stored by reference (commit 2e45871, /tmp script of issue 22):
#: the rows read through the references must be the very same bytes.
BEFORE = {
    "synthetic": ("3fed2a967df29c98", "a364b89af24a49e9", "7ce09224ecc47628"),
    "text_any": ("bcfc587d695fdd66", "b7c89f8e11230546", "7ce09224ecc47628"),
    "text_corpus": ("6a47a2ab490d2080", "7b3e882dda3b64b0", "7ce09224ecc47628"),
    "text_synthetic": ("add7ab64306fbe3f", "4fa74b9a9fdee815", "7ce09224ecc47628"),
    "text_only": ("ddddc3f57cb0f988", "d37ed83de65b33e0", "7ce09224ecc47628"),
}


def _configs(corpus: Path) -> dict:
    text = lambda **kw: tiny_config(**tiny_text_run(corpus, vocab_size=300, **kw.pop("data", {})), **kw)  # noqa: E731
    return {"synthetic": tiny_config(), **{f"text_{s}": text(mixture={"repeated_source": s}) for s in ("any", "corpus", "synthetic")},
            "text_only": text(data={"synthetic_fraction": 0.0})}


def test_referenced_pools_are_the_rows_main_copied_bit_for_bit(tmp_path: Path) -> None:
    corpus = write_text_corpus(tmp_path / "corpus.txt", n_docs=60)
    for name, cfg in _configs(corpus).items():
        run = prepare_run(cfg, tmp_path / name, progress=False)
        got = (_h(np.asarray(run.pool())), _h(np.asarray(run.is_synthetic())), run.manifest().schedule["sha256"][:16])
        assert got == BEFORE[name], name


def test_disk_per_run_grows_with_rows_not_tokens(tmp_path: Path) -> None:
    """The same number of rows at seq_len 32 and 256: the run's data files are the same size."""
    sizes = {}
    for seq_len in (32, 256):
        cfg = tiny_config(data={"seq_len": seq_len}, model={"n_ctx": seq_len},
                          mixture={"total_tokens": seq_len * 8 * 12})
        run = prepare_run(cfg, tmp_path / f"s{seq_len}", progress=False)
        assert np.asarray(run.pool()).shape == (16 + 6 + 72, seq_len)
        sizes[seq_len] = sum(f.stat().st_size for f in (run.path / "data").iterdir())
    assert sizes[32] == sizes[256] < 3000  # rows.npy + is_synthetic.npy + schedule.npy, bytes per row


def test_a_pool_view_indexes_like_the_array_it_stands_for(tmp_path: Path) -> None:
    corpus = write_text_corpus(tmp_path / "corpus.txt")
    run = prepare_run(tiny_config(**tiny_text_run(corpus, vocab_size=300)), tmp_path / "run", progress=False)
    view = run.pool()
    full = np.asarray(view)
    assert full.shape == view.shape == (94, 32) and full.dtype == view.dtype == np.uint16
    np.testing.assert_array_equal(view[3], full[3])
    np.testing.assert_array_equal(view[5:9], full[5:9])
    idx = np.array([40, 2, 2, 77])
    np.testing.assert_array_equal(view[idx], full[idx])
    np.testing.assert_array_equal(run.test_tokens(), full[:16])


@pytest.fixture
def text_run(tmp_path: Path) -> RunDir:
    corpus = write_text_corpus(tmp_path / "corpus.txt")
    return train(tiny_config(**tiny_text_run(corpus, vocab_size=300)), tmp_path / "run")


def test_a_deleted_cache_is_one_line_and_data_prepare_rebuilds_it(text_run: RunDir, capsys) -> None:
    from tests.test_cli import _run

    before = np.asarray(text_run.pool())
    stream = cache_root(text_run.config().data) / text_run.manifest().corpus["stream"]["name"]
    synthetic = cache_root(text_run.config().data) / text_run.manifest().pool["synthetic"]["cache"]
    stream.unlink()
    stream.with_suffix(".json").unlink()
    synthetic.unlink()
    with pytest.raises(DataError) as err:
        RunDir(text_run.path).pool()
    assert str(err.value) == (f"{text_run.path}: its tokenized corpus '{stream}' is missing (the cache was deleted or moved?); "
                              f"rebuild it with: repeatlens data prepare {text_run.path}")
    res = verify_run(text_run.path)
    assert [str(f) for f in res.findings] == [f"{stream}: missing: the run's corpus stream; rebuild it with: repeatlens data prepare {text_run.path}"]
    code, out, err = _run(["data", "prepare", str(text_run.path)], capsys)
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"corpus stream {stream}: ") and "as the run recorded" in out
    assert stream.is_file() and synthetic.is_file()  # the synthetic rows were regenerated into the cache too
    np.testing.assert_array_equal(np.asarray(RunDir(text_run.path).pool()), before)
    assert verify_run(text_run.path, [12]).ok  # and the run still replays bit-identically


def test_the_synthetic_rows_are_regenerated_when_their_cache_is_gone_and_checked(text_run: RunDir) -> None:
    spec = text_run.manifest().pool["synthetic"]
    cached = cache_root(text_run.config().data) / spec["cache"]
    rows = np.load(cached)
    assert token_sha256(rows) == spec["sha256"] and len(rows) == spec["n_test"] + spec["n_train"]
    before = np.asarray(text_run.pool())
    cached.unlink()
    np.testing.assert_array_equal(np.asarray(RunDir(text_run.path).pool()), before)  # regenerated on the fly, then cached
    np.testing.assert_array_equal(np.load(cached), rows)
    rows[0, 1] ^= 1  # a corrupted cache file is a verify finding naming it
    np.save(cached, rows)
    (finding,) = verify_run(text_run.path).findings
    assert str(finding) == f"{cached}: cached synthetic rows do not match their sha256; delete the file (it is regenerated)"


def test_a_corpus_changed_since_the_run_cannot_be_rebuilt_silently(text_run: RunDir, capsys) -> None:
    from tests.test_cli import _run

    man = text_run.manifest()
    stream = cache_root(text_run.config().data) / man.corpus["stream"]["name"]
    stream.unlink()
    Path(text_run.config().data.source).write_text("something else entirely " * 400)
    code, _, err = _run(["data", "prepare", str(text_run.path)], capsys)
    line = err.strip().splitlines()[-1]  # after the tokenizing progress bar
    assert code == 2 and "Traceback" not in err
    assert line.startswith(f"error: {text_run.path}: re-tokenizing '{text_run.config().data.source}' gives ") and line.endswith("the corpus changed since")
    assert not stream.exists()
