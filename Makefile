# Two commands on a fresh machine: `make run` and `make test`. Each sets itself up (Python 3.11+ only).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# axe-core, which the browser tests (tests/browser/) inject into each page; it lives in the venv, so `clean` drops it.
AXE := $(VENV)/node/node_modules/axe-core/axe.min.js

.PHONY: install run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "verify needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Once: the file is the stamp. Without npm (or without a registry) the browser tests skip and say why.
$(AXE): | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		npm install --no-save --no-audit --no-fund --prefix $(VENV)/node axe-core@4 \
		|| echo "npm could not install axe-core: the browser tests (tests/browser/) will skip"; \
	else echo "npm not found: the browser tests (tests/browser/) will skip (they need axe-core from npm)"; fi

install: $(STAMP)

run: $(STAMP)
	$(BIN)/verify dev

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(AXE)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
