# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,retrieval,spark]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/nextbest demo

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python benchmarks/bench_build.py

clean:
	rm -rf .nextbest dbt_project/target dbt_project/logs
