"""``repeatlens audit``: count a corpus's repetition, map it against the predicted damage, write it.

One streaming pass over the corpus (:mod:`.stream`) feeds the exact counters (:mod:`.count`),
the MinHash index (:mod:`.near`) and, while the stream is small enough, the suffix array
(:mod:`.spans`). The counts become the tidy (f, E) table (:mod:`.table`), the damage map
(:mod:`.region`, :mod:`.damage`), the figure (:mod:`.figure`) and optionally a sweep
(:mod:`.bridge`). Every option is checked, and the corpus and the region's source resolved,
before the corpus is read; every output is written only after everything is computed, each
file atomically, ``audit.json`` (the record of the settings and of the files) last.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from pydantic import ValidationError
from tqdm.auto import tqdm

from repeatlens.config import DataConfig, ModelConfig, format_validation_error, load_config
from repeatlens.corpus_audit.count import DocumentCounter, StreamCutter, UnitCounts
from repeatlens.corpus_audit.damage import damage_table, summary_lines
from repeatlens.corpus_audit.region import Region, RegionSource, region_source
from repeatlens.corpus_audit.stream import CorpusReader, open_corpus
from repeatlens.corpus_audit.table import BINS, UNITS, audit_table, bucket_examples
from repeatlens.errors import ConfigError, DataError
from repeatlens.io import atomic_write, atomic_write_json, atomic_write_text

AUDIT_FORMAT = "repeatlens-audit/1"
DEFAULT_SPAN_MAX_TOKENS = 50_000_000
"""Largest stream whose repeated spans are counted by default (about 1.5 GB at 30 bytes/token)."""
SIZE_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(value: Any, what: str) -> float:
    """A positive count written as a number or with a suffix (``10M``, ``1.3e9``, ``125k``).

    >>> parse_count("10M", "--model-size"), parse_count(3.5e8, "--tokens")
    (10000000.0, 350000000.0)
    """
    text = str(value).strip().replace("_", "").replace(",", "")
    scale = SIZE_SUFFIXES.get(text[-1:].lower(), 1.0) if text else 1.0
    body = text[:-1] if scale != 1.0 else text
    try:
        number = float(body) * scale
    except ValueError:
        raise ConfigError(f"{what} {value!r}: expected a number such as 1e7 or 10M") from None
    if not (number > 0 and math.isfinite(number)):
        raise ConfigError(f"{what} {value!r}: expected a positive number")
    return number


@dataclass(frozen=True)
class AuditOptions:
    """What to count and how (every field has the CLI's default)."""

    epochs: Optional[float] = None
    tokens: Optional[float] = None
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 5
    minhash_seed: int = 1
    spans: bool = True
    span_min: int = 50
    span_max_tokens: int = DEFAULT_SPAN_MAX_TOKENS
    bins: str = "log"
    examples: int = 3
    region: str = "study"
    png: bool = False
    write_sweep: Optional[Path] = None
    sweep_unit: str = "document"
    progress: bool = True

    def check(self) -> None:
        """Raise a one-line ConfigError for the first impossible option."""
        if self.epochs is not None and self.tokens is not None:
            raise ConfigError("--epochs and --tokens are both set; give one (the other follows from the corpus's size)")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ConfigError(f"--epochs {self.epochs}: expected a positive number of passes over the corpus")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"--threshold {self.threshold}: expected a Jaccard similarity in (0, 1]")
        for name, value, low in (("--num-perm", self.num_perm, 2), ("--shingle", self.shingle, 1),
                                 ("--span-min", self.span_min, 2), ("--span-max-tokens", self.span_max_tokens, 0),
                                 ("--examples", self.examples, 0)):
            if value < low:
                raise ConfigError(f"{name} {value}: expected an integer >= {low}")
        if self.bins not in BINS:
            raise ConfigError(f"--bins {self.bins!r}: expected one of {', '.join(BINS)}")
        if self.sweep_unit not in UNITS:
            raise ConfigError(f"--sweep-unit {self.sweep_unit!r}: expected one of {', '.join(UNITS)}")
        off = {"near_document": not self.near, "span": not self.spans}
        if self.write_sweep is not None and off.get(self.sweep_unit):
            raise ConfigError(f"--sweep-unit {self.sweep_unit}: that unit is switched off (--no-{'near' if self.sweep_unit == 'near_document' else 'spans'})")


@dataclass
class ModelSize:
    """The model size the damage map is read at, and where it came from."""

    n: float
    source: str
    model: Optional[ModelConfig] = None


