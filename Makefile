# repeatlens: two commands from a fresh clone.
#   make demo   creates .venv, installs repeatlens, runs the main job (`repeatlens demo`)
#   make test   creates .venv, installs repeatlens with test extras, runs the test suite
#
# torch is installed BEFORE the package so pip never resolves a multi-GB CUDA build on a
# CPU-only machine. Override for your machine, e.g.
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu      (CPU wheels, any Linux)
#   make demo TORCH="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu126  (a GPU)

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,ray,export,hf,notebooks
# test processes: the suite is CPU-bound on one thread per process (tests/conftest.py), so one per core
TEST_WORKERS ?= 2
DEMO_OUT ?= demo_out
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# what installs the packages after torch: pip, or uv (PyPI's, installed into the venv; CI uses it:
# the same versions in about a third of pip's time). torch always comes through pip, which takes the
# CPU wheel where one lies on disk. --compile-bytecode: without it Ray's processes compile ray at
# their first import, all at once, and `ray start --head` misses its deadlines.
INSTALLER ?= pip
ifeq ($(INSTALLER),uv)
INSTALL := $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY)
else
INSTALL := $(PIP) install -q
endif
export HF_HUB_OFFLINE := 1

.PHONY: demo test setup setup-dev torch browser clean

$(PY):
	$(PYTHON) -m venv $(VENV)

torch: $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "installing $(TORCH) $(if $(TORCH_INDEX),from $(TORCH_INDEX))"; \
		$(PIP) install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	@if [ "$(INSTALLER)" = uv ] && [ ! -x $(VENV)/bin/uv ]; then $(PIP) install -q uv; fi
	@if ! command -v nvidia-smi >/dev/null 2>&1 && [ "$$($(PY) -c 'import torch; print(torch.version.cuda is not None)')" = True ]; then \
		echo "warning: a CUDA build of torch is installed on a machine without a GPU; see README (TORCH_INDEX)"; fi

setup: torch
	$(INSTALL) -e .

setup-dev: torch
	$(INSTALL) -e ".[$(EXTRAS)]"

demo: setup
	$(VENV)/bin/repeatlens demo --out $(DEMO_OUT)

test: setup-dev
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Debian's chromium (+ chromedriver for the report test): what kaleido's PNG/PDF/SVG export
# and the browser test use. Needs root and apt; elsewhere install Chromium your own way.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null 2>&1; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	else echo "install Chromium (and chromedriver for the tests) to export PNG/PDF/SVG"; fi

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
