# `make demo` (the README's first command) and `make test` work on a fresh machine, offline except for
# the package registries: they create .venv, install pinned torch and what they need, and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned in the same pip command as everything that depends on it, so pip never swaps it.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
PIP_INSTALL := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: install demo test test-fast test-ray lint fixtures clean

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

# ruff (lint + format), mypy (types) and import-linter's layer contract (pyproject.toml); `make test` runs it first.
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks scripts examples
	$(VENV)/bin/ruff format --check src tests benchmarks scripts examples
	$(VENV)/bin/mypy src/swiftformer
	$(VENV)/bin/lint-imports

# The suite, then the Ray Serve tests apart (test-ray) where they can be confined: as root.
test: lint
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory test-ray; else \
	  echo "make test: the Ray tests (tests/test_serve_ray.py, test_batch_ray.py) were not run: they need root to make a"; \
	  echo "  loopback-only network namespace, since a local Ray instance listens on all interfaces (sudo make test-ray)"; fi

# Everything but the tests marked slow (training, heavy compiles and conversions): the lane to run while working.
# PYTEST_ARGS adds options, e.g. `make test-fast PYTEST_ARGS="--fake-cpu amx"` decides as an AMX Xeon would.
test-fast: lint
	$(PY) -m pytest -q -m "not slow" --durations=10 $(PYTEST_ARGS)

# tests/test_serve_ray.py and tests/test_batch_ray.py in a network namespace of its own where only loopback
# exists (a local Ray instance's services listen on all interfaces): root, unshare (util-linux) and ip
# (iproute2). About 3 min on 2 cores.
test-ray: $(VENV)/.installed-test
	PATH="$$PATH:/usr/sbin:/sbin" unshare --net sh -c \
	  'ip link set lo up && SWIFTFORMER_RAY_TESTS=1 exec $(PY) -m pytest -q tests/test_serve_ray.py tests/test_batch_ray.py'

# Regenerate the golden fixtures in tests/fixtures from transformers (the reference).
fixtures: $(VENV)/.installed-test
	$(PY) scripts/make_golden_fixtures.py
	$(PY) scripts/make_image_processing_fixture.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache runs
