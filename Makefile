# `make test` works on a fresh machine: it creates .venv, installs pinned torch, the package and the
# test dependencies (transformers is the reference for the parity tests), then runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned in the same pip command as everything that depends on it, so pip never swaps it.
TORCH_PIN := torch==2.14.1

.PHONY: install test fixtures clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml Makefile | $(VENV)/bin/python
	$(PY) -m pip install -q $(TORCH_PIN) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q $(TORCH_PIN) -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# Regenerate the golden fixtures in tests/fixtures from transformers (the reference).
fixtures: $(VENV)/.installed-test
	$(PY) scripts/make_golden_fixtures.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
