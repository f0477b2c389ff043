"""The notebooks in notebooks/ run top to bottom (tiny settings) and are committed without outputs.

Each notebook is executed with nbclient in a kernel of the interpreter running the tests,
with ``REPEATLENS_TINY=1`` (a few training steps), ``HF_HUB_OFFLINE=1`` and
``OMP_NUM_THREADS=1``, in a temporary working directory, writing into a temporary
``REPEATLENS_NOTEBOOK_OUT``. Any cell error fails the test.

Executing needs the ``notebooks`` extra (nbclient, ipykernel). Without it these tests skip,
except under CI (``CI=true``), which installs the extra: there they fail instead, so a broken
install cannot pass as a skip. The no-outputs check needs only the standard library.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_quickstart.ipynb", "02_explore_sweep.ipynb", "03_paper_export.ipynb"]
KERNEL_NAME = "repeatlens-notebook-test"
#: seconds per cell; a whole notebook takes well under a minute with REPEATLENS_TINY=1
CELL_TIMEOUT = 300


def test_expected_notebooks_exist() -> None:
    missing = sorted(set(EXPECTED) - {p.name for p in NOTEBOOKS})
    assert not missing, f"missing from {NOTEBOOK_DIR}: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or execution counts; strip them before committing "
        f"(jupyter nbconvert --clear-output --inplace {path.relative_to(NOTEBOOK_DIR.parent)})"
    )
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: saved widget state is an output too; clear it"
    assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name}: the first cell should say what it shows"


def _require(module: str):
    """Import an optional dependency: skip without it, but fail under CI (which installs it)."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        return importlib.import_module(module)  # ImportError: the test fails
    return pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[notebooks]'")


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec that runs THIS interpreter, so a user-level ``python3`` kernel cannot shadow it."""
    _require("ipykernel")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "repeatlens tests", "language": "python"}))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, kernel_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = _require("nbformat")
    nbclient = _require("nbclient")
    out = tmp_path / "out"
    # the kernel inherits this environment
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))  # searched before user and system kernel dirs
    monkeypatch.setenv("REPEATLENS_TINY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("REPEATLENS_NOTEBOOK_OUT", str(out))
    monkeypatch.delenv("REPEATLENS_SWEEP", raising=False)
    monkeypatch.setenv("REPEATLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the traceback's terminal colours
        pytest.fail(f"{path.name}: a cell failed\n{message}", pytrace=False)
    elapsed = time.perf_counter() - t0
    print(f"{path.name}: {elapsed:.1f} s")
    assert out.is_dir() and any(out.rglob("*")), f"{path.name} wrote nothing under REPEATLENS_NOTEBOOK_OUT"
