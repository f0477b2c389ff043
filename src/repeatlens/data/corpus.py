"""Corpus loaders: turn a data source into a stream of documents (one ``str`` each).

A source is one of:

- a bundled corpus name (``"shakespeare"``, see :data:`BUNDLED`);
- a text file (``.txt``, ``.md``, anything not named below; ``.gz`` is decompressed);
- a JSON-lines file (``.jsonl``, ``.jsonl.gz``), one object per line with a text field;
- a parquet file (``.parquet``) with a string text column;
- a Hugging Face dataset saved with ``datasets.Dataset.save_to_disk`` (a folder holding
  ``dataset_info.json``, ``state.json`` or ``dataset_dict.json``);
- a folder: every ``.txt``, ``.md``, ``.jsonl``, ``.jsonl.gz`` and ``.parquet`` file below
  it (or every file ending in one of ``extensions``, e.g. ``[".py"]``, read as text unless
  it ends in ``.jsonl``, ``.jsonl.gz`` or ``.parquet``), recursively, in sorted order,
  skipping hidden files and folders;
- a glob pattern (``data/*.txt``, ``data/**/*.jsonl``), matches in sorted order.

A text file is one document unless it contains ``<|endoftext|>``, which then separates
documents (the convention of GPT-2 style text dumps); this lets huge dumps stream. Blank
documents are skipped everywhere; a source with no non-blank document is an error.
Pre-tokenized flat token files (``.bin``) are read with :func:`load_token_bin` instead.
Every fault in the input raises a one-line :class:`~repeatlens.errors.DataError`.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Optional, Sequence

import numpy as np

from repeatlens.data.tokenizer import BOS_TOKEN
from repeatlens.errors import DataError, first_line, optional_import, os_error_message

if TYPE_CHECKING:
    from importlib.abc import Traversable

BUNDLED: dict[str, Traversable] = {
    "shakespeare": resources.files("repeatlens.data") / "corpora" / "shakespeare.jsonl.gz",
}
"""Corpora shipped in the package, by name (a ``pathlib.Path`` in a normal install)."""

FORMATS = ("auto", "text", "jsonl", "parquet", "hf")
FOLDER_SUFFIXES = (".txt", ".md", ".jsonl", ".jsonl.gz", ".parquet")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
TOKEN_DTYPES = ("uint16", "uint32")

_LOADER_VERSION = 1  # bump when the documents read from the same files change
_CHUNK_BYTES = 1 << 20
_GLOB_CHARS = "*?["


_first_line = first_line


@contextmanager
def _open_bytes(path: Path | Traversable) -> Iterator[BinaryIO]:
    """Open ``path`` for binary reading, decompressing a ``.gz`` file on the fly."""
    with path.open("rb") as raw:
        if path.name.endswith(".gz"):
            with gzip.open(raw) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield raw


def _format_of(path: Path | Traversable) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".bin"):
        raise DataError(f"'{path}' is a pre-tokenized token file, not text documents; load it as tokens")
    return "text"


def _is_hf_folder(path: Path) -> bool:
    return any((path / marker).is_file() for marker in HF_MARKERS)


def _folder_files(folder: Path, extensions: Optional[Sequence[str]] = None) -> list[Path]:
    suffixes = tuple(e.lower() for e in extensions) if extensions else FOLDER_SUFFIXES
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).parts
        if path.is_file() and path.name.lower().endswith(suffixes) and not any(p.startswith(".") for p in rel):
            found.append(path)
    if not found:
        how = "other endings" if extensions else "its files' endings, e.g. [.py]"
        raise DataError(
            f"data.source: folder '{folder}' holds no {', '.join(suffixes)} files; set data.extensions to {how}, or give a "
            f"glob such as '{folder}/**/*.py'"
        )
    return sorted(found)


def _plan(
    source: str | os.PathLike, format: str, extensions: Optional[Sequence[str]] = None
) -> list[tuple[Path | Traversable, str]]:
    """Resolve ``source`` into the files to read, each with its format, in order."""
    if format not in FORMATS:
        raise DataError(f"data.format: unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    path = Path(source).expanduser()
    if extensions and not path.is_dir():
        raise DataError(f"data.extensions applies to a folder source; '{source}' is not a folder (a glob names its files itself)")
    if isinstance(source, str) and source in BUNDLED:
        if format not in ("auto", "jsonl"):
            raise DataError(f"data.format: bundled corpus '{source}' is jsonl, not {format!r}")
        return [(BUNDLED[source], "jsonl")]
    if path.is_dir():
        if format == "hf" or (format == "auto" and _is_hf_folder(path)):
            return [(path, "hf")]
        files = _folder_files(path, extensions)
    elif path.is_file():
        files = [path]
    elif any(c in str(source) for c in _GLOB_CHARS):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(str(source)), recursive=True))
        files = [p for p in files if p.is_file()]
        if not files:
            raise DataError(f"data.source: no file, folder or glob match at '{source}' (the glob matches no file; a recursive glob reads 'data/**/*.txt')")
    else:
        files = []
    if not files:
        raise DataError(
            f"data.source: no file, folder or glob match at '{source}'; expected a bundled corpus ({', '.join(BUNDLED)}), a file, a folder, "
            "a glob such as 'data/**/*.txt' or a .bin token file"
        )
    if format == "hf":
        raise DataError(f"data.format: 'hf' needs a folder saved with datasets.save_to_disk, got '{source}'")
    return [(p, _format_of(p) if format == "auto" else format) for p in files]


def _iter_text(path: Path | Traversable) -> Iterator[str]:
    """Stream a UTF-8 text file, split into documents at :data:`BOS_TOKEN`."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes of (decompressed) input consumed before the current chunk
    pieces: list[str] = []  # the current, unfinished document
    tail = ""  # its last len(BOS_TOKEN) - 1 characters, where a separator may begin
    at_start = True  # no text decoded yet: a byte-order mark here is dropped
    with _open_bytes(path) as f:
        while True:
            chunk = f.read(_CHUNK_BYTES)
            nul = chunk.find(b"\0")
            if nul >= 0:
                raise DataError(f"'{path}' is a binary file (NUL byte at byte offset {offset + nul}); expected UTF-8 text")
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                bad = offset - buffered + exc.start
                raise DataError(f"'{path}' is not UTF-8 text (invalid byte at byte offset {bad})") from None
            if at_start and text:
                text, at_start = text.removeprefix("\ufeff"), False
            offset += len(chunk)
            if not chunk:
                break
            probe = tail + text
            if BOS_TOKEN in probe:
                *docs, rest = ("".join(pieces) + text).split(BOS_TOKEN)
                yield from docs
                pieces, probe = [rest], rest
            else:
                pieces.append(text)
            tail = probe[-(len(BOS_TOKEN) - 1) :]
    yield "".join(pieces)


