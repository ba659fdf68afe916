# netbroker: the README's commands. Every target makes and uses .venv itself,
# so on a fresh clone `make demo` and `make test` are the only set-up needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test serve bench lint clean interop drill reliability mutation

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/netbroker demo

test: $(STAMP)
	$(BIN)/ruff check netbroker collectors dispatcher pilot sql tests bench examples
	$(BIN)/python -m mypy
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

# The real PanDA Pilot 3, unmodified: 3.7 from PyPI's sdist (the wheel has no pilot.py),
# in a venv of its own, and 3.11 (GitHub's master, which these machines cannot reach)
# from the vendored git archive beside the project; tests/test_interop_pilot3.py runs
# both against netbroker. Neither is ever committed.
PILOT3_VERSION ?= 3.7.0.36
PILOT3_NEXT ?= $(firstword $(wildcard ../shared/vendor/pilot3-*.tar.gz /work/shared/vendor/pilot3-*.tar.gz))
INTEROP := .interop
interop: $(INTEROP)/src/pilot.py $(INTEROP)/next/pilot.py

$(INTEROP)/next/pilot.py: $(INTEROP)/src/pilot.py
	@test -n "$(PILOT3_NEXT)" || { echo "interop: no vendored pilot3-*.tar.gz (set PILOT3_NEXT)"; exit 1; }
	rm -rf $(INTEROP)/next $(INTEROP)/next.tmp && mkdir -p $(INTEROP)/next.tmp
	tar -xzf $(PILOT3_NEXT) -C $(INTEROP)/next.tmp
	mv $(INTEROP)/next.tmp/* $(INTEROP)/next && rmdir $(INTEROP)/next.tmp

$(INTEROP)/src/pilot.py:
	rm -rf $(INTEROP) && mkdir -p $(INTEROP)/dl
	$(PYTHON) -m venv $(INTEROP)/venv
	$(INTEROP)/venv/bin/python -m pip download --quiet --no-binary :all: --no-deps \
		-d $(INTEROP)/dl panda-pilot==$(PILOT3_VERSION)
	tar -xzf $(INTEROP)/dl/panda-pilot-$(PILOT3_VERSION).tar.gz -C $(INTEROP)
	mv $(INTEROP)/panda-pilot-$(PILOT3_VERSION) $(INTEROP)/src
	$(INTEROP)/venv/bin/python -m pip install --quiet --no-deps $(INTEROP)/src

# Mutation testing of the policy modules (docs/mutation.md): every survivor must be
# named there as equivalent, with why. MUTATION_ARGS: --only FILE, --since REF, --record.
mutation: $(STAMP)
	$(BIN)/python .ci/mutation.py $(MUTATION_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check netbroker collectors dispatcher pilot sql tests bench examples
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) $(INTEROP) build dist *.egg-info netbroker-demo.db* netbroker-demo-work netbroker-demo-report
