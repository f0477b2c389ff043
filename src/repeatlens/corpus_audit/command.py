"""The ``repeatlens audit`` command (registered in :mod:`repeatlens.cli`); imports only typer
until it runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def audit_command(
    corpus: str = typer.Argument(..., help="Bundled name, text/jsonl/parquet file, folder, glob, HF dataset folder or .bin"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for audit.csv/.parquet/.json, summary.txt, audit.html"),
    config: Optional[Path] = typer.Option(None, "--config", help="Run config (YAML): its data settings and model"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Tokens per training sequence, BOS included (default 128)"),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="BPE vocabulary trained on the corpus (default 2048)"),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="A tokenizer.json to read the corpus with"),
    fmt: Optional[str] = typer.Option(None, "--format", help="auto, text, jsonl, parquet, hf or bin"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="jsonl field / parquet or HF column (default text)"),
    bin_dtype: Optional[str] = typer.Option(None, "--bin-dtype", help=".bin ids: uint16 or uint32"),
    bin_bos_id: Optional[int] = typer.Option(None, "--bin-bos-id", help=".bin: the id that opens each document"),
    bin_vocab_size: Optional[int] = typer.Option(None, "--bin-vocab-size", help=".bin: its vocabulary"),
    model_size: Optional[str] = typer.Option(None, "--model-size", "-N", help="Non-embedding parameters N (1e7, 10M) for the damage map"),
    preset: Optional[str] = typer.Option(None, "--preset", help="Count N from a model preset instead"),
    tokens: Optional[str] = typer.Option(None, "--tokens", "-D", help="Planned training tokens D (sets the epochs)"),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Planned passes over the corpus: E = copies x epochs (default 1)"),
    region: str = typer.Option("study", "--region", help="study (this project's fit, else published), published, or a fit JSON"),
    near: bool = typer.Option(True, "--near/--no-near", help="Near-duplicate documents (MinHash LSH)"),
    threshold: float = typer.Option(0.8, "--threshold", help="Near duplicates: estimated Jaccard of token shingles"),
    num_perm: int = typer.Option(128, "--num-perm", help="Near duplicates: MinHash permutations"),
    shingle: int = typer.Option(5, "--shingle", help="Near duplicates: tokens per shingle"),
    spans: bool = typer.Option(True, "--spans/--no-spans", help="Repeated spans (suffix array)"),
    span_min: int = typer.Option(50, "--span-min", "-K", help="Repeated spans: at least K tokens"),
    span_max_tokens: int = typer.Option(50_000_000, "--span-max-tokens", help="Repeated spans: largest stream (about 30 bytes/token)"),
    bins: str = typer.Option("log", "--bins", help="log (1-2-5 buckets of copies) or exact (one row per copy count)"),
    png: bool = typer.Option(False, "--png", help="Also write audit.png (kaleido + Chromium)"),
    write_sweep: Optional[Path] = typer.Option(None, "--write-sweep", help="Write a sweep YAML over the corpus's (f, E) buckets"),
    sweep_unit: str = typer.Option("document", "--sweep-unit", help="Unit whose buckets the sweep spans"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
) -> None:
    """How much of CORPUS is repeated, how often, and where that falls on the damage map for a model of size N."""
    from repeatlens.corpus_audit.run import AuditOptions, audit, parse_count

    opts = AuditOptions(epochs=epochs, tokens=parse_count(tokens, "--tokens") if tokens is not None else None, near=near,
                        threshold=threshold, num_perm=num_perm, shingle=shingle, spans=spans, span_min=span_min,
                        span_max_tokens=span_max_tokens, bins=bins, region=region, png=png, write_sweep=write_sweep,
                        sweep_unit=sweep_unit, progress=not quiet)
    result = audit(corpus, out, config=config, seq_len=seq_len, vocab_size=vocab_size, tokenizer=tokenizer, format=fmt,
                   text_field=text_field, bin_dtype=bin_dtype, bin_bos_id=bin_bos_id, bin_vocab_size=bin_vocab_size,
                   model_size=model_size, preset=preset, options=opts)
    typer.echo("\n".join(line for line in result.summary if not line.startswith("sweep: not written")))
    typer.echo(f"wrote {', '.join(p.name for p in result.files)} in {out}")
    if result.sweep_error:
        typer.echo(f"error: {result.sweep_error}", err=True)
        sys.exit(1)
