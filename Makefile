# The two README commands: `make run` (main job on the embedded defaults) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup setup-browser run test lint bench

setup:
	bash scripts/setup.sh

setup-browser:
	bash scripts/setup.sh --browser

run: setup
	$(BIN)/explainkit run

test: setup-browser lint
	$(BIN)/python -m pytest -q tests plugins/explainkit-example/tests

# ruff (pyflakes, pycodestyle errors, isort, bugbear) and the layer contract (import-linter), both in pyproject.toml
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
