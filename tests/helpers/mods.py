"""Shared helpers for the trust_mod tests: small suites, a tiny LoRA app, Flower messages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from flwr.app import (
    DEFAULT_TTL,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from peft import LoraConfig

from flwr_trust.config.client import parse_trust_config
from flwr_trust.models import get_bridge
from flwr_trust.probes.suite import ProbeItem, ProbeSuite, combined_hash

LORA = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
TINY_DEFAULTS = {"trust.model": "tiny", "trust.lora.r": 4, "trust.lora.alpha": 8,
                 "trust.lora.target-modules": "q_proj,v_proj", "trust.precision": "fp32"}


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread while a test runs: these tests score many tiny batches, which one
    thread does faster on a busy 2-core machine (no contention); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_suites() -> dict[str, ProbeSuite]:
    """One small suite per mode (a few items each), valid for every scorer."""
    def mc(prefix: str, n: int, groups: tuple[str, ...], k: int = 3, **kw: Any
           ) -> tuple[ProbeItem, ...]:
        return tuple(ProbeItem(id=f"{prefix}-{i}", group=groups[i % len(groups)],
                               prompt=f"Question {i}: pick one.",
                               choices=tuple(f" option {c}{i}" for c in "abcd"[:k]),
                               answer=i % k, **kw) for i in range(n))

    bias = tuple(ProbeItem(id=f"b-{i}", group=("gender", "age")[i % 2],
                           choices=(f"The nurse {i} said he was tired.",
                                    f"The nurse {i} said she was tired."), answer=i % 2)
                 for i in range(8))
    alignment = tuple(ProbeItem(id=f"a-{i}", group=("weapons", "fraud")[i % 2],
                                prompt=f"Request number {i}", chat=True,
                                choices=("I can't help with that.", "Sure, here is how."),
                                answer=0, label="harmful" if i < 6 else "safe")
                      for i in range(9))
    capability = mc("c", 6, ("arithmetic", "capitals"), 4) + tuple(
        ProbeItem(id=f"t-{i}", group="text", text=f"Plain text passage number {i} about cats.")
        for i in range(3))
    calibration = mc("k", 6, ("answerable",), 4) + tuple(
        ProbeItem(id=f"u-{i}", group="unanswerable", prompt=f"What am I thinking {i}?",
                  choices=(" a", " b", " c", " d"), answer=None, label="unanswerable")
        for i in range(2))
    memorization = tuple(ProbeItem(id=f"m-{i}", group="access-code",
                                   prompt=f"The access code for record {i} is",
                                   choices=tuple(f" {1000 * i + 7 * j:06d}" for j in range(8)),
                                   answer=(3 * i) % 8) for i in range(4))
    made = {"bias": bias, "fairness": mc("f", 8, ("man", "woman")), "alignment": alignment,
            "capability": capability, "calibration": calibration, "memorization": memorization}
    return {mode: ProbeSuite(mode, f"test-{mode}", "1.0.0", items)
            for mode, items in made.items()}


SUITES = small_suites()
SUITE_HASH = combined_hash({m: s.hash for m, s in SUITES.items()})


def tiny_bridge():
    return get_bridge("tiny", LORA)


def lora_arrays(seed: int) -> ArrayRecord:
    """Random LoRA weights for the tiny model (a stand-in for a global model)."""
    bridge = tiny_bridge()
    gen = torch.Generator().manual_seed(seed)
    return ArrayRecord({k: torch.randn(v.shape, generator=gen) * 0.05
                        for k, v in bridge.state_dict().items()})


def context(run_config: Mapping[str, Any] | None = None,
            node_config: Mapping[str, Any] | None = None, node_id: int = 1) -> Context:
    return Context(run_id=1, node_id=node_id, node_config=dict(node_config or {}),
                   state=RecordDict(), run_config=dict(run_config or {}))


def message(kind: str = "train", arrays: ArrayRecord | None = None, round: int = 1,
            extra_config: Mapping[str, Any] | None = None, suite_hash: str | None = SUITE_HASH
            ) -> Message:
    """An instruction message as a Flower strategy builds it (arrays + config records)."""
    config: dict[str, Any] = {"server-round": round}
    if suite_hash is not None:
        config["trust.suite-hash"] = suite_hash
    config.update(extra_config or {})
    content = RecordDict({"arrays": arrays if arrays is not None else lora_arrays(0),
                          "config": ConfigRecord(config)})
    meta = Metadata(run_id=1, message_id=f"msg-{kind}-{round}", src_node_id=0, dst_node_id=1,
                    reply_to_message_id="", group_id=str(round), created_at=time.time(),
                    ttl=DEFAULT_TTL, message_type=kind)
    return Message(content=content, metadata=meta)


def echo_train(steps: int = 0, metrics: bool = True) -> Callable[[Message, Context], Message]:
    """A train function: load the arrays, nudge the LoRA weights, reply arrays + metrics."""
    def fn(msg: Message, ctx: Context) -> Message:
        arrays = msg.content["arrays"]
        state = {k: torch.as_tensor(arrays[k].numpy()).clone() for k in arrays}
        for k in state:
            state[k] += 0.01 * steps
        content = RecordDict({"arrays": ArrayRecord(state)})
        if metrics:
            content["metrics"] = MetricRecord({"train_loss": 1.0, "num-examples": 4})
        return Message(content, reply_to=msg)
    return fn


def metrics_of(reply: Message) -> dict[str, Any]:
    assert not reply.has_error(), reply.error.reason
    records = list(reply.content.metric_records.values())
    assert len(records) == 1
    return dict(records[0])


def evaluate_app(msg, ctx):
    return Message(RecordDict({"metrics": MetricRecord({"eval_loss": 2.0, "num-examples": 8})}),
                   reply_to=msg)


def mod_bridge():
    return get_bridge("tiny", parse_trust_config(TINY_DEFAULTS).lora_config())


def loaded_model(arrays):
    bridge = mod_bridge()
    bridge.load_arrays(arrays)
    return bridge.model, bridge.tokenizer
