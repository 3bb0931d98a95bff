"""Shared fixtures: tiny models built in code, isolated caches, offline mode."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from tests.helpers.guard import ensure_task_identity

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The libraries' own objects live as long as the test process. Freezing them after import
# keeps every gc.collect() from scanning them again: Flower's Bulyan and Krum call it on each
# aggregation, which in the full suite's heap took 15 s per bit-identity test.
import flwr.serverapp.strategy  # noqa: E402, F401
import torch  # noqa: E402
import transformers  # noqa: E402, F401

gc.collect()
gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def _task_identity():
    ensure_task_identity()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own flwr-trust cache folder unless it asks for the real one."""
    monkeypatch.setenv("FLWR_TRUST_CACHE", str(tmp_path_factory.mktemp("flwr-trust-cache")))


@pytest.fixture
def tiny():
    """A fresh tiny model and tokenizer (not the process-wide cached one)."""
    from flwr_trust.models.loader import LoadedModel
    from flwr_trust.models.tiny import build_tiny_model, build_tiny_tokenizer

    return LoadedModel(build_tiny_model(seed=1), build_tiny_tokenizer(), "tiny")


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models gain nothing from threads, and on a busy
    2-core machine OpenMP oversubscription makes them much slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A flwr-trust cache with the tiny aligned adapter built once, for the Flower processes
    of the `flwr run` and deployment tests (each would otherwise build it inside its timed run)."""
    from silent_failures.aligned import ensure_aligned_adapter

    root = tmp_path_factory.mktemp("flwr-trust-cache-shared")
    ensure_aligned_adapter("tiny", cache_dir=root / "aligned", progress=None)
    return root
