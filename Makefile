# dsrflow: `make run` starts the service, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-fast lint format bench reliability letters diagrams screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/dsrflow serve --host $(HOST) --port $(PORT)

# Lint, then the suite on SQLite and PostgreSQL (servers are started by the fixtures).
test: install lint
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/pytest -q -x -m "not postgres and not browser and not slow" -p no:cacheprovider

# The requester pages in headless Chromium at 390 and 1280 px, screenshots into docs/pages/.
screenshots: install
	DSRFLOW_SCREENSHOT_DIR=docs/pages $(BIN)/pytest -q tests/pages/test_journeys.py -k sqlite -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy src

format: install
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

# The reliability proof at full size (docs/reliability.md): 20 SIGKILLs per database and a
# longer schemathesis run; `make test` runs the same tests small.
reliability: install
	DSRFLOW_RELIABILITY_KILLS=20 DSRFLOW_FUZZ_EXAMPLES=50 $(BIN)/pytest -q -s -p no:cacheprovider tests/reliability

# The HTTP cells need Debian's wrk: installed here when missing and we may (root with apt).
bench: install
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| { apt-get -qq update && apt-get -y -qq install --no-install-recommends wrk; }
	$(BIN)/python -m bench

letters: install
	$(BIN)/python scripts/render_letters.py > docs/letters.md

diagrams: install
	$(BIN)/python scripts/render_diagrams.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
