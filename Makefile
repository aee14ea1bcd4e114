# Two commands on a fresh machine: `make run` and `make test`. Each sets itself up (Python 3.11+ only), from the
# committed lock: requirements/dev.txt pins every package (the toolchain included) with its hashes, so a release
# upstream changes nothing here until `make lock` is run and committed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" --quiet
# The venv of `make test-latest`: the newest releases pyproject.toml's ranges allow.
LATEST := .venv-latest
# axe-core, which the browser tests (tests/browser/) inject into each page; it lives in the venv, so `clean` drops it.
AXE_VERSION := 4.14.1
AXE := $(VENV)/node/node_modules/axe-core/axe.min.js

.PHONY: install run test lint format typecheck unit bench lock test-latest clean

# pip installs exactly the lock (--no-deps: nothing outside it), then the project itself, editable, without
# build isolation: setuptools comes from the lock too, so nothing is fetched unpinned.
$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "verify needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Once: the file is the stamp. Without npm (or without a registry) the browser tests skip and say why.
$(AXE): | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		npm install --no-save --no-audit --no-fund --prefix $(VENV)/node axe-core@$(AXE_VERSION) \
		|| echo "npm could not install axe-core: the browser tests (tests/browser/) will skip"; \
	else echo "npm not found: the browser tests (tests/browser/) will skip (they need axe-core from npm)"; fi

install: $(STAMP)

run: $(STAMP)
	$(BIN)/verify dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

# Branch coverage of verify/, the bar fail_under in pyproject.toml. One pytest process per core (pytest-xdist), each
# with its own Redis, embedded cluster and servers; a file's tests stay in one process (their module-scoped servers).
unit: $(STAMP) $(AXE)
	$(BIN)/pytest -n auto --dist loadfile --cov --cov-report=term-missing:skip-covered

test: lint typecheck unit

# Throughput (many connections), then latency at one client (issue 19); docs/performance.md has both.
bench: $(STAMP)
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.latency

# Refresh the locks from pyproject.toml's ranges (run `make test-latest` first). Commit the result.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra embedded $(LOCK_FLAGS) -o requirements/dev.txt

# The newest releases the ranges allow, in a venv of their own, through the same gates; the lock is not touched.
test-latest: $(STAMP) $(AXE)
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade -e '.[dev,embedded]'
	@$(BIN)/python tools/lock_diff.py requirements/dev.txt $(LATEST)/bin/python
	@status=0; \
	$(LATEST)/bin/ruff check . && $(LATEST)/bin/ruff format --check . && $(LATEST)/bin/mypy \
		&& $(LATEST)/bin/pytest || status=$$?; \
	if [ $$status -ne 0 ]; then \
		echo "make test-latest: FAILED with the newest releases above; the lock stays as it is until this passes"; \
	else echo "make test-latest: passed; \`make lock\` takes these versions"; fi; exit $$status

clean:
	rm -rf $(VENV) $(LATEST) .dev .pytest_cache .mypy_cache .ruff_cache .coverage
