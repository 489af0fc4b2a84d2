# Quick start: `make reproduce` (set up + main job) and `make test` (set up + test suite).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup reproduce test lint style bench clean

setup:
	bash scripts/setup.sh

reproduce: setup
	$(VENV)/bin/onlyif reproduce

test: setup
	$(PY) -m pytest -q tests

lint:
	$(VENV)/bin/ruff check onlyif tests bench jobs
	$(VENV)/bin/ruff format --check onlyif tests bench jobs

style:
	$(VENV)/bin/ruff check --fix onlyif tests bench jobs
	$(VENV)/bin/ruff format onlyif tests bench jobs

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
