# Two commands for a fresh machine: `make demo` and `make test`. Both create and use the virtualenv .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_ROWS ?= 1000000
DEMO_EPOCHS ?= 3

.PHONY: install test demo bench clean

install: $(STAMP)

# setup.py builds ingest's compiled parser (ingest/_fastcsv.c) in place; a change to it reinstalls
$(STAMP): setup.cfg setup.py pyproject.toml ingest/_fastcsv.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m tools.demo --rows $(DEMO_ROWS) --epochs $(DEMO_EPOCHS)

bench: $(STAMP)
	$(PY) -m tools.bench

clean:
	rm -rf data/demo .pytest_cache
