# Lake — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The `scale` extra of pyproject.toml (same pins; tests/test_scale_packaging.py checks they match).
# Daft goes in without its dependencies: it declares pyarrow<26, which would downgrade Lake's
# pyarrow; everything it needs is already installed or named here.
DAFT_PIN := 'daft==0.7.26'
SCALE_PINS := 'ray[data]==2.60.0' 'daft-lance==0.6.0' 'tqdm<4.68' 'packaging'

.PHONY: demo test install lint bench clean

# Installed with --no-compile, then everything compiled at once on every core: with
# PYTHONDONTWRITEBYTECODE set (common in containers) nothing is ever written on import, and every
# `lake` call and every test subprocess would compile Lake and its libraries again (about 2 s of
# CPU per process).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[dev,local,embed]'
	$(BIN)/pip install --quiet --no-compile --no-deps $(DAFT_PIN)
	$(BIN)/pip install --quiet --no-compile $(SCALE_PINS)
	$(BIN)/python -m compileall -q -j 0 lakehouse functions lake
	$(BIN)/python -m compileall -q -j 0 -x 'py312_intrinsics' $(VENV)/lib  # torch's Python 3.12-only test helper
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	LAKE_LOG_LEVEL=WARNING $(BIN)/lake demo

# The console's browser tests drive Debian's Chromium (Playwright cannot download its own here).
CHROMIUM := /usr/lib/chromium/chromium

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check lakehouse functions lake tests bench console
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup --durations=15

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/compaction.py

clean:
	-$(BIN)/lake down
	rm -rf $(VENV) .lake .pytest_cache .mypy_cache .ruff_cache
