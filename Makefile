# Two commands: `make run` (set up, build the demo, serve the app) and
# `make test` (set up, run every test). Both create the virtualenv if missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501
CUSTOMERS ?= 2000

.PHONY: run test setup browser bench lint clean-data

run: setup
	$(BIN)/clearmark demo --customers $(CUSTOMERS) --port $(PORT)

test: setup browser
	$(BIN)/python -m pytest -q

setup: $(VENV)/.installed

# torch first, from the CPU wheel: with it in place no other requirement can
# pull a CUDA build. constraints.txt pins every package to the tested version.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The browser tests drive Debian's chromium (Playwright cannot download one here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "Install Debian's chromium first: sudo apt-get install chromium" >&2; exit 1; fi; }

bench: setup
	$(BIN)/python -m bench.suite

lint: setup
	$(BIN)/ruff check core privacy explain dashboard tests bench

clean-data:
	rm -rf data/warehouse*.duckdb* data/quarantine data/raw data/models
