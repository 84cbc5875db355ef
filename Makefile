# lhaaso-joint: every target creates .venv and installs the project into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-slow demo bench gpu clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# make test: everything but the heavy end-to-end checks (marked slow), <= 8 min on 2 cores;
# two pytest workers (pytest-xdist; idle workers steal queued tests)
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist worksteal

# make test-slow: the heavy end-to-end checks (CI runs both)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -n 2 --dist worksteal

demo: $(STAMP)
	$(BIN)/lhaaso-joint demo --out demo_output

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