@dataclass
class AuditResult:
    """Everything the audit computed (what it wrote lies under ``out``).

    Attributes:
        table: the tidy (f, E) table (``audit.csv``).
        damage: the table with each bucket's ``region`` status (``damage.csv``), or None.
        region: the predicted region at the model size, or None without a model size.
        summary: the plain-text summary, one line each.
        record: what ``audit.json`` holds (settings, totals, what was skipped, files).
        figure: the plotly figure (``audit.html``).
        files: the files written.
        sweep_error: why a requested sweep was not written, or None.
        examples: up to ``examples`` named items per bucket, ``{(unit, lowest copy count): [...]}``.
    """

    table: pd.DataFrame
    damage: Optional[pd.DataFrame]
    region: Optional[Region]
    summary: list[str]
    record: dict[str, Any]
    figure: Any
    files: list[Path] = field(default_factory=list)
    sweep_error: Optional[str] = None
    examples: dict = field(default_factory=dict)


def data_settings(corpus: str | os.PathLike, base: Optional[DataConfig], **fields: Any) -> DataConfig:
    """The data settings to read ``corpus`` with: ``base`` (a run config's) with the given
    fields (those not None) and the source replaced."""
    merged = {**(base.model_dump() if base is not None else {}), **{k: v for k, v in fields.items() if v is not None}}
    merged["source"] = str(corpus)
    try:
        return DataConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "audit")) from None


def resolve_model_size(model_size: Any, preset: Optional[str], config_model: Optional[ModelConfig], config_path: Optional[str]) -> Optional[ModelSize]:
    """The size to read the region at: ``--model-size``, ``--preset`` or the run config's model."""
    if model_size is not None and preset is not None:
        raise ConfigError("--model-size and --preset are both set; give one")
    if model_size is not None:
        return ModelSize(parse_count(model_size, "--model-size"), "--model-size")
    if preset is not None:
        try:
            model = ModelConfig(preset=preset)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "--preset")) from None
        return ModelSize(0.0, f"preset {preset}", model)
    if config_model is not None:
        return ModelSize(0.0, f"config {config_path}", config_model)
    return None


def _count(reader: CorpusReader, opts: AuditOptions, work: Path) -> tuple[list[UnitCounts], dict[str, Any], dict[str, Any]]:
    """The streaming pass: every unit's counts, the corpus totals, what was skipped."""
    docs = DocumentCounter(work)
    near = None
    if opts.near:
        from repeatlens.corpus_audit.near import NearDuplicates

        near = NearDuplicates(work, threshold=opts.threshold, num_perm=opts.num_perm, shingle=opts.shingle, seed=opts.minhash_seed)
    if opts.spans:
        from repeatlens.corpus_audit.spans import _require_pydivsufsort

        _require_pydivsufsort()
    cutter = StreamCutter(reader.data.seq_len, reader.bos, reader.dtype,
                          spill=work / "stream.bin" if opts.spans else None, spill_limit=opts.span_max_tokens)
    max_id = -1
    with tqdm(desc="auditing", unit="doc", disable=not opts.progress) as bar:
        for doc in reader.documents():
            idx, new = docs.add(doc)
            cutter.feed(doc)
            if len(doc.ids):
                max_id = max(max_id, int(doc.ids.max()))
            if near is not None and new:
                near.add(idx, doc.ids)
            bar.update()
    if docs.n_documents == 0:
        raise DataError(f"data.source: no documents in '{reader.data.source}'")
    units = [docs.finish()]
    seqs, stream = cutter.finish()
    skipped: dict[str, Any] = {}
    if near is not None:
        from repeatlens.corpus_audit.near import near_counts

        units.append(near_counts(units[0], near.clusters(opts.progress), near))
    else:
        skipped["near_document"] = "switched off (--no-near)"
    if seqs.items:
        units.append(seqs)
    else:
        skipped["sequence"] = f"the stream ({cutter.stream_tokens:,} tokens) fills no sequence of {reader.data.seq_len} tokens"
    if stream is not None:
        from repeatlens.corpus_audit.spans import span_counts

        units.append(span_counts(stream, opts.span_min, reader.decode))
    elif not opts.spans:
        skipped["span"] = "switched off (--no-spans)"
    else:
        skipped["span"] = (f"the stream holds {cutter.stream_tokens:,} tokens, over the suffix array's limit of "
                           f"{opts.span_max_tokens:,} (--span-max-tokens; about 30 bytes of memory per token)")
    totals = {"documents": docs.n_documents, "distinct_documents": len(docs.copies), "stream_tokens": cutter.stream_tokens,
              "sequences": seqs.copies.sum().item() if seqs.items else 0, "max_id": max_id,
              "near": near.settings() if near is not None else None}
    return units, totals, skipped


