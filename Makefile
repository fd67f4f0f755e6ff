# `make test` works on a fresh machine: it creates .venv, installs pinned torch and the test
# dependencies (transformers is the reference for the parity tests), then runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned in the same pip command as everything that depends on it, so pip never swaps it.
TORCH_PIN := torch==2.14.1

.PHONY: test install fixtures clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN) -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Regenerate the golden fixtures in tests/fixtures from transformers (needs .[test]).
fixtures: $(VENV)/.installed
	$(PY) scripts/make_golden_fixtures.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
