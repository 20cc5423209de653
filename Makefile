# The two commands of the README:
#   make demo   create .venv, install lawtune, run the whole pipeline on the bundled sample
#   make test   create .venv, install lawtune + test tools, run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel of torch first, so nothing later pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	./scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/lawtune demo

test: $(STAMP) system-deps
	$(BIN)/pytest

clean:
	rm -rf $(VENV) out runs .pytest_cache