def _versions() -> dict[str, Optional[str]]:
    out = {}
    for name in ("repeatlens", "tokenizers", "datasketch", "pydivsufsort", "xxhash", "plotly"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _write_outputs(out: Path, result: AuditResult, sweep_text: Optional[str], sweep_path: Optional[Path], png: bool) -> list[Path]:
    """Write every output, each atomically; the figure is rendered first, audit.json last."""
    from repeatlens.plots.export import write_figures

    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".audit-figure-", dir=out))
    try:
        write_figures({"audit": result.figure}, stage, ["html", "png"] if png else ["html"], include_plotlyjs=True)
        written = []
        atomic_write(out / "audit.parquet", lambda p: result.table.to_parquet(p, index=False))
        atomic_write_text(out / "audit.csv", result.table.to_csv(index=False))
        written += [out / "audit.parquet", out / "audit.csv"]
        if result.damage is not None:
            atomic_write_text(out / "damage.csv", result.damage.to_csv(index=False))
            written.append(out / "damage.csv")
        atomic_write_text(out / "summary.txt", "\n".join(result.summary) + "\n")
        written.append(out / "summary.txt")
        if sweep_text is not None and sweep_path is not None:
            atomic_write_text(sweep_path, sweep_text)
            written.append(sweep_path)
        for staged in sorted(stage.iterdir()):
            atomic_write(out / staged.name, lambda p, src=staged: shutil.copyfile(src, p))
            written.append(out / staged.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result.record["files"] = [p.name if p.parent == out else str(p) for p in written] + ["audit.json"]
    atomic_write_json(out / "audit.json", result.record)
    return written + [out / "audit.json"]


def audit(
    corpus: str | os.PathLike,
    out: Optional[str | os.PathLike] = None,
    *,
    config: Optional[str | os.PathLike] = None,
    seq_len: Optional[int] = None,
    vocab_size: Optional[int] = None,
    tokenizer: Optional[str] = None,
    format: Optional[str] = None,
    text_field: Optional[str] = None,
    bin_dtype: Optional[str] = None,
    bin_bos_id: Optional[int] = None,
    bin_vocab_size: Optional[int] = None,
    model_size: Any = None,
    preset: Optional[str] = None,
    options: Optional[AuditOptions] = None,
    **option_fields: Any,
) -> AuditResult:
    """Audit a corpus: how much of it is repeated, how often, and where that falls on the
    damage map for a model of a given size.

    Args:
        corpus: a bundled corpus name, a text / jsonl / parquet file, a folder, a glob, a
            Hugging Face dataset folder, or a pre-tokenized ``.bin`` file.
        out: folder for ``audit.csv``, ``audit.parquet``, ``audit.json``, ``summary.txt``,
            ``audit.html`` (+ ``audit.png``) and ``damage.csv``; None writes nothing.
        config: a run config (YAML) whose data settings and model the audit uses.
        seq_len, vocab_size, tokenizer, format, text_field, bin_dtype, bin_bos_id,
            bin_vocab_size: the data settings (:class:`~repeatlens.config.DataConfig`),
            over the config's.
        model_size: N (a number or ``"10M"``); or ``preset``; or the config's model.
        options: :class:`AuditOptions`, or its fields as keyword arguments.

    Returns:
        An :class:`AuditResult`.

    Raises:
        RepeatlensError: bad options, an unreadable or empty corpus, an unreadable fit
            (one line each; nothing is written).
    """
    started = time.perf_counter()
    opts = options if options is not None else AuditOptions(**option_fields)
    opts.check()
    run_cfg = load_config(config) if config is not None else None
    data = data_settings(corpus, run_cfg.data if run_cfg else None, seq_len=seq_len, vocab_size=vocab_size, tokenizer=tokenizer,
                         format=format, text_field=text_field, bin_dtype=bin_dtype, bin_bos_id=bin_bos_id,
                         bin_vocab_size=bin_vocab_size)
    size = resolve_model_size(model_size, preset, run_cfg.model if run_cfg else None, str(config) if config else None)
    source: Optional[RegionSource] = region_source(opts.region) if size is not None else None
    reader = open_corpus(data)
    total = source is not None and source.fit is not None and source.fit.size_column == "N_total"
    if size is not None and size.model is not None:
        vocab = size.model.d_vocab or reader.vocab_size
        if vocab is None and total:
            raise ConfigError(f"{size.source}: counting total parameters needs the vocabulary; pass --bin-vocab-size")
        size.n = float(size.model.n_params(vocab or 2, embeddings=total))  # the non-embedding count ignores the vocabulary
        size.source += f" ({'total' if total else 'non-embedding'} parameters)"
    elif size is not None and total:
        size.source += " (read as total parameters: the fit's size column is N_total)"

    with tempfile.TemporaryDirectory(prefix="repeatlens-audit-") as work:
        units, totals, skipped = _count(reader, opts, Path(work))
        seq_tokens = next((u.total_tokens for u in units if u.unit == "sequence"), 0)
        if opts.tokens is not None:
            if not seq_tokens:
                raise DataError(f"--tokens: the corpus fills no sequence of {data.seq_len} tokens, so it has no epochs to plan")
            epochs, planned = opts.tokens / seq_tokens, opts.tokens
        else:
            epochs = opts.epochs if opts.epochs is not None else 1.0
            planned = epochs * seq_tokens if seq_tokens else None
        table = audit_table(units, epochs, opts.bins)
        examples = {(u.unit, lo): ex for u in units for lo, ex in bucket_examples(u, opts.bins, opts.examples).items()}
    region = source.at(size.n, planned) if (source is not None and size is not None) else None
    damage = damage_table(table, region) if region is not None else None
    summary = summary_lines(damage if damage is not None else table, epochs, region, opts.span_min)

    from repeatlens.corpus_audit.figure import audit_figure

    name = data.source if len(str(data.source)) < 60 else "…" + str(data.source)[-57:]
    title = f"Corpus audit: {name}" + (f" (N = {region.n:.3g}: {region.label()})" if region else "")
    figure = audit_figure(damage if damage is not None else table, title=title, epochs=epochs, region=region, examples=examples)

    sweep_text, sweep_record, sweep_error = None, None, None
    if opts.write_sweep is not None:
        from repeatlens.corpus_audit.bridge import sweep_document

        # training draws (1-f)·D + f·D/E unique tokens and the held-out sequences from the corpus:
        # one epoch less the test sequences is the largest D every point of the grid can train on
        n_seqs = totals["sequences"]
        room = max(n_seqs - data.test_sequences, 0) * data.seq_len
        d = min(int(planned), room) if planned else room
        try:
            sweep_text, sweep_record = sweep_document(
                table, opts.sweep_unit, data, d,
                size.model.model_dump(mode="json", exclude_defaults=True) if size is not None and size.model is not None else None,
                run_cfg.train.model_dump(mode="json", exclude_defaults=True) if run_cfg else None)
        except ConfigError as e:  # the audit is still written; the CLI reports this and exits non-zero
            sweep_error = str(e)
            summary.append(f"sweep: not written: {e}")

    near_settings = totals.pop("near")
    record = {
        "format": AUDIT_FORMAT,
        "corpus": {"source": str(data.source), "format": data.format, "text_field": data.text_field, "kind": reader.kind,
                   "fingerprint": reader.fingerprint, "bos_id": reader.bos, "dtype": reader.dtype.name, **totals},
        "tokenizer": {"hash": reader.tokenizer_hash, "vocab_size": reader.vocab_size,
                      "path": data.tokenizer, "trained": reader.kind == "text" and not data.tokenizer},
        "seq_len": data.seq_len,
        "epochs": epochs,
        "epochs_from": "--tokens" if opts.tokens is not None else "--epochs" if opts.epochs is not None else "default (1)",
        "planned_tokens": planned,
        "bins": opts.bins,
        "units": {u.unit: {"total_tokens": u.total_tokens, "items": u.items, "hash_collision_chance": u.hash_collision_chance,
                           "notes": list(u.notes)} for u in units},
        "near_duplicates": near_settings or {"skipped": skipped.get("near_document")},
        "spans": {"min_tokens": opts.span_min, "max_stream_tokens": opts.span_max_tokens,
                  "counted": "span" not in skipped, "method": "libdivsufsort suffix array (pydivsufsort) + Kasai LCP"},
        "skipped": skipped,
        "model": {"N": size.n, "from": size.source} if size is not None else None,
        "region": region.as_dict() if region is not None else None,
        "damage": damage.to_dict(orient="records") if damage is not None else None,
        "summary": summary,
        "examples": {u: {str(lo): ex for (unit, lo), ex in examples.items() if unit == u} for u in UNITS
                     if any(unit == u for unit, _ in examples)},
        "sweep": {"path": str(opts.write_sweep), **sweep_record} if sweep_record else ({"error": sweep_error} if sweep_error else None),
        "versions": _versions(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    result = AuditResult(table, damage, region, summary, record, figure, sweep_error=sweep_error, examples=examples)
    if out is not None:
        result.files = _write_outputs(Path(out), result, sweep_text, opts.write_sweep, opts.png)
    return result
