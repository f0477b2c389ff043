"""Command line: ``repeatlens train | data prepare | info | verify | demo | score | analyze | sweep | plot | report | fit | audit``.

Expected faults (a bad config, a missing corpus, a corrupt checkpoint) print one line,
``error: …``, and exit with code 2; there is no traceback for them.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from repeatlens.analyze_options import AnalyzeOptions
from repeatlens.errors import ENVIRONMENT_ERRNOS, RepeatlensError, first_line, os_error_message, shorten

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Mechanistic interpretability of repeated training data.")
data_app = typer.Typer(no_args_is_help=True, help="Prepare corpora and tokenizers.")
app.add_typer(data_app, name="data")

SetOpt = typer.Option(None, "--set", help="Override a config field, e.g. --set train.lr=3e-4 (repeatable)")


@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config (YAML)"),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created, or continued if unfinished)"),
    set_: Optional[List[str]] = SetOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
) -> None:
    """Train one run into OUT. Run again on the same OUT to resume an unfinished run."""
    from repeatlens.config import load_config
    from repeatlens.train import train as train_run

    cfg = load_config(config, set_)
    run = train_run(cfg, out, progress=not quiet)
    typer.echo(run_summary(run.path))


@data_app.command("prepare")
def data_prepare(
    config: Path = typer.Argument(..., help="Run config (YAML; only its data section is used), or a run directory whose cache to rebuild"),
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Train the tokenizer and tokenize the corpus into the cache, so runs start at once.

    Given a run directory: rebuild the cached token stream and synthetic rows it references
    (after the cache was deleted or on another machine), checked against its sha256s."""
    from repeatlens.config import load_config
    from repeatlens.data.streams import cache_root, load_corpus

    if config.is_dir():
        from repeatlens.checkpoints import load_run
        from repeatlens.data.pools import rebuild_run_cache

        for line in rebuild_run_cache(load_run(config), progress=True):
            typer.echo(line)
        return
    cfg = load_config(config, set_)
    corpus = load_corpus(cfg.data, progress=True)
    typer.echo(
        f"corpus {cfg.data.source!r}: {corpus.n_chunks:,} sequences of {cfg.data.seq_len} tokens "
        f"(vocab {corpus.vocab_size:,}); cache: {cache_root(cfg.data)}"
    )


@app.command()
def info(path: str = typer.Argument(..., help="Run directory, folder of other people's checkpoints, hf:ORG/NAME, or an analysed folder")) -> None:
    """Config, repetition spec, checkpoints, probe ids and final losses of a run; the checkpoints,
    probe ids and x-axis of other people's checkpoints and of an analysed table."""
    from repeatlens.checkpoints import RunDir

    if not path.startswith("hf:") and RunDir(Path(path)).looks_like_run():  # a damaged run is one line from run_summary
        typer.echo(run_summary(Path(path)))
    else:
        typer.echo(folder_summary(path))


def _analyze_opt(field: str, *flags: str, help: Optional[str] = None) -> Any:
    """The option of an :class:`~repeatlens.analyze_options.AnalyzeOptions` field: its default,
    lower bound and help as declared there (the one declaration of analyze's options)."""
    info = AnalyzeOptions.model_fields[field]
    low = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    default = None if isinstance(info.default, tuple) else info.default
    return typer.Option(default, *(flags or [f"--{field.replace('_', '-')}"]), min=low, help=help or info.description)


ProbeOpt = _analyze_opt("probes", "--probe")
ProbeLenOpt = _analyze_opt("probe_len")
ProbeBatchOpt = _analyze_opt("probe_batch")
ProbeSeedOpt = _analyze_opt("probe_seed")
DeviceOpt = _analyze_opt("device")
MaxSequencesOpt = _analyze_opt("max_sequences")


@app.command()
def verify(
    run_dir: Path = typer.Argument(..., help="Run directory"),
    replay: Optional[List[int]] = typer.Option(None, "--replay", help="Retrain from the checkpoint before step K to K and compare bit for bit (repeatable)"),
) -> None:
    """Re-hash every checkpoint and the data against their records; optionally replay steps. Exit 1 on any finding."""
    from repeatlens.verify import verify_run

    res = verify_run(run_dir, replay or ())
    for finding in res.findings:
        typer.echo(str(finding))
    for note in res.unchecked:
        typer.echo(f"not checked: {note}")
    typer.echo(res.summary())
    if not res.ok:
        sys.exit(1)


