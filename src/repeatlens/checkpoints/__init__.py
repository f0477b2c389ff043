"""Run directories: layout, checkpoints with sidecars, lazy iteration over models.

A run directory holds::

    config.yaml            the validated RunConfig (the run's full description)
    manifest.json          D, f, E, S, repeated sequence ids, seeds, schedule hash …
    tokenizer.json         the tokenizer the corpus was tokenized with (text corpora only)
    data/rows.npy          the run's sequences [test | repeated | unique] by reference: per row, its row
                           in the corpus's cached token stream, or among the run's synthetic rows
    data/is_synthetic.npy  per row, whether it is synthetic (regenerated from the manifest's seeds)
    data/schedule.npy      pool row trained on at each slot
    checkpoints/step_0000100.safetensors        model weights (every checkpoint)
    checkpoints/step_0000100.train.safetensors  optimizer moments and RNG state (resume; the last
                                                two checkpoints only, unless train.keep_optimizer: all)
    checkpoints/step_0000100.json               sidecar: step, tokens_seen, sha256s, versions
    metrics.parquet        step, tokens_seen, split (train|test|repeated), loss
    complete.json          written last: the run finished

Runs written before the pool was stored by reference hold ``data/pool.npy``, the rows
themselves; :meth:`RunDir.pool` reads either. Every file is written atomically; a checkpoint counts only once its sidecar exists (the
sidecar is written last), and its sha256 is checked when it is loaded. Nothing is ever
unpickled: weights are safetensors, metadata JSON/YAML.

Reading a run's config, manifest, sidecars and metrics imports neither torch nor
TransformerLens (``repeatlens info`` answers without them); torch is imported where
tensors are read or written.

The package: :mod:`.rundir` (:class:`RunDir`, :class:`CheckpointInfo`, :func:`load_run`),
:mod:`.manifest` (:class:`Manifest`, the typed ``manifest.json``), :mod:`.contract` (what the manifest records, :func:`run_file_problems`), :mod:`.reading`
(one-line errors for damaged files) and :mod:`.writing` (checkpoints, resume state); every
name is importable from here.
"""

from __future__ import annotations

from repeatlens.errors import RepeatlensError
from repeatlens.checkpoints.reading import load_npy, read_json_object, read_parquet_table, read_sidecar, step_name
from repeatlens.checkpoints.manifest import FileRecord, Manifest
from repeatlens.checkpoints.rundir import CKPT_DIR, CheckpointInfo, RunDir, library_versions, load_run
from repeatlens.checkpoints.contract import (
    MANIFEST_FORMAT,
    QUICK_HASH_BYTES,
    RECORDED_FILES,
    file_record,
    npy_header,
    run_file_problems,
)
from repeatlens.checkpoints.writing import (
    load_train_state,
    optimizer_tensors,
    prune_train_states,
    restore_optimizer,
    restore_rng,
    save_checkpoint,
    save_file,
)

__all__ = [
    "RunDir",
    "CheckpointInfo",
    "Manifest",
    "FileRecord",
    "load_run",
    "save_checkpoint",
    "load_train_state",
    "restore_optimizer",
    "restore_rng",
    "prune_train_states",
    "library_versions",
    "RepeatlensError",
]
