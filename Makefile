# Two commands do all the set-up on a fresh machine:
#   make search   - install (if needed), then a short search on the defaults
#   make test     - install (if needed), then the test suite
#   make lint     - install (if needed), then ruff
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install data search lint test test-all test-long bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

FMNIST := /usr/share/datasets/fashion-mnist

# Real data with no download at run time: Debian's Fashion-MNIST package.
data:
	@if [ ! -d $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
	      || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	      || echo "could not install dataset-fashion-mnist: the quickstart falls back to digits"; \
	  else echo "Fashion-MNIST not found ('sudo apt-get install dataset-fashion-mnist'): the quickstart falls back to digits"; fi; \
	fi

search: $(STAMP) data
	$(VENV)/bin/hybridnas search --config configs/quickstart.yaml

# ruff, configured in pyproject.toml ([tool.ruff])
lint: $(STAMP)
	$(VENV)/bin/ruff check hybridnas tests benchmarks

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q -m "not long"

test-long: $(STAMP)
	$(PY) -m pytest -q -m long

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
