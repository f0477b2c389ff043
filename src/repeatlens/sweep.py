"""Sweeps: expand a grid of configs, train every point into its own run, analyse them.

A sweep file (YAML)::

    base_config: ../configs/tiny.yaml      # or  base: {...a RunConfig mapping...}
    base:                                  # both: base is merged over base_config
      train: {progress: false}
    grid:                                  # dotted config keys -> lists of values
      mixture.repeated_fraction: [0.0, 0.1]
      mixture.repeat_count: [10, 100]
      model.preset: [attn2-tiny]
      seed: [0, 1]
    analyze:                               # optional; arguments of repeatlens.analyze
      metrics: [induction, test_loss]
      max_sequences: 64
    data_matched_controls: true            # optional: add each f > 0 point's data-matched control

The grid is the cartesian product in the order written. A point with
``repeated_fraction = 0`` is the control: its ``repeat_count`` means nothing, so it is
recorded as E = 1 and kept once per combination of the other coordinates. With
``data_matched_controls: true``, every point at f > 0 also gets its data-matched control
(``mixture.data_matched = f``, f = 0: trained on the (1-f)·D unique tokens the repeated
run sees, named ``dm<f>_…``), once per combination of the other coordinates; the grid may
also name ``mixture.data_matched`` directly. Each point
trains into ``OUT/<name>`` with a name built from its grid values
(``f0.1_E10_attn2-tiny_s0``); points already complete are not trained again and, when
also fully scored, not even started. After every point is done the sweep root gets the
joined ``scores.parquet`` and ``metrics.parquet`` (:func:`repeatlens.results.store.write_sweep_tables`)
of its points and of every other complete run in the folder (several sweeps may share one
``--out``: the root tables hold them all, as ``repeatlens analyze OUT`` writes them).

Executors:

* ``local``: a ``ProcessPoolExecutor`` (spawn) sized to the cores, each worker with
  ``cores // workers`` torch threads; one worker runs in-process, on the caller's torch
  thread count (``torch.set_num_threads`` / ``OMP_NUM_THREADS``), which it leaves unchanged.
* ``ray``: one Ray task per point, on a local Ray instance or the cluster at ``address``,
  each requesting ``cpus_per_run`` CPUs (default 1; its torch thread count) and
  ``gpus_per_run`` GPUs (default 1 when the cluster has GPUs, else 0). Ray gives a task
  with GPUs its own devices (``CUDA_VISIBLE_DEVICES``), so ``train.device: auto`` trains
  each point on its own GPU; a task without GPUs is shown none, so points never pile onto
  GPU 0. A task lost with its worker or node is retried by Ray (``RAY_MAX_RETRIES``) and
  resumes from the point's last checkpoint. A driver that dies takes its tasks with it
  (Ray ends a dead driver's job and its workers); one that stops on an exception or Ctrl-C
  cancels its pending tasks first. Workers write to the run directories directly, so
  ``OUT`` must be on a filesystem every node sees, and repeatlens must be installed on
  every node.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional


from repeatlens.analyze_options import SWEEP_FIELDS, AnalyzeOptions
from repeatlens.config import RunConfig, config_from_dict, merge, read_yaml
from repeatlens.data.mixture import plan_mixture
from repeatlens.errors import ENVIRONMENT_ERRNOS, CheckpointError, ConfigError, RepeatlensError, first_line, optional_import, os_error_message, shorten

if TYPE_CHECKING:
    from repeatlens.checkpoints import RunDir

__all__ = ["SweepSpec", "SweepPoint", "AnalyzeOptions", "MAX_POINTS", "SweepResult", "load_sweep", "expand_grid", "run_sweep", "run_point", "available_cores"]

SWEEP_KEYS = {"base", "base_config", "grid", "analyze", "data_matched_controls"}
#: The most points a sweep may have: a grid's size is the product of its lists' lengths, and
#: one more list can multiply it past what anyone means to train (expanding 10,000 points
#: and validating each takes about 10 s).
MAX_POINTS = 10_000
#: Grids larger than this show a progress bar while their points are expanded and validated.
PROGRESS_POINTS = 1_000


def _sweep_analyze_options(section: Any, where: str) -> AnalyzeOptions:
    """A sweep's ``analyze:`` section as :class:`AnalyzeOptions` (the options of
    :func:`repeatlens.analysis.analyze` that are the same for every point, :data:`SWEEP_FIELDS`),
    or a one-line ConfigError naming the field."""
    options = AnalyzeOptions.parse(section, where, section="analyze")
    extra = [k for k in options.kwargs() if k not in SWEEP_FIELDS]
    if extra:
        raise ConfigError(f"{where}: unknown field 'analyze.{extra[0]}' (a sweep's analyze: takes {', '.join(SWEEP_FIELDS)})")
    return options


F_KEY, E_KEY = "mixture.repeated_fraction", "mixture.repeat_count"
DM_KEY = "mixture.data_matched"
_SHORT = {F_KEY: "f", E_KEY: "E", "mixture.total_tokens": "D", "model.preset": "", "seed": "s", DM_KEY: "dm"}


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its run name, its grid values and the full (validated) config dict."""

    name: str
    values: dict[str, Any]
    config: dict[str, Any]


