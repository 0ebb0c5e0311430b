# Two commands do all the set-up on a fresh machine:
#   make demo   — install, then init + generate + verify on the embedded defaults (SQLite, tiny model, local CA)
#   make test   — install, then run the test suite (the same command CI runs: .ci/run)
# PyTorch is installed first, pinned to the CPU build (torch==2.13.0); any other spec would pull CUDA packages.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hallmark-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hallmark init
	$(BIN)/hallmark generate "a red kite over the sea" -o out.mp4 --json
	$(BIN)/hallmark verify out.mp4

# One worker per core, each test file on one worker (its module fixtures, such as a marked clip, are made once):
# on CI's 2 cores the suite takes about 9 minutes instead of 16. Every worker has its own PostgreSQL schema and
# data dirs (tests/conftest.py), so they do not see each other's rows.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile

# The long benchmarks, kept out of the test run; each writes its own section of BENCHMARKS.md (about 1.5 h in all).
bench: $(STAMP)
	$(BIN)/python -m bench.watermark --quick --fp-clips 520
	$(BIN)/python -m bench.provenance
	$(BIN)/python -m bench.faces
	$(BIN)/python -m bench.gate
	$(BIN)/python -m bench.audit

clean:
	rm -rf $(VENV) .hallmark out.mp4
