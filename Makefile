# `make demo` (the README's first command) and `make test` work on a fresh machine, offline except for
# the package registries: they create .venv, install pinned torch and what they need, and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned in the same pip command as everything that depends on it, so pip never swaps it.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
PIP_INSTALL := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: install demo test lint fixtures clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

$(VENV)/.installed: pyproject.toml Makefile | $(VENV)/bin/python
	$(PIP_INSTALL) $(TORCH_PIN) -e .
	touch $@

$(VENV)/.installed-demo: $(VENV)/.installed
	$(PIP_INSTALL) $(TORCH_PIN) -e '.[demo]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) $(TORCH_PIN) -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Train SwiftFormer-XS on scikit-learn's handwritten digits, evaluate, predict, plot (runs/demo).
demo: $(VENV)/.installed-demo
	$(PY) scripts/demo_digits.py

# ruff (lint + format) and import-linter's layer contract (pyproject.toml); `make test` runs it first.
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks scripts examples
	$(VENV)/bin/ruff format --check src tests benchmarks scripts examples
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q

# Regenerate the golden fixtures in tests/fixtures from transformers (the reference).
fixtures: $(VENV)/.installed-test
	$(PY) scripts/make_golden_fixtures.py
	$(PY) scripts/make_image_processing_fixture.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache runs