@dataclass
class SweepSpec:
    """A parsed sweep file."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    analyze: dict[str, Any]
    points: list[SweepPoint]
    source: Optional[Path] = None


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        out: the sweep directory.
        done: names of points that ran (trained and/or analysed) successfully.
        skipped: names of points already complete and fully scored.
        errors: ``(name, one-line error)`` of points that failed.
        failures: checkpoints that could not be scored (file, reason).
        tables: the joined tables at the sweep root.
        seconds: wall time.
        placements: Ray executor only: per point, what its task was given, read inside the
            task (``resources``, ``gpu_ids``, ``cuda_visible_devices``, ``threads``,
            ``node_id``, ``pid``, ``start`` / ``end`` wall-clock times).
    """

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    failures: list[Any] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    placements: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failures


# ------------------------------------------------------------------------------ parsing


def _nest(dotted: dict[str, Any], where: str = "sweep") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: grid.{shorten(key)}: '{'.'.join(parts[: i + 1])}' is also a grid key with values; it cannot have fields")
        node[parts[-1]] = value
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def point_name(values: dict[str, Any]) -> str:
    """Run-directory name of a grid point, e.g. ``f0.1_E10_attn2-tiny_s0``."""
    parts = []
    for key, value in values.items():
        prefix = _SHORT.get(key, key.split(".")[-1])
        parts.append(f"{prefix}{_fmt(value)}")
    name = "_".join(parts) or "run"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", name)


