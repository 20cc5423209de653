# The commands of the README:
#   make demo   create .venv, install lawtune, run the whole pipeline on the bundled sample
#   make test   create .venv, install lawtune + test tools, run every test
#   make test-fast  only the fast tier (`pytest -m unit`: no model, server, browser or database), under a minute
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install system-deps clean

# torch first, pinned to the CPU build, so nothing later pulls a multi-GB CUDA build (pyproject's range is
# satisfied by it). `+cpu` is the local version label of PyTorch's CPU wheels on x86_64: it exists only on
# PyTorch's CPU index (or as a file pip already knows), never on PyPI, so the pin cannot fall back to PyPI's
# CUDA build. pip's own configuration is tried first (a find-links folder or mirror that has the wheel, as on
# the project's machines, where PyTorch's index is not reachable); when it has no such build (an ordinary
# machine: PyPI alone fails at once), PyTorch's CPU index is added as an extra index next to PyPI, which
# still serves torch's dependencies. A GPU machine picks its own build:
#   make TORCH='torch==2.13.0' TORCH_INDEX=https://download.pytorch.org/whl/cu128
# (aarch64: PyPI's own torch wheels are the CPU build, so the pin has no label there.)
TORCH ?= torch==2.13.0$(if $(filter x86_64,$(shell uname -m)),+cpu,)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '$(TORCH)' 2>/dev/null || \
		$(BIN)/pip install -q --extra-index-url $(TORCH_INDEX) '$(TORCH)'
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	./scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/lawtune demo

test: $(STAMP) system-deps
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m unit -q

clean:
	rm -rf $(VENV) out runs .pytest_cache
