"""Corpus loaders: every source kind yields the right documents; bad input is a DataError."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repeatlens.data import corpus
from repeatlens.data.corpus import BUNDLED, corpus_fingerprint, iter_documents, load_token_bin
from repeatlens.errors import DataError


def write_jsonl(path: Path, rows: list[dict], gz: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def raises_one_line(match: str, fn, *args, **kwargs) -> str:
    """Call ``fn`` (draining it if it returns an iterator); expect a one-line DataError."""
    with pytest.raises(DataError, match=match) as info:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- sources -------------------------------------------------------------------------


def test_bundled_shakespeare_has_42_works_with_hamlet():
    docs = list(iter_documents("shakespeare"))
    assert len(docs) == 42
    assert any("To be, or not to be" in d for d in docs)
    assert BUNDLED["shakespeare"].name == "shakespeare.jsonl.gz"


def test_text_file_is_one_document_exactly(tmp_path):
    text = "Ünïcödé line\n\ttabbed  line\r\nend 😀"
    path = tmp_path / "a.txt"
    path.write_bytes(text.encode("utf-8"))
    assert list(iter_documents(path)) == [text]
    assert list(iter_documents(str(path), format="text")) == [text]


def test_text_file_splits_at_endoftext_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "_CHUNK_BYTES", 2)  # BOM, separators and multibyte chars straddle chunks
    path = tmp_path / "dump.txt"
    path.write_text("\ufefffirst é doc<|endoftext|>second 😀<|endoftext|>\n<|endoftext|>third", encoding="utf-8")
    assert list(iter_documents(path)) == ["first é doc", "second 😀", "third"]


def test_gzipped_text_file(tmp_path):
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress("zipped words".encode()))
    assert list(iter_documents(path)) == ["zipped words"]


def test_glob_matches_in_sorted_order(tmp_path):
    for name, text in [("b.txt", "bee"), ("a.txt", "ay"), ("c.md", "sea")]:
        (tmp_path / name).write_text(text)
    assert list(iter_documents(str(tmp_path / "*.txt"))) == ["ay", "bee"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_text("dee")
    assert list(iter_documents(str(tmp_path / "**" / "*.txt"))) == ["ay", "bee", "dee"]


def test_folder_mixes_formats_recursively_sorted_and_skips_others(tmp_path):
    (tmp_path / "a.txt").write_text("from txt")
    (tmp_path / "b.md").write_text("from md")
    write_jsonl(tmp_path / "c.jsonl", [{"text": "jsonl one"}, {"text": "jsonl two"}])
    write_jsonl(tmp_path / "d.jsonl.gz", [{"text": "from gz"}], gz=True)
    write_parquet(tmp_path / "e.parquet", {"text": ["pq one", "pq two"]})
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.txt").write_text("nested")
    (tmp_path / "notes.csv").write_text("ignored,csv")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "g.txt").write_text("ignored hidden")
    assert list(iter_documents(tmp_path)) == [
        "from txt", "from md", "jsonl one", "jsonl two", "from gz", "pq one", "pq two", "nested",
    ]


def test_jsonl_and_gz_with_custom_field_skip_blank_and_null(tmp_path):
    rows = [{"body": "one", "id": 1}, {"body": None}, {"body": "   "}, {"body": "two"}]
    plain = write_jsonl(tmp_path / "x.jsonl", rows)
    with plain.open("a") as f:
        f.write("\n")  # a trailing blank line is fine
    gz = write_jsonl(tmp_path / "x.jsonl.gz", rows, gz=True)
    assert list(iter_documents(plain, text_field="body")) == ["one", "two"]
    assert list(iter_documents(gz, text_field="body")) == ["one", "two"]


def test_explicit_format_overrides_suffix(tmp_path):
    path = write_jsonl(tmp_path / "rows.dat", [{"text": "forced"}])
    assert list(iter_documents(path, format="jsonl")) == ["forced"]
    assert list(iter_documents(path)) == ['{"text": "forced"}\n']  # auto: unknown suffix is text


def test_parquet_reads_text_column(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"content": ["alpha", None, "beta"], "n": [1, 2, 3]})
    assert list(iter_documents(path, text_field="content")) == ["alpha", "beta"]


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["hf one", "hf two"], "label": [0, 1]}).save_to_disk(tmp_path / "ds")
    assert list(iter_documents(tmp_path / "ds")) == ["hf one", "hf two"]
    assert list(iter_documents(tmp_path / "ds", format="hf")) == ["hf one", "hf two"]


def test_hf_dataset_dict_uses_train_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["train doc"]}),
        "test": datasets.Dataset.from_dict({"text": ["test doc"]}),
    })
    dd.save_to_disk(tmp_path / "dd")
    assert list(iter_documents(tmp_path / "dd")) == ["train doc"]


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_token_bin_round_trip_read_only(tmp_path, dtype):
    ids = np.array([0, 5, 65535, 7, 0, 1], dtype=dtype)
    if dtype == "uint32":
        ids[2] = 70000
    path = tmp_path / "tokens.bin"
    ids.tofile(path)
    tokens = load_token_bin(path, dtype=dtype)
    assert isinstance(tokens, np.memmap)
    assert tokens.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(tokens, ids)
    with pytest.raises(ValueError):
        tokens[0] = 1


def test_corpus_fingerprint_tracks_changes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("version one")
    first = corpus_fingerprint(tmp_path)
    assert first == corpus_fingerprint(tmp_path)
    assert len(first) == 16 and int(first, 16) >= 0
    path.write_text("version two, longer")
    assert corpus_fingerprint(tmp_path) != first
    before = corpus_fingerprint(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, touched
    assert corpus_fingerprint(path) != before
    (tmp_path / "b.txt").write_text("new file")
    assert corpus_fingerprint(tmp_path) != corpus_fingerprint(path)
    assert corpus_fingerprint(path, text_field="body") != corpus_fingerprint(path)


def test_bundled_fingerprint_is_stable():
    assert corpus_fingerprint("shakespeare") == corpus_fingerprint("shakespeare")
    assert corpus_fingerprint("shakespeare") != corpus_fingerprint("shakespeare", text_field="title")


# --- bad input -----------------------------------------------------------------------


def test_missing_path_and_empty_glob(tmp_path):
    raises_one_line(r"data.source: no file, folder or glob match at '.*nothing.txt'", iter_documents, tmp_path / "nothing.txt")
    raises_one_line(r"no file, folder or glob match at '.*\*.jsonl'", iter_documents, str(tmp_path / "*.jsonl"))


def test_folder_without_corpus_files(tmp_path):
    (tmp_path / "x.csv").write_text("a,b")
    raises_one_line(r"folder '.*' holds no \.txt", iter_documents, tmp_path)


def test_empty_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.txt").write_text("  \n\t")
    raises_one_line(r"no documents in '.*'", iter_documents, tmp_path)
    write_jsonl(tmp_path / "c.jsonl", [{"text": ""}])
    raises_one_line(r"no documents in '.*c.jsonl'", iter_documents, tmp_path / "c.jsonl")


def test_binary_file_names_file_and_offset(tmp_path):
    path = tmp_path / "blob.txt"
    path.write_bytes(b"abc\0def")
    raises_one_line(r"'.*blob.txt' is a binary file \(NUL byte at byte offset 3\)", iter_documents, path)


@pytest.mark.parametrize("chunk", [1 << 20, 3])
def test_non_utf8_names_file_and_offset(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(corpus, "_CHUNK_BYTES", chunk)
    path = tmp_path / "latin1.txt"
    path.write_bytes("héllo ".encode() + "café".encode("latin-1"))  # bad byte 0xe9 at offset 10
    raises_one_line(r"'.*latin1.txt' is not UTF-8 text \(invalid byte at byte offset 10\)", iter_documents, path)
    truncated = tmp_path / "cut.txt"
    truncated.write_bytes("ok é".encode()[:-1])  # file ends inside a 2-byte character
    raises_one_line(r"'.*cut.txt' is not UTF-8 text \(invalid byte at byte offset 3\)", iter_documents, truncated)


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": oops}\n')
    raises_one_line(r"'.*bad.jsonl:2' is not valid JSON", iter_documents, path)
    path.write_text('["a", "list"]\n')
    raises_one_line(r"'.*bad.jsonl:1' is a JSON list; expected an object with field 'text'", iter_documents, path)


def test_jsonl_missing_or_non_string_field(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": "ok"}, {"title": "T", "body": "B"}])
    raises_one_line(r"'.*rows.jsonl:2' has no field 'text' \(fields present: title, body\)", iter_documents, path)
    path = write_jsonl(tmp_path / "num.jsonl", [{"text": 12}])
    raises_one_line(r"'.*num.jsonl:1' field 'text' is a JSON int; expected a string", iter_documents, path)


def test_jsonl_not_utf8_and_corrupt_gzip(tmp_path):
    path = tmp_path / "enc.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n')
    raises_one_line(r"'.*enc.jsonl:2' is not UTF-8 \(invalid byte at byte offset 24\)", iter_documents, path)
    gz = tmp_path / "broken.jsonl.gz"
    gz.write_bytes(b"this is not gzip data")
    raises_one_line(r"'.*broken.jsonl.gz' is not a valid gzip file", iter_documents, gz)


def test_parquet_missing_column_wrong_type_and_corrupt(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"body": ["x"], "n": [1]})
    raises_one_line(r"'.*t.parquet' has no column 'text' \(columns: body, n\)", iter_documents, path)
    raises_one_line(r"'.*t.parquet' column 'n' has type int64; expected strings", iter_documents, path, text_field="n")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    raises_one_line(r"'.*junk.parquet' is not a readable parquet file", iter_documents, junk)


def test_hf_errors_name_the_dataset(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"body": ["x"]}).save_to_disk(tmp_path / "ds")
    raises_one_line(r"'.*ds' has no column 'text' \(columns: body\)", iter_documents, tmp_path / "ds")
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": ["v"]})}).save_to_disk(tmp_path / "dd")
    raises_one_line(r"'.*dd' has no 'train' split \(splits: validation\)", iter_documents, tmp_path / "dd")
    (tmp_path / "plain").mkdir()
    raises_one_line(r"'.*plain' is not a dataset saved with datasets.save_to_disk", iter_documents, tmp_path / "plain", format="hf")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if datasets were not installed
    raises_one_line(r"pip install 'repeatlens\[hf\]'", iter_documents, tmp_path / "ds")


def test_unknown_format_and_bin_as_text(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    raises_one_line(r"data.format: unknown format 'csv'; expected one of auto, text", iter_documents, tmp_path, format="csv")
    raises_one_line(r"bundled corpus 'shakespeare' is jsonl", iter_documents, "shakespeare", format="parquet")
    np.arange(4, dtype=np.uint16).tofile(tmp_path / "t.bin")
    raises_one_line(r"'.*t.bin' is a pre-tokenized token file", iter_documents, tmp_path / "t.bin")


def test_token_bin_errors(tmp_path):
    raises_one_line(r"no token file at '.*missing.bin'", load_token_bin, tmp_path / "missing.bin")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    raises_one_line(r"'.*empty.bin' is empty", load_token_bin, empty)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02\x00\x03\x00")  # 6 bytes: three uint16, not uint32
    raises_one_line(r"'.*odd.bin' has 6 bytes, not a multiple of 4; is it really uint32\?", load_token_bin, odd, "uint32")
    raises_one_line(r"'.*odd.bin': unsupported dtype 'int64'", load_token_bin, odd, "int64")
    raises_one_line(r"'.*odd.bin': unsupported dtype 'float'", load_token_bin, odd, "float")
    wide = tmp_path / "wide.bin"
    np.array([1, 2, 3, 4], dtype=np.uint16).tofile(wide)  # read as uint32: ids of 131073 and more
    raises_one_line(r"'.*wide.bin' holds id 262147 >= vocab size 512", load_token_bin, wide, "uint32", vocab_size=512)
    assert list(load_token_bin(wide, "uint16", vocab_size=512)) == [1, 2, 3, 4]


# --- every corpus form trains ------------------------------------------------------------


def _train_cli(tmp_path: Path, capsys, cfg, out: str = "run"):
    """``repeatlens data prepare`` then ``repeatlens train`` on ``cfg`` through the command line; the run."""
    from repeatlens.checkpoints import load_run
    from tests.test_cli import _run, _write_cfg

    path = _write_cfg(tmp_path / f"{out}.yaml", cfg.model_dump(mode="json"))
    code, prep, err = _run(["data", "prepare", str(path)], capsys)
    assert code == 0, err
    code, _, err = _run(["train", str(path), "--out", str(tmp_path / out), "-q"], capsys)
    assert code == 0, err
    return prep, load_run(tmp_path / out)


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_a_bin_corpus_trains(tmp_path, capsys, dtype):
    """nanoGPT-style .bin token files, uint16 and uint32, with a BOS that is not 0."""
    from tests.conftest import tiny_config
    from tests.data.factories import tiny_text_run, write_bin

    vocab, bos = 70, 69
    path = write_bin(tmp_path / "train.bin", 5000, vocab=vocab, bos=bos, dtype=dtype)
    stream = np.fromfile(path, dtype=dtype)
    prep, run = _train_cli(tmp_path, capsys, tiny_config(**tiny_text_run(path, bin_dtype=dtype, bin_bos_id=bos)))
    assert f"{5000 // 31:,} sequences of 32 tokens (vocab {vocab}" in prep  # vocab = max id + 1
    pool, kinds = np.asarray(run.pool()), run.is_synthetic()
    assert run.is_complete() and (pool[:, 0] == bos).all()
    body = stream[: (len(stream) // 31) * 31].reshape(-1, 31)
    refs = np.load(run.rows_path)
    np.testing.assert_array_equal(pool[~kinds][:, 1:], body[refs[~kinds]])  # corpus rows are the file's rows, referenced
    assert run.manifest().corpus["stream"]["sha256"] == sha256_of(path)


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_folder_of_source_files_trains_with_data_extensions(tmp_path, capsys):
    from tests.conftest import tiny_config
    from tests.data.factories import tiny_text_run, word_documents

    src = tmp_path / "repo"
    (src / "pkg" / "sub").mkdir(parents=True)
    docs = word_documents(30, seed=3)
    for i, doc in enumerate(docs):
        (src / "pkg" / ("sub" if i % 2 else "") / f"m{i:02d}.py").write_text(f"def f{i}(x):\n    return '{doc}'\n")
    (src / "README.md").write_text("not code " * 50)
    (src / "pkg" / "data.csv").write_text("a,b\n1,2\n")
    (src / ".git").mkdir()
    (src / ".git" / "hidden.py").write_text("never read")
    # without data.extensions the folder's .py files are not corpus files: one line naming the field and the glob form
    only_code = tmp_path / "only_code"
    (only_code / "x").mkdir(parents=True)
    (only_code / "x" / "a.py").write_text("print(1)\n")
    msg = raises_one_line(r"folder '.*only_code' holds no \.txt, \.md, \.jsonl, \.jsonl\.gz, \.parquet files", iter_documents, only_code)
    assert "set data.extensions to its files' endings, e.g. [.py]" in msg and f"'{only_code}/**/*.py'" in msg
    msg = raises_one_line(r"holds no \.rs files; set data.extensions to other endings", iter_documents, only_code, extensions=[".rs"])
    raises_one_line(r"data.extensions applies to a folder source; '.*a.py' is not a folder", iter_documents, only_code / "x" / "a.py",
                    extensions=[".py"])
    got = list(iter_documents(src, extensions=[".py"]))
    assert len(got) == 30 and all(d.startswith("def f") for d in got) and not any("never read" in d for d in got)
    assert got == [(p.read_text()) for p in sorted((src / "pkg").rglob("*.py"))]
    _, run = _train_cli(tmp_path, capsys, tiny_config(**tiny_text_run(src, extensions=[".py"], vocab_size=300)))
    assert run.is_complete() and run.manifest().special_ids["bos_token"] == "<|endoftext|>"


def test_a_glob_of_source_files_trains_and_one_that_matches_nothing_says_so(tmp_path, capsys):
    from tests.conftest import tiny_config
    from tests.data.factories import tiny_text_run, word_documents

    for i, doc in enumerate(word_documents(30, seed=4)):
        (tmp_path / f"m{i:02d}.py").write_text(f"x = '{doc}'\n")
    raises_one_line(r"no file, folder or glob match at '.*\*\.rs' \(the glob matches no file; a recursive glob reads 'data/\*\*/\*\.txt'\)",
                    iter_documents, str(tmp_path / "*.rs"))
    _, run = _train_cli(tmp_path, capsys, tiny_config(**tiny_text_run(str(tmp_path / "*.py"), vocab_size=300)))
    assert run.is_complete()


def test_data_extensions_must_be_endings() -> None:
    import re

    from repeatlens.config import DataConfig, config_from_dict
    from repeatlens.errors import ConfigError

    assert DataConfig(extensions=[".py", ".jsonl.gz"]).extensions == [".py", ".jsonl.gz"]
    for bad in ("py", "*.py", ".", "src/.py"):
        with pytest.raises(ConfigError, match=rf"field 'data.extensions' = \['{re.escape(bad)}'\]: '{re.escape(bad)}' is not a file name ending; expected e.g. .py"):
            config_from_dict({"mixture": {"total_tokens": 1000}, "data": {"extensions": [bad]}})
