# The README's two commands: `make quick` (set up + quick reproduction) and `make test` (set up + tests).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup quick test dvc-yaml

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --editable '.[test]'
	touch $@

setup: $(VENV)/.installed

quick: setup
	$(BIN)/snakemake --cores all --configfile config/quick.yaml

test: setup
	$(BIN)/python -m pytest

dvc-yaml: setup
	$(BIN)/python -m metalr dvc-yaml --configfile config/quick.yaml
