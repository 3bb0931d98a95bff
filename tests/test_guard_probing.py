"""TrustGuard with real server probing: tiny LoRA model, reference at round 0, candidate probes,
records written through Flower's own Strategy.start loop."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp.strategy import FedAvg
from peft import LoraConfig

from flwr_trust.models import get_bridge
from flwr_trust.report.audit import read_log, verify_log
from flwr_trust.strategies import TrustGuard
from tests.helpers.guard import FakeGrid, reply

LORA = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])


@pytest.fixture
def initial() -> ArrayRecord:
    return get_bridge("tiny", LORA).to_array_record()


def _client(initial: ArrayRecord):
    def answer(msg, node, rnd):
        arrays = msg.content.array_records["arrays"]
        rng = np.random.default_rng(node * 10 + rnd)
        new = {k: Array((v.numpy() + 0.01 * rng.normal(size=v.shape)).astype(np.float32))
               for k, v in arrays.items()}
        metrics = {"num-examples": 8, "train_loss": 2.0 / rnd}
        if msg.metadata.message_type == "evaluate":
            return reply(msg, None, {"num-examples": 8, "eval_loss": 1.0})
        out = reply(msg, None, metrics)
        out.content["arrays"] = ArrayRecord(new)
        return out
    return answer


def test_start_probes_reference_and_candidates_and_records(tmp_path, initial):
    guard = TrustGuard(FedAvg(), gate="rollback", model="tiny", peft_config=LORA,
                       modes=("alignment", "capability"), server_probe_items=8,
                       run_dir=tmp_path / "run", tensorboard=True, precision="fp32")
    result = guard.start(FakeGrid(4, _client(initial)), initial, num_rounds=2,
                         train_config=ConfigRecord(), evaluate_config=ConfigRecord())
    assert guard.reference is not None
    assert set(guard.reference.metrics) == {"alignment", "capability"}
    for rnd in (1, 2):
        metrics: MetricRecord = result.train_metrics_clientapp[rnd]
        assert "trust.alignment.refusal-rate" in metrics
        assert metrics["trust.replies-valid"] == 4
    log = tmp_path / "run" / "audit.jsonl"
    assert verify_log(log).ok
    kinds = [r["kind"] for r in read_log(log)]
    assert kinds[:2] == ["run-start", "reference"] and kinds[-1] == "run-end"
    assert kinds.count("round") == 4  # train + evaluate, two rounds
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    train_rounds = [r["payload"] for r in read_log(log, kinds="round")
                    if r["payload"]["phase"] == "train"]
    assert all("alignment" in r["behavior"] for r in train_rounds)
    assert all(r["system"]["loss"] > 0 for r in train_rounds)


def test_trust_config_keys_reach_clients(tmp_path, initial):
    seen = []

    def client(msg, node, rnd):
        seen.append(dict(msg.content.config_records["config"]))
        return _client(initial)(msg, node, rnd)

    guard = TrustGuard(FedAvg(), model=None, run_dir=tmp_path / "run", tensorboard=False,
                       client_probe_budget=25)
    guard.start(FakeGrid(3, client), initial, num_rounds=1)
    assert seen and all(c["trust.suite-hash"] == guard.client_suite_hash for c in seen)
    assert all(c["trust.probe-budget"] == 25 and c["trust.round"] == 1 for c in seen)
