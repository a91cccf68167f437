# The two README commands: `make run` (main job on the embedded defaults) and `make test`.
# The tests run on two pytest-xdist workers, a file per worker at a time: the browser and notebook tests
# mostly wait on servers and kernels, so two workers take about two thirds of the serial time on 2 cores.
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
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests plugins/explainkit-example/tests

# ruff (pyflakes, pycodestyle errors, isort, bugbear) and the layer contract (import-linter), both in pyproject.toml
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