def _data_matched_twin(values: dict[str, Any], cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data-matched control of a repeated point: f -> 0 with ``data_matched = f``, E dropped."""
    f = cfg["mixture"]["repeated_fraction"]
    twin = {DM_KEY: f, **{k: v for k, v in values.items() if k not in (F_KEY, E_KEY, DM_KEY)}}
    return twin, merge(cfg, {"mixture": {"repeated_fraction": 0.0, "repeat_count": 1, "data_matched": f}})


def expand_grid(
    base: dict[str, Any], grid: dict[str, Any], where: str = "sweep", *, data_matched_controls: bool = False, progress: bool = True
) -> list[SweepPoint]:
    """Every point of the grid over ``base``, validated, controls deduplicated; with
    ``data_matched_controls``, each f > 0 point followed by its data-matched control.

    Raises:
        ConfigError: a grid entry is not a non-empty list, the grid has more than
            :data:`MAX_POINTS` points (twins included), or a point is not a valid config
            (the message names the point and the field).
    """
    size = 1
    for key, values in grid.items():
        if not isinstance(key, str) or not key or not all(part.strip() for part in key.split(".")):
            raise ConfigError(f"{where}: grid key {shorten(repr(key))}: expected a dotted config key such as mixture.repeat_count")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid.{shorten(key)} = {shorten(repr(values))}: expected a non-empty list of values")
        size *= len(values)
    if size * (2 if data_matched_controls else 1) > MAX_POINTS:
        lengths = " x ".join(str(len(v)) for v in grid.values()) + (" x 2 (data-matched controls)" if data_matched_controls else "")
        total = size * (2 if data_matched_controls else 1)
        raise ConfigError(f"{where}: grid: {lengths} = {total:,} points; expected at most {MAX_POINTS:,} (split the sweep)")
    from tqdm.auto import tqdm

    keys = list(grid)
    points: list[SweepPoint] = []
    seen: set[str] = set()
    names: set[str] = set()

    def add(values: dict[str, Any], cfg: dict[str, Any]) -> None:
        mixture = cfg.get("mixture")
        if isinstance(mixture, dict) and _is_zero(mixture.get("repeated_fraction", 0.0)):
            cfg = merge(cfg, {"mixture": {"repeat_count": 1}})  # the control: E means nothing
            if E_KEY in values:
                values[E_KEY] = 1
        name = point_name(values)
        validated = config_from_dict(cfg, where=f"{where}: point {name}")
        try:  # an impossible repetition spec fails here, before anything trains
            plan_mixture(validated.mixture, validated.data.seq_len)
        except ConfigError as e:
            raise ConfigError(f"{where}: point {name}: {e}") from None
        cfg = validated.model_dump(mode="json")
        key = json.dumps(cfg, sort_keys=True)
        if key in seen:
            return
        seen.add(key)
        unique, i = name, 2
        while unique in names:
            unique, i = f"{name}_{i}", i + 1
        names.add(unique)
        points.append(SweepPoint(unique, values, cfg))
        if data_matched_controls and cfg["mixture"]["repeated_fraction"] > 0:
            add(*_data_matched_twin(values, cfg))

    combos = tqdm(itertools.product(*(grid[k] for k in keys)), total=size, desc="checking grid points", unit="point", leave=False,
                  disable=not progress or size < PROGRESS_POINTS)
    for combo in combos:
        values = dict(zip(keys, combo))
        add(values, merge(base, _nest(values, where=f"{where}: point {point_name(values)}")))
    return points


def _is_zero(value: Any) -> bool:
    """Whether a (not yet validated) repeated_fraction is 0; a value of another type is left to the validation."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)


def load_sweep(path: str | Path, *, progress: bool = True) -> SweepSpec:
    """Read and validate a sweep YAML (see the module docstring for its fields).

    Everything is checked here, before any point trains: the fields, every grid point's
    config and repetition spec, and the ``analyze:`` options against every point (metric
    names, probe families that apply to its runs, copy lengths that fit its context).

    Args:
        progress: a progress bar while a large grid (over :data:`PROGRESS_POINTS` points) is checked.
    """
    path = Path(path)
    raw = read_yaml(path)
    unknown = sorted(set(map(str, raw)) - SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown field {shorten(repr(unknown[0]))}; expected {', '.join(sorted(SWEEP_KEYS))}")
    base: dict[str, Any] = {}
    if raw.get("base_config") is not None:
        if not isinstance(raw["base_config"], str) or not raw["base_config"].strip():
            raise ConfigError(f"{path}: field 'base_config' = {shorten(repr(raw['base_config']))}: expected the path of a config file")
        base_path = Path(raw["base_config"])
        base_path = base_path if base_path.is_absolute() else path.parent / base_path
        base = read_yaml(base_path)
    over = raw.get("base") or {}
    if not isinstance(over, dict):
        raise ConfigError(f"{path}: field 'base': expected a mapping of config fields, got {type(over).__name__}")
    base = merge(base, over)
    if not base:
        raise ConfigError(f"{path}: no base config; give 'base:' (config fields) or 'base_config:' (a config file)")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{path}: field 'grid': expected a mapping of dotted keys to lists, got {type(grid).__name__}")
    analyze = raw.get("analyze") or {}
    if not isinstance(analyze, dict):
        raise ConfigError(f"{path}: field 'analyze': expected a mapping, got {type(analyze).__name__}")
    options = _sweep_analyze_options(analyze, str(path))
    dm = raw.get("data_matched_controls", False)
    if not isinstance(dm, bool):
        raise ConfigError(f"{path}: field 'data_matched_controls' = {shorten(repr(dm))}: expected true or false")
    points = expand_grid(base, grid, where=str(path), data_matched_controls=dm, progress=progress)
    _check_analyze_options(options, points, path)
    return SweepSpec(base=base, grid=grid, analyze=options.kwargs(), points=points, source=path)


def _check_analyze_options(options: AnalyzeOptions, points: list[SweepPoint], path: Path) -> None:
    """The ``analyze:`` options against every distinct kind of point (:func:`repeatlens.analysis.check_run_options`).

    Without metric names and probe settings there is nothing a point could refuse (the
    default families are those that apply, the default copy length fits), and the check,
    which imports torch, is skipped: reading a sweep file stays light.
    """
    if options.metrics is None and not {"probes", "probe_len"} & options.model_fields_set:
        return
    from repeatlens.analysis import check_run_options

    if options.metrics is not None:
        from repeatlens.scores import resolve_metrics

        try:
            resolve_metrics(options.metrics)
        except ConfigError as e:
            raise ConfigError(f"{path}: analyze.{e}") from None
    checked: set[str] = set()
    for p in points:
        cfg = RunConfig.model_validate(p.config)
        kind = json.dumps([cfg.data.synthetic_only, cfg.data.synthetic_fraction, cfg.data.test_sequences, cfg.model.n_ctx,
                           cfg.data.synthetic.max_len])  # all the options are checked against
        if kind in checked:
            continue
        checked.add(kind)
        try:
            check_run_options(cfg, options=options)
        except ConfigError as e:
            raise ConfigError(f"{path}: analyze: {e}" + (f" (point {p.name})" if len(points) > 1 else "")) from None


# ----------------------------------------------------------------------------- one point


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Train one grid point into its run directory, then analyse it (executor entry point).

    ``task``: ``name``, ``config`` (dict), ``run_dir`` (absolute), ``analyze`` (dict of
    `repeatlens.analyze` arguments), ``threads`` (torch threads or None).
    Returns a plain dict (picklable by every executor): ``name``, ``ok``, ``error``,
    ``traceback`` (unexpected errors only), ``failures`` ([path, reason] pairs),
    ``trained`` and ``seconds``.
    """
    t0 = time.perf_counter()
    out: dict[str, Any] = {"name": task["name"], "ok": True, "error": None, "traceback": None, "failures": [], "trained": False}
    try:
        from repeatlens.determinism import prepare_process

        prepare_process()  # before torch starts CUDA in this worker
        import torch

        if task.get("threads"):
            torch.set_num_threads(int(task["threads"]))
        from repeatlens.analysis import analyze
        from repeatlens.checkpoints import RunDir
        from repeatlens.train import train

        cfg = config_from_dict(task["config"], where=f"sweep point {task['name']}")
        out["trained"] = not RunDir(task["run_dir"]).is_complete()
        train(cfg, task["run_dir"], progress=False)
        res = analyze(task["run_dir"], progress=False, **task.get("analyze", {}))
        out["failures"] = [[f.path, f.reason] for f in res.failures]
    except RepeatlensError as e:
        out.update(ok=False, error=str(e))
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            out.update(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        else:  # a permission, a full disk, a name too long: the user's machine, one line
            out.update(ok=False, error=os_error_message(e))
    except MemoryError as e:
        out.update(ok=False, error=f"out of memory ({first_line(e)})")
    except Exception as e:  # noqa: BLE001 - reported by the parent with its traceback
        out.update(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    out["seconds"] = time.perf_counter() - t0
    return out


def _init_worker(driver_pid: int) -> None:
    """Pool worker start-up: exit when the sweep driver dies, however it dies.

    Without this, killing ``repeatlens sweep`` (SIGTERM, SIGKILL, a closed terminal) left
    its workers training on, orphaned, into the same run directories a rerun would use.
    On Linux the kernel sends SIGTERM when the parent exits (``PR_SET_PDEATHSIG``);
    elsewhere a daemon thread polls the parent pid. A killed worker's run resumes from its
    last checkpoint on the next ``repeatlens sweep``.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != driver_pid:  # the driver died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == driver_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="repeatlens-parent-watch", daemon=True).start()


# ------------------------------------------------------------------------------ executors


def _execute_local(tasks: list[dict[str, Any]], workers: int, on_done: Callable[[dict[str, Any]], None]) -> None:
    if workers <= 1:
        for task in tasks:
            on_done(run_point(task))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
    ) as pool:
        futures = [pool.submit(run_point, task) for task in tasks]
        for fut in as_completed(futures):
            on_done(fut.result())


#: Ray retries a task this many times when its worker or node is lost (not on exceptions:
#: run_point reports those itself); each retry resumes the point from its last checkpoint.
RAY_MAX_RETRIES = 3


def _ray_task(task: dict[str, Any]) -> dict[str, Any]:
    """One grid point as a Ray task: :func:`run_point`, plus what Ray gave the task (``placement``).

    A task that was given no GPU is shown none (``CUDA_VISIBLE_DEVICES=""``, before torch
    starts CUDA), so ``train.device: auto`` trains it on the CPU instead of on GPU 0 of
    its node next to every other point.
    """
    import ray

    ctx = ray.get_runtime_context()
    gpu_ids = [str(i) for i in ctx.get_accelerator_ids().get("GPU", [])]
    if not gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    placement = {
        "resources": dict(ctx.get_assigned_resources()),
        "gpu_ids": gpu_ids,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "threads": task.get("threads"),
        "node_id": ctx.get_node_id(),
        "pid": os.getpid(),
        "start": time.time(),
    }
    out = run_point(task)
    out["placement"] = {**placement, "end": time.time()}
    return out


def _execute_ray(
    tasks: list[dict[str, Any]],
    address: Optional[str],
    num_cpus: int,
    on_done: Callable[[dict[str, Any]], None],
    *,
    cpus_per_run: int = 1,
    gpus_per_run: Optional[float] = None,
    say: Callable[[str], None] = print,
) -> None:
    ray = optional_import("ray", "--executor ray", "ray", error=ConfigError)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": always a new instance, never a cluster a stale /tmp/ray/ray_current_cluster points to
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        started = True
    pending: dict[Any, dict[str, Any]] = {}
    try:
        if gpus_per_run is None:
            gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            if gpus_per_run:
                say("the Ray cluster has GPUs: one per point (--gpus-per-run 1)")
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=RAY_MAX_RETRIES)(_ray_task)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # lost more times than Ray retries, or cancelled
                text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()  # the last line names the cause
                result = {"name": task["name"], "ok": False, "error": f"Ray task failed ({type(e).__name__}: {text[-1] if text else ''})",
                          "traceback": None, "failures": [], "trained": False, "seconds": 0.0}
            on_done(result)
    finally:
        for ref in pending:  # stopped early (an exception, Ctrl-C): no task trains on without us
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _check_devices_for_ray_gpus(points: list[SweepPoint], gpus: float) -> None:
    """With GPUs per task, Ray picks each point's devices: ``train.device`` must let it (auto, cuda, cuda:0)."""
    for p in points:
        device = p.config["train"]["device"]
        if device not in ("auto", "cuda", "cuda:0"):
            raise ConfigError(
                f"point {p.name}: train.device = {device!r} with --gpus-per-run {gpus:g}: Ray shows each task only its own "
                f"GPU(s), as cuda:0 onwards; expected auto or cuda (or --gpus-per-run 0)"
            )


