# Lake — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench clean

# --no-compile: other packages' bytecode is written on first import, for the modules used only.
# Lake's own modules are compiled here: with PYTHONDONTWRITEBYTECODE set (common in containers),
# every `lake` call would otherwise compile them again.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[dev,local,embed]'
	$(BIN)/python -m compileall -q lakehouse functions lake
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
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=15

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/compaction.py

clean:
	-$(BIN)/lake down
	rm -rf $(VENV) .lake .pytest_cache .mypy_cache .ruff_cache
