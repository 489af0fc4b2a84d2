# Quick start: `make reproduce` (set up + main job) and `make test` (set up + test suite).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup reproduce test lint style specialist-cpu cluster-up cluster-down clean

setup:
	bash scripts/setup.sh

reproduce: setup
	$(VENV)/bin/onlyif reproduce

# Two pytest workers, a test file each at a time (module fixtures are built once), the costliest files first
# (tests/conftest.py): one worker leaves about a quarter of 2 cores idle while processes start and wait.
# The 15 slowest tests are listed.
TEST_WORKERS ?= 2
test: setup lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 tests

# The specialist sweep for real on CPU (SmolLM2-135M, offline stdlib code data, HumanEval pass@1; ~21 min).
SPECIALIST_OUT ?= runs/specialist-cpu-$(shell date +%Y%m%d-%H%M%S)
specialist-cpu: setup
	[ -f data/code_sources/manifest.json ] || $(VENV)/bin/onlyif sources --out data/code_sources
	[ -d data/heldout_code_cpu/test_code ] || \
		$(VENV)/bin/onlyif mix --config jobs/configs/mix_heldout_code_cpu.yaml --out data/heldout_code_cpu
	$(VENV)/bin/onlyif sweep --config jobs/configs/sweep_specialist_cpu.yaml --out $(SPECIALIST_OUT)

# A local Ray head + MLflow server for `ray job submit` (README "Run on a cluster"); e.g.
#   make cluster-up CLUSTER_ARGS="--workers 1 --head-cpus 1"   then   source .cluster/env.sh
cluster-up: setup
	$(VENV)/bin/onlyif cluster up $(CLUSTER_ARGS)

cluster-down:
	$(VENV)/bin/onlyif cluster down

lint: setup
	$(VENV)/bin/ruff check onlyif tests bench jobs
	$(VENV)/bin/ruff format --check onlyif tests bench jobs
	$(PY) scripts/check_import_cycles.py onlyif

style:
	$(VENV)/bin/ruff check --fix onlyif tests bench jobs
	$(VENV)/bin/ruff format onlyif tests bench jobs

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
