# netbroker: the README's commands. Every target makes and uses .venv itself,
# so on a fresh clone `make demo` and `make test` are the only set-up needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test serve bench lint clean interop drill reliability

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

# Kill and restart the service, restart PostgreSQL, send malformed metrics, under load;
# then account for every job and record (bounded sizes: well under a minute).
drill: $(STAMP)
	$(BIN)/netbroker drill --jobs 1500 $(DRILL_ARGS)

# The reliability suite alone (make test runs it too): bad input on the wire, limits,
# a gzip bomb, SQLite shared by processes, busy cycles, SIGKILL; then the drill on both
# backends.
reliability: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m reliability tests
	$(BIN)/netbroker drill --jobs 1500 --backend sqlite
	$(BIN)/netbroker drill --jobs 1500 --backend postgresql

# The real PanDA Pilot 3, unmodified, from PyPI's sdist (the wheel has no pilot.py),
# in a venv of its own; tests/test_interop_pilot3.py runs it against netbroker.
PILOT3_VERSION ?= 3.7.0.36
INTEROP := .interop
interop: $(INTEROP)/src/pilot.py

$(INTEROP)/src/pilot.py:
	rm -rf $(INTEROP) && mkdir -p $(INTEROP)/dl
	$(PYTHON) -m venv $(INTEROP)/venv
	$(INTEROP)/venv/bin/python -m pip download --quiet --no-binary :all: --no-deps \
		-d $(INTEROP)/dl panda-pilot==$(PILOT3_VERSION)
	tar -xzf $(INTEROP)/dl/panda-pilot-$(PILOT3_VERSION).tar.gz -C $(INTEROP)
	mv $(INTEROP)/panda-pilot-$(PILOT3_VERSION) $(INTEROP)/src
	$(INTEROP)/venv/bin/python -m pip install --quiet --no-deps $(INTEROP)/src

lint: $(STAMP)
	$(BIN)/ruff check netbroker collectors dispatcher pilot sql tests bench

clean:
	rm -rf $(VENV) $(INTEROP) build dist *.egg-info netbroker-demo.db* netbroker-demo-work netbroker-demo-report