def _check_this_machine(spec: SweepSpec) -> None:
    """Before any point trains: this machine has every device the points train and score on,
    and what their wandb settings need (:func:`repeatlens.train.check_wandb`)."""
    from repeatlens.devices import resolve_device
    from repeatlens.train import check_wandb

    devices = {spec.analyze.get("device", "auto"): "analyze.device"}
    for p in spec.points:
        devices.setdefault(p.config["train"]["device"], f"point {p.name}: train.device")
    for device, where in devices.items():
        resolve_device(device, where=where)
    for p in spec.points:
        check_wandb(RunConfig.model_validate(p.config))


# ------------------------------------------------------------------------------- driver


def _sweep_record(path: Path, spec: SweepSpec, say: Callable[[str], None]) -> dict[str, Any]:
    """``sweep.json``: this sweep (source, grid, analyze, points) and, under ``earlier``, each
    other sweep written into the same folder before it (once each), so the record names every
    run the root tables join. An unreadable earlier record is replaced, saying so."""
    from repeatlens.checkpoints.reading import read_json_object
    from repeatlens.io import as_json

    this = as_json({"source": str(spec.source) if spec.source else None, "grid": spec.grid, "analyze": spec.analyze,
                    "points": [{"name": p.name, "values": p.values} for p in spec.points]})
    earlier: list[dict[str, Any]] = []
    if path.is_file():
        try:
            before = read_json_object(path, "sweep record")
        except CheckpointError as e:
            say(f"{e}; writing a new one")
        else:
            earlier = [r for r in before.get("earlier", []) if isinstance(r, dict)]
            earlier.append({k: v for k, v in before.items() if k != "earlier"})
    earlier = [r for i, r in enumerate(earlier) if r != this and r not in earlier[:i]]
    return {**this, "earlier": earlier} if earlier else this