def _iter_jsonl(path: Path | Traversable, text_field: str) -> Iterator[str]:
    """Stream the ``text_field`` of every object in a JSON-lines file."""
    offset = 0
    with _open_bytes(path) as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            nul = raw.find(b"\0")
            if nul >= 0:
                raise DataError(f"'{where}' is binary (NUL byte at byte offset {offset + nul}); expected JSON lines")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"'{where}' is not UTF-8 (invalid byte at byte offset {offset + exc.start})") from None
            offset += len(raw)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"'{where}' is not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"'{where}' is a JSON {type(obj).__name__}; expected an object with field '{text_field}'")
            if text_field not in obj:
                present = ", ".join(list(obj)[:20]) or "none"
                raise DataError(f"'{where}' has no field '{text_field}' (fields present: {present}); set data.text_field")
            text = obj[text_field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise DataError(f"'{where}' field '{text_field}' is a JSON {type(text).__name__}; expected a string")
            yield text


def _check_string_column(where: str, text_field: str, names: list[str], type_of: dict[str, str]) -> None:
    if text_field not in names:
        present = ", ".join(names[:20]) or "none"
        raise DataError(f"'{where}' has no column '{text_field}' (columns: {present}); set data.text_field")
    if type_of[text_field] not in ("string", "large_string", "string_view"):
        raise DataError(f"'{where}' column '{text_field}' has type {type_of[text_field]}; expected strings")


def _iter_parquet(path: Path, text_field: str) -> Iterator[str]:
    """Stream the ``text_field`` column of a parquet file in record batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"'{path}' is not a readable parquet file ({_first_line(exc)})") from None
    schema = pf.schema_arrow
    _check_string_column(str(path), text_field, schema.names, {f.name: str(f.type) for f in schema})
    for batch in pf.iter_batches(batch_size=1024, columns=[text_field]):
        yield from (t for t in batch.column(0).to_pylist() if t is not None)


def _iter_hf(path: Path, text_field: str) -> Iterator[str]:
    """Stream the ``text_field`` column of a dataset saved with ``save_to_disk``."""
    datasets = optional_import("datasets", f"reading '{path}' (a Hugging Face dataset)", "hf", error=DataError)
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a folder it cannot read
        raise DataError(f"'{path}' is not a dataset saved with datasets.save_to_disk ({_first_line(exc)})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(f"'{path}' has no 'train' split (splits: {', '.join(ds) or 'none'})")
        ds = ds["train"]
    names = list(ds.column_names)
    types = {n: getattr(ds.features[n], "dtype", type(ds.features[n]).__name__) for n in names}
    _check_string_column(str(path), text_field, names, types)
    for batch in ds.select_columns([text_field]).iter(batch_size=1024):
        yield from (t for t in batch[text_field] if t is not None)


def _read(path: Path | Traversable, fmt: str, text_field: str) -> Iterator[str]:
    try:
        if fmt == "text":
            yield from _iter_text(path)
        elif fmt == "jsonl":
            yield from _iter_jsonl(path, text_field)
        elif fmt == "parquet":
            yield from _iter_parquet(path, text_field)  # type: ignore[arg-type]
        else:
            yield from _iter_hf(path, text_field)  # type: ignore[arg-type]
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DataError(f"'{path}' is not a valid gzip file ({_first_line(exc)})") from None
    except OSError as exc:  # unreadable: permissions, a failing disk …
        raise DataError(f"data.source: {os_error_message(exc, path)}") from None


def _stream(source: str | os.PathLike, plan: list[tuple[Path | Traversable, str]], text_field: str) -> Iterator[str]:
    yielded = False
    for path, fmt in plan:
        for doc in _read(path, fmt, text_field):
            if doc.strip():
                yielded = True
                yield doc
    if not yielded:
        raise DataError(f"data.source: no documents in '{source}' (every document is empty)")


def iter_documents(
    source: str | os.PathLike, format: str = "auto", text_field: str = "text", extensions: Optional[Sequence[str]] = None
) -> Iterator[str]:
    """Stream the documents of a corpus, one string at a time.

    The source is resolved (and a missing path or unknown format reported) at call time;
    the files are read lazily as the iterator is consumed.

    Args:
        source: A bundled corpus name, a file, a folder, a glob pattern, or a folder saved
            with ``datasets.save_to_disk`` (see the module docstring). A ``str`` equal to a
            :data:`BUNDLED` name means the bundled corpus.
        format: ``"auto"`` (by file suffix / folder contents), ``"text"``, ``"jsonl"``,
            ``"parquet"`` or ``"hf"``; an explicit format applies to every matched file.
        text_field: The field (jsonl) or column (parquet, hf) holding the text.
        extensions: A folder source: the file name endings to read (default
            :data:`FOLDER_SUFFIXES`).

    Returns:
        An iterator over the non-blank documents, in a deterministic order.

    Raises:
        DataError: The source is missing, empty, unreadable or lacks ``text_field``
            (raised when reached while iterating, except for resolution faults).
    """
    return _stream(source, _plan(source, format, extensions), text_field)


def corpus_fingerprint(
    source: str | os.PathLike, format: str = "auto", text_field: str = "text", extensions: Optional[Sequence[str]] = None
) -> str:
    """Return a short hex digest that changes when the corpus changes; a cache key.

    Bundled corpora hash their file bytes. Files hash their resolved path, size and
    modification time (cheap; contents are not read). The resolved format of each file,
    ``text_field`` and the loader version are mixed in.

    Raises:
        DataError: The source cannot be resolved (see :func:`iter_documents`).
    """
    h = hashlib.sha256(json.dumps([_LOADER_VERSION, text_field]).encode())
    for path, fmt in _plan(source, format, extensions):
        if isinstance(source, str) and source in BUNDLED:
            h.update(f"bundled:{source}\0".encode())
            h.update(path.read_bytes())
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file()) if fmt == "hf" else [path]  # type: ignore[union-attr]
        for p in files:
            st = p.stat()
            h.update(f"{fmt}\0{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def load_token_bin(path: str | os.PathLike, dtype: str | np.dtype | type = "uint16", vocab_size: int | None = None) -> np.memmap:
    """Memory-map a pre-tokenized flat token file (raw little-endian ids) read-only.

    Args:
        path: The ``.bin`` file, e.g. written with ``ndarray.tofile``.
        dtype: ``"uint16"`` or ``"uint32"``.
        vocab_size: If given, also check that every id is below it (reads the whole file;
            catches a uint16 file read as uint32 and vice versa).

    Returns:
        A read-only 1-D ``np.memmap`` of token ids.

    Raises:
        DataError: The file is missing or empty, the dtype is not supported, the size is
            not a multiple of the dtype's size, or an id is out of range.
    """
    file = Path(path).expanduser()
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in TOKEN_DTYPES:
        raise DataError(f"token file '{file}': unsupported dtype '{dtype}'; expected uint16 or uint32")
    if not file.is_file():
        raise DataError(f"data.source: no token file at '{file}'")
    size = file.stat().st_size
    itemsize = np.dtype(name).itemsize
    if size == 0:
        raise DataError(f"token file '{file}' is empty; expected {name} token ids")
    if size % itemsize:
        raise DataError(f"token file '{file}' has {size} bytes, not a multiple of {itemsize}; is it really {name}?")
    tokens = np.memmap(file, dtype=np.dtype(name), mode="r")
    if vocab_size is not None and (top := max_token(file, name)) >= vocab_size:
        raise DataError(f"token file '{file}' holds id {top} >= vocab size {vocab_size}; is it really {name}?")
    return tokens


def max_token(path: str | os.PathLike, dtype: str, chunk: int = 1 << 24) -> int:
    """The largest id of a flat token file, read in chunks (no memory map: the file's pages
    never count towards the process's resident memory)."""
    top = 0
    with open(path, "rb") as fh:
        while len(part := np.fromfile(fh, dtype=np.dtype(dtype), count=chunk)):
            top = max(top, int(part.max()))
    return top


def token_file_fingerprint(path: str | os.PathLike, dtype: str) -> str:
    """A short hex digest of a ``.bin`` token file's resolved path, size, modification time
    and dtype: the cache key of its content hash (contents are not read).

    Raises:
        DataError: no file at ``path``.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data.source: no token file at '{file}'")
    st = file.stat()
    key = json.dumps([_LOADER_VERSION, "bin", str(file.resolve()), st.st_size, st.st_mtime_ns, str(dtype)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]
