# netbroker: the README's commands. Every target makes and uses .venv itself,
# so on a fresh clone `make demo` and `make test` are the only set-up needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test serve bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/netbroker demo

test: $(STAMP)
	$(BIN)/ruff check netbroker collectors dispatcher pilot sql tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests netbroker collectors dispatcher pilot

serve: $(STAMP)
	$(BIN)/netbroker serve

bench: $(STAMP)
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check netbroker collectors dispatcher pilot sql tests bench

clean:
	rm -rf $(VENV) build dist *.egg-info netbroker-demo.db*