def _other_finished_runs(out: Path, names: set[str]) -> tuple[list["RunDir"], list[str]]:
    """The complete run directories under ``out`` that are not the sweep's points (other
    sweeps or runs written into the same folder), which the sweep root's tables join too,
    as ``repeatlens analyze OUT`` does; and a line for each left out (unfinished, or its
    files disagree), named with why."""
    from repeatlens.results.store import sweep_runs

    keep, left_out = [], []
    for run in sweep_runs(out):
        if run.path.name in names:
            continue
        if not run.is_complete():
            left_out.append(f"{run.path.name} (not complete)")
            continue
        try:
            keep.append(run.check())
        except CheckpointError as e:
            left_out.append(f"{run.path.name} ({e})")
    return keep, left_out


def run_sweep(
    spec: SweepSpec | str | Path,
    out: str | Path,
    *,
    executor: str = "local",
    address: Optional[str] = None,
    workers: Optional[int] = None,
    gpus_per_run: Optional[float] = None,
    cpus_per_run: Optional[int] = None,
    progress: bool = True,
    echo: Optional[Callable[[str], None]] = None,
) -> SweepResult:
    """Train and analyse every point of a sweep under ``out``, then join the tables.

    Args:
        spec: a :class:`SweepSpec` or the path of a sweep YAML.
        out: the sweep directory (one run directory per point inside).
        executor: ``"local"`` (process pool) or ``"ray"``.
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``); default a local
            Ray instance with ``workers`` CPUs.
        workers: parallel points; default the number of cores (capped at the points).
        gpus_per_run: Ray only: GPUs each point's task requests (fractions share a GPU);
            default 1 when the cluster has GPUs, else 0.
        cpus_per_run: Ray only: CPUs each point's task requests, and its torch thread
            count; default 1.
        progress: progress bar over points.
        echo: where per-point lines go (default: written above the progress bar).

    Returns:
        A :class:`SweepResult`; points that failed are listed in ``errors`` and do not stop
        the others.
    """
    from tqdm.auto import tqdm

    from repeatlens.analysis import Failure, needs_scoring
    from repeatlens.results.store import write_sweep_tables
    from repeatlens.checkpoints import RunDir
    from repeatlens.io import LOCK_FILE, atomic_write_json, file_lock

    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor {executor!r}: expected local or ray")
    if executor != "ray" and (gpus_per_run is not None or cpus_per_run is not None):
        flag = "--gpus-per-run" if gpus_per_run is not None else "--cpus-per-run"
        raise ConfigError(f"{flag}: applies to --executor ray only (the local pool sizes itself to the cores)")
    if gpus_per_run is not None and gpus_per_run < 0:
        raise ConfigError(f"--gpus-per-run {gpus_per_run:g}: expected a number >= 0 (a fraction shares a GPU)")
    if cpus_per_run is not None and cpus_per_run < 1:
        raise ConfigError(f"--cpus-per-run {cpus_per_run}: expected a whole number >= 1")
    if not isinstance(spec, SweepSpec):
        spec = load_sweep(spec)
    if gpus_per_run:
        _check_devices_for_ray_gpus(spec.points, gpus_per_run)
    if executor == "local":  # Ray's workers may have devices this driver lacks
        _check_this_machine(spec)
    out = Path(out).resolve()
    t0 = time.perf_counter()
    result = SweepResult(out)
    say = echo or (lambda line: tqdm.write(line))
    options = _sweep_analyze_options(spec.analyze, "sweep")  # a SweepSpec built by hand may still say seed (or set both names)
    analyze_kwargs = options.kwargs()

    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / LOCK_FILE):  # read, add to and write the record as one step beside another sweep's
        atomic_write_json(out / "sweep.json", _sweep_record(out / "sweep.json", spec, say))
    tasks = []
    for p in spec.points:
        run_dir = out / p.name
        if RunDir(run_dir).is_complete() and not needs_scoring(run_dir, options.metrics, options):
            result.skipped.append(p.name)
            continue
        tasks.append({"name": p.name, "config": p.config, "run_dir": str(run_dir), "analyze": dict(analyze_kwargs)})

    cores = available_cores()
    n = max(1, min(workers or cores, len(tasks) or 1))
    for task in tasks:  # a Ray task runs on the CPUs it requested (Ray sets OMP_NUM_THREADS to them too)
        # one local worker runs in this process: keep the caller's torch thread count
        task["threads"] = (cpus_per_run or 1) if executor == "ray" else (None if n == 1 else max(1, cores // n))
    if result.skipped:
        say(f"{len(result.skipped)} of {len(spec.points)} points already complete and scored")

    bar = tqdm(total=len(tasks), desc="sweep", unit="run", disable=not progress or not tasks)

    def on_done(r: dict[str, Any]) -> None:
        bar.update(1)
        result.failures += [Failure(path, reason) for path, reason in r["failures"]]
        if r.get("placement"):
            result.placements[r["name"]] = r["placement"]
        if r["ok"]:
            result.done.append(r["name"])
            say(f"{'trained' if r['trained'] else 'analysed'} {r['name']} ({r['seconds']:.1f} s)")
        else:
            result.errors.append((r["name"], r["error"]))
            say(f"FAILED {r['name']}: {r['error']}" + (f"\n{r['traceback']}" if r["traceback"] else ""))

    try:
        if tasks and executor == "ray":
            _execute_ray(tasks, address, n if workers else cores, on_done, cpus_per_run=cpus_per_run or 1,
                         gpus_per_run=gpus_per_run, say=say)
        elif tasks:
            _execute_local(tasks, n, on_done)
    finally:
        bar.close()
    mine = [RunDir(out / p.name) for p in spec.points if RunDir(out / p.name).is_run()]
    if mine:
        others, left_out = _other_finished_runs(out, {p.name for p in spec.points})
        if left_out:
            say(f"{out}: left out of the joined tables (not this sweep's, and not whole): {'; '.join(left_out)}")
        result.tables = write_sweep_tables(out, mine + others)
    result.seconds = time.perf_counter() - t0
    return result