@app.command()
def score(
    run_dir: Path = typer.Argument(..., help="Run directory"),
    step: Optional[int] = typer.Option(None, "--step", help="Checkpoint step (default: the last)"),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="Comma-separated metric names (default: all)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Parquet file (default: RUN_DIR/score_step_XXXXXXX.parquet)"),
    max_sequences: int = MaxSequencesOpt,
    probe: Optional[str] = ProbeOpt,
    probe_len: Optional[int] = ProbeLenOpt,
    probe_batch: int = ProbeBatchOpt,
    probe_seed: int = ProbeSeedOpt,
    device: str = DeviceOpt,
) -> None:
    """Score one checkpoint with every probe that applies: print a table and write it as parquet."""
    from repeatlens.analysis import TOKENS_AXIS, run_special_ids, score_checkpoint
    from repeatlens.checkpoints import load_run, step_name
    from repeatlens.devices import resolve_device
    from repeatlens.results.metric_facts import record_facts
    from repeatlens.results.reduce import circuits
    from repeatlens.results.store import write_parquet

    dev = resolve_device(device)
    run = load_run(run_dir)
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    df = score_checkpoint(
        run, step, names, max_sequences=max_sequences, probes=probe, probe_len=probe_len, probe_batch=probe_batch,
        probe_seed=probe_seed, device=dev,
    )
    path = out or run.path / f"score_{step_name(int(df['step'].iloc[0]))}.parquet"
    meta = {"axis": dict(TOKENS_AXIS), "probe_ids": run_special_ids(run).to_json()}
    record_facts(meta, df["metric"].unique())  # as analyze's tables: the metrics' facts travel with the table
    write_parquet(path, df, meta)
    typer.echo(score_table(df))
    named = circuits(df)
    if len(named):
        typer.echo("\ncopying circuits (a later head attending at offset L-1-d, an earlier head d+1 back):")
        typer.echo(named.drop(columns=["run_id", "step"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"\nwrote {path}")


def score_table(df) -> str:
    """Per-head metrics as a layer.head x metric grid per probe, then model-level metrics."""
    from repeatlens.results.keys import row_keys

    df = df[df["offset"].isna()] if "offset" in df.columns else df  # the offset profile is a figure, not a column
    keys = row_keys(df) if "probe" in df.columns else None
    parts = []
    for key in sorted(set(keys)) if keys is not None else [""]:
        part = df[keys == key] if keys is not None else df
        head, model = part[part["layer"].notna()], part[part["layer"].isna()]
        title = f"probe {key}" if key else "no probe (weights and data)"
        if len(head):
            grid = head.assign(head_id=[f"L{int(l)}.H{int(h)}" for l, h in zip(head["layer"], head["head"])])
            grid = grid.pivot_table(index="head_id", columns="metric", values="value", sort=False)
            parts.append(f"{title}:\n" + grid.to_string(float_format=lambda v: f"{v:.3f}"))
        if len(model):
            parts.append(f"{title}:\n" + "\n".join(f"{m:<16} {v:.4f}" for m, v in zip(model["metric"], model["value"])))
    return "\n\n".join(parts) if parts else "(no scores)"


@app.command()
def plot(
    path: Path = typer.Argument(..., help="Run, sweep or analysed checkpoint folder"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the figures"),
    format: str = typer.Option("html", "--format", "-f", help="Comma-separated: html,png,pdf,svg"),
    size: str = typer.Option("column", "--size", help="column (paper) or slides"),
    probe: Optional[str] = typer.Option(None, "--probe", help="Probe the figures read, e.g. synthetic or text:L20 (default: the table's default, named in each title)"),
) -> None:
    """Write every figure the analysed tables support."""
    from repeatlens.plots import available_figures, write_figures

    formats = tuple(f.strip().lower() for f in format.split(",") if f.strip())
    scores, metrics = _tables(path)
    figs = available_figures(scores, metrics, probe=probe)
    written = write_figures(figs, out, formats=formats, size=size)
    n = sum(len(v) for v in written.values())
    typer.echo(f"wrote {n} file(s) for {len(figs)} figure(s) to {out}")


@app.command()
def report(
    path: Path = typer.Argument(..., help="Run, sweep or analysed checkpoint folder"),
    out: str = typer.Option("report.html", "--out", "-o", help="File name inside PATH (or an absolute path)"),
    probe: Optional[str] = typer.Option(None, "--probe", help="Probe the report reads, e.g. synthetic or text:L20 (default: the table's default)"),
) -> None:
    """Write a self-contained report.html with every figure and a summary table."""
    from repeatlens.report import write_report

    scores, metrics = _tables(path)
    typer.echo(f"report: {write_report(path, scores, metrics, out=out, probe=probe)}")


def _tables(path: Path):
    """The scores and (when there is one) metrics table under ``path``, after checking that
    the runs they come from still agree with their files (:meth:`~repeatlens.checkpoints.RunDir.check`)."""
    from repeatlens.checkpoints import RunDir
    from repeatlens.errors import CheckpointError
    from repeatlens.results.store import METRICS_FILE, SCORES_FILE, load_metrics, load_scores, sweep_runs

    run = RunDir(path)
    if run.looks_like_run():
        run.require()  # a run directory that lost its config or manifest: say which
    for r in [run] if run.is_run() else sweep_runs(path):
        r.check()
    scores = load_scores(path)
    if scores.empty:
        table = Path(path) / SCORES_FILE if Path(path).is_dir() else Path(path)
        raise CheckpointError(f"{table}: holds no scores; run `repeatlens analyze {path}` first")
    has_metrics = (Path(path) / METRICS_FILE).is_file() if Path(path).is_dir() else False
    return scores, load_metrics(path) if has_metrics else None


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Where the demo's runs go"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Runs trained at once (default: the cores)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """The main job: repetition on Shakespeare + synthetic copying, the circuit it stops, in minutes."""
    from repeatlens.demo import run_demo

    run_demo(out, progress=not quiet, workers=workers)


@app.command()
def analyze(
    path: Path = typer.Argument(..., help="Run directory, sweep directory, folder of other people's checkpoints, or hf:ORG/NAME (hub cache)"),
    metric: Optional[List[str]] = _analyze_opt("metrics", "--metric", "-m", help="Score to compute (repeatable; default all)"),
    max_sequences: int = MaxSequencesOpt,
    tokens: Optional[Path] = _analyze_opt("tokens"),
    tokens_per_step: Optional[int] = _analyze_opt("tokens_per_step"),
    out: Optional[Path] = _analyze_opt("out", "--out", "-o"),
    revisions: Optional[str] = _analyze_opt("revisions", help="hf:ORG/NAME: comma-separated revisions (default: every cached one with a step)"),
    download: bool = _analyze_opt("download"),
    probe: Optional[str] = ProbeOpt,
    probe_len: Optional[int] = ProbeLenOpt,
    probe_batch: int = ProbeBatchOpt,
    probe_seed: int = ProbeSeedOpt,
    device: str = DeviceOpt,
    force: bool = _analyze_opt("force"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
) -> None:
    """Score every checkpoint under PATH into scores.parquet (incremental; resumes)."""
    from repeatlens.analysis import analyze as run_analysis

    given = dict(metrics=metric or None, max_sequences=max_sequences, tokens=tokens, tokens_per_step=tokens_per_step, out=out,
                 revisions=revisions, download=download, device=device, force=force, progress=not quiet, probes=probe,
                 probe_len=probe_len, probe_batch=probe_batch, probe_seed=probe_seed)
    options = AnalyzeOptions.parse({k: v for k, v in given.items() if v is not None}, "analyze")
    res = run_analysis(str(path), options=options)
    total = res.scored + res.skipped + len(res.failures)
    typer.echo(f"{res.kind} {path}: scored {res.scored} checkpoint(s), {res.skipped} already scored, {len(res.failures)} failed (of {total})")
    keys = sorted({k for ks in res.probes.values() for k in ks})
    if keys:
        typer.echo(f"  probes {', '.join(keys)}")
    for line in sorted({ids.describe() for ids in res.special.values()}):
        typer.echo(f"  {line}")
    for folder, axis in res.axis.items():
        if axis.get("tokens_from") != "training":
            typer.echo(f"  {folder}: x-axis {_axis_phrase(axis)}")
    for table in res.tables:
        typer.echo(f"  table {table}")
    _exit_on_failures(res.failures)


def _axis_phrase(axis: dict) -> str:
    """How a table's ``axis`` metadata reads: ``tokens seen (from --tokens-per-step 2097152)``, ``step (...)``."""
    if axis.get("x") == "tokens_seen":
        return f"tokens seen (from {axis.get('tokens_from', '?')})"
    return "step (no token count known: tokens_seen holds the step; give --tokens-per-step to plot against tokens seen)"


@app.command()
def fit(
    path: Path = typer.Argument(..., help="An analysed sweep directory, or a per-run table (.csv / .parquet) with N (or "
                                "n_params_nonembedding), repeated_fraction, repeat_count, seed and the loss"),
    loss: Optional[str] = typer.Option(None, "--loss", help="test_text (natural text; the default when the runs have it) or test_loss"),
    fraction: Optional[float] = typer.Option(None, "--fraction", help="The repeated fraction f to fit (default: the largest)"),
    size: str = typer.Option("N", "--size", help="Size convention of the peaks and alpha: N (non-embedding) or N_total"),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Residual-bootstrap refits per size for the peaks' intervals "
                                  "(0: the fits' t intervals)"),
    baseline: str = typer.Option("auto", "--baseline", help="The peak model's baseline: linear (in log10 E), constant, or auto (linear "
                                "where a size has runs at 6+ repeat counts)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the fit as JSON (format repeatlens-scaling-fit/1)"),
) -> None:
    """Scaling fits: the peak per model size (a bump fitted to every run), E* ~ N^alpha with a 95% interval
    or why the design cannot identify it, and effective model sizes on the controls' law L_inf + (N_c/N)^a."""
    from repeatlens.study import fit_sweep

    result = fit_sweep(path, loss=loss, fraction=fraction, bootstrap=bootstrap, size=size, baseline=baseline)
    typer.echo("\n".join(result.lines()))
    if json_out is not None:
        typer.echo(f"wrote {result.to_json(json_out)}")


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="Sweep file (YAML): base config, grid, analyze options"),
    out: Path = typer.Option(..., "--out", "-o", help="Sweep directory (one run directory per grid point)"),
    executor: str = typer.Option("local", "--executor", help="local (process pool) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray instance)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Points run at once (default: the cores)"),
    gpus_per_run: Optional[float] = typer.Option(None, "--gpus-per-run", help="Ray: GPUs per point (default: 1 if the cluster has GPUs, else 0)"),
    cpus_per_run: Optional[int] = typer.Option(None, "--cpus-per-run", help="Ray: CPUs (= torch threads) per point (default 1)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the grid points and stop"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
) -> None:
    """Train every grid point of SPEC into OUT (skipping complete ones), analyse, join tables."""
    from repeatlens.sweep import load_sweep, run_sweep

    parsed = load_sweep(spec)
    if dry_run:
        for p in parsed.points:
            typer.echo(f"{p.name}\t" + " ".join(f"{k}={v}" for k, v in p.values.items()))
        typer.echo(f"{len(parsed.points)} points")
        return
    res = run_sweep(parsed, out, executor=executor, address=address, workers=workers, gpus_per_run=gpus_per_run,
                    cpus_per_run=cpus_per_run, progress=not quiet)
    typer.echo(
        f"sweep {out}: {len(res.done)} point(s) run, {len(res.skipped)} already complete, {len(res.errors)} failed "
        f"({res.seconds / 60:.1f} min)"
    )
    for table in res.tables:
        typer.echo(f"  table {table}")
    for name, err in res.errors:
        typer.echo(f"point {name} failed: {err}", err=True)
    _exit_on_failures(res.failures, points_failed=bool(res.errors))


from repeatlens.corpus_audit.command import audit_command  # noqa: E402  (imports only typer)

app.command("audit")(audit_command)


def _exit_on_failures(failures: list, points_failed: bool = False) -> None:
    """List checkpoints that could not be scored, one line each, and exit 1 if any."""
    if failures:
        typer.echo(f"{len(failures)} checkpoint(s) could not be scored:", err=True)
        for f in failures:
            typer.echo(f"  {f}", err=True)
    if failures or points_failed:
        sys.exit(1)


def run_summary(run_dir: Path) -> str:
    """Human-readable summary of a run directory."""
    from repeatlens.analysis import run_special_ids
    from repeatlens.checkpoints import load_run

    run = load_run(run_dir)
    cfg, man = run.config(), run.manifest()
    ckpts = run.checkpoints()
    met = run.metrics()
    lines = [
        f"run        {run.path}  ({'complete' if run.is_complete() else 'INCOMPLETE'})",
        f"model      {cfg.model.preset or 'custom'}: {cfg.model.n_layers} layers, d_model {cfg.model.d_model}, "
        f"{cfg.model.n_heads} heads x d_head {cfg.model.d_head}, {'attn-only' if cfg.model.attn_only else 'with MLPs'}, "
        f"n_ctx {cfg.model.n_ctx}, vocab {man.vocab_size}",
        f"data       {cfg.data.source} (synthetic share {cfg.data.synthetic_share:g}), seq_len {man.seq_len}",
        f"mixture    D={man.total_tokens:,} tokens  f={man.repeated_fraction:.4g}  E={man.repeat_count}  S={man.repeated_tokens:,} tokens "
        f"({man.n_repeated:,} repeated seqs, {man.n_unique:,} unique, {man.n_test} test)",
        f"schedule   sha256 {man.schedule['sha256'][:16]}…  seed {cfg.seed}",
        f"checkpoints {len(ckpts)}: steps {', '.join(str(c.step) for c in ckpts[:6])}"
        + (f", … {ckpts[-1].step}" if len(ckpts) > 6 else ""),
        f"special    {run_special_ids(run).describe()}",
    ]
    lines += _environment_lines(run, ckpts)
    if len(met):
        last = met[met.step == met.step.max()]
        losses = ", ".join(f"{r.split} {r.loss:.4f}" for r in last.itertuples())
        lines.append(f"final loss step {int(met.step.max())}: {losses}")
    return "\n".join(lines)


def folder_summary(path: str) -> str:
    """Human-readable summary of other people's checkpoints (``hf:ORG/NAME`` or a folder) and
    of an analysed folder's table: checkpoints, the probes' special ids and their source, what
    the x-axis counts.

    Raises:
        CheckpointError: ``path`` holds none of these.
    """
    from repeatlens.errors import CheckpointError
    from repeatlens.foreign import discover, looks_foreign
    from repeatlens.data.special import SpecialIds
    from repeatlens.results.store import SCORES_FILE, table_runs

    lines: list[str] = []
    table = Path(path) / SCORES_FILE if not path.startswith("hf:") else None
    if path.startswith("hf:") or looks_foreign(Path(path)):
        folder = discover(path, out=Path(".") if path.startswith("hf:") else None)  # out: where a table would go; nothing is written
        if folder is None:
            raise CheckpointError(f"{path}: no checkpoints found")
        ckpts = folder.checkpoints
        steps = ", ".join(str(c.step) for c in ckpts[:6]) + (f", … {ckpts[-1].step}" if len(ckpts) > 6 else "")
        lines.append(f"checkpoints {folder.path}: {len(ckpts)} {folder.kind} revision(s), steps {steps}")
        groups: dict[tuple, list] = {}
        for c in ckpts:  # revisions with the same ids: one line
            groups.setdefault((c.special.bos, c.special.special, c.special.kind), []).append(c.special)
        for members in groups.values():
            line, more = members[0].describe(), len(members) - 1
            if more:
                line = f"{line[:-1]}, and {more} other revision{'s' if more > 1 else ''} alike)"
            lines.append(f"special    {line}")
        if table is None or not table.is_file():  # an analysed table says what it used (below)
            lines.append(f"x-axis     {_axis_phrase(folder.axis())}")
        lines += [f"warning: {w}" for w in folder.warnings]
        lines += [f"problem: {where}: {reason}" for where, reason in folder.problems]
    if table is not None and table.is_file():
        runs = table_runs(table)
        lines.append(f"table      {table}: {len(runs) or '?'} run(s)")
        for run_id, meta in runs.items():
            ids = SpecialIds.from_record(meta.get("probe_ids"))
            what = [ids.describe() if ids else "probe ids not recorded (analysed before they were)"]
            if "axis" in meta:
                what.append(f"x-axis {_axis_phrase(meta['axis'])}")
            lines.append(f"  {run_id}: " + "; ".join(what))
    if not lines:
        raise CheckpointError(f"{path}: not a run directory, a folder of other people's checkpoints, or an analysed folder (no {SCORES_FILE})")
    return "\n".join(lines)


def _environment_lines(run, ckpts) -> list[str]:
    """What the run's result depends on (threads, device, versions, deterministic mode), from its records."""
    from repeatlens.determinism import run_environment_lines

    return run_environment_lines(run.completion(), [c.sidecar for c in ckpts])


def _one_line_warnings() -> None:
    """Show repeatlens' own warnings as ``warning: <message>``, one line, as errors are shown."""
    import warnings

    from repeatlens.determinism import ReproducibilityWarning
    from repeatlens.errors import StaleTableWarning

    default = warnings.showwarning
    if getattr(default, "repeatlens_one_line", False):  # main() called again in this process
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (ReproducibilityWarning, StaleTableWarning)):
            typer.echo(f"warning: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    show.repeatlens_one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: runs the typer app; every fault a user can cause ends as one line and a non-zero exit.

    * :class:`~repeatlens.errors.RepeatlensError` (bad config, file or run directory):
      ``error: <message>``, its exit code (2);
    * a usage error of the command line (missing argument, unknown command, ``--step abc``):
      ``error: <what click says>``, exit 2;
    * the operating system refusing a file (permission, read-only or full disk, a name too
      long, too many open files) or running out of memory: ``error: <file>: <reason>``, exit 2;
    * Ctrl-C: ``interrupted; …``, exit 130.

    Anything else is a bug of repeatlens and keeps its traceback.
    """
    from repeatlens.determinism import prepare_process

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prepare_process()  # before torch starts CUDA: deterministic cuBLAS
    _one_line_warnings()
    try:
        code = app(args=argv, prog_name="repeatlens", standalone_mode=False)
    except RepeatlensError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except MemoryError as e:
        _fail(_out_of_memory(e), 2)
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        _fail(os_error_message(e), 2)
    except Exception as e:
        _framework_exit(e)
        if _is_out_of_memory(e):
            _fail(_out_of_memory(e), 2)
        raise
    # Outside standalone mode typer returns an Exit's code instead of exiting; it turns
    # Ctrl-C into Exit(130) itself (so the KeyboardInterrupt above is only a fallback).
    if code == 130:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


#: The longest line an error prints (values inside it are cut at 200 characters already).
MESSAGE_CHARS = 600


def _fail(message: str, code: int) -> None:
    """``error: <message>`` on one line (cut to :data:`MESSAGE_CHARS`) and exit ``code``."""
    typer.echo(f"error: {shorten(message, MESSAGE_CHARS)}", err=True)
    sys.exit(code)


def _framework_types(name: str) -> tuple[type, ...]:
    """The exception class ``name`` (ClickException, Exit, Abort) of the CLI framework in use:
    typer >= 0.23 vendors its own click (``typer._click``), older typer raises click's."""
    found = []
    for module in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if isinstance(getattr(mod, name, None), type):
            found.append(getattr(mod, name))
    return tuple(found)


def _framework_exit(e: Exception) -> None:
    """Exit as the CLI framework meant for its own exceptions (usage errors, Exit, Abort); return otherwise."""
    if isinstance(e, _framework_types("Exit")):
        sys.exit(e.exit_code)
    if isinstance(e, _framework_types("Abort")):  # how click wraps Ctrl-C
        _interrupted()
    if isinstance(e, _framework_types("ClickException")):
        if type(e).__name__ == "NoArgsIsHelpError":  # `repeatlens` or `repeatlens data` alone: the help
            e.show()
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and getattr(ctx, "command_path", None) else ""
        _fail(f"{e.format_message()}{hint}", e.exit_code or 2)


def _is_out_of_memory(e: Exception) -> bool:
    """torch's allocator failures: ``torch.OutOfMemoryError`` (CUDA) and the CPU allocator's RuntimeError."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(e, RuntimeError) and "can't allocate memory" in str(e)


def _out_of_memory(e: BaseException) -> str:
    return (f"out of memory ({first_line(e)}); lower the sizes in the config (model, data.seq_len, train.batch_size, "
            "mixture.total_tokens) or the --max-sequences / --probe-batch of a scoring command")


def _interrupted() -> None:
    """Ctrl-C: one line instead of a traceback, and the shell's exit code for SIGINT (130)."""
    typer.echo("interrupted; run the same command again to resume", err=True)
    sys.exit(130)


if __name__ == "__main__":
    main()
