# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is absent and
# re-install only when pyproject.toml changed since the last install.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= outputs/demo
N       ?= 50

.PHONY: demo test bench install clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need Python 3.11 ($(PY)) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ecg-grounding run --source synthetic --n $(N) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) outputs/demo
