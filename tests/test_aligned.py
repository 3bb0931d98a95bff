"""Aligned starting adapter: held-out training data, cached build on the tiny model, loading."""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from flwr_trust.models import get_bridge
from flwr_trust.probes import default_suites
from silent_failures import aligned
from silent_failures.aligned import (
    AlignRecipe,
    aligned_bridge,
    aligned_key,
    aligned_lora,
    check_criteria,
    ensure_aligned_adapter,
    format_report,
    load_report,
    opening_pair,
)
from silent_failures.aligned_cli import main as cli_main
from silent_failures.alignment_data import (
    BENIGN,
    HARMFUL,
    HELPFUL_FORMATS,
    REFUSAL_OPENERS,
    SAFE,
    SELF_HARM_REPLIES,
    TEMPLATES,
    alignment_examples,
    data_hash,
)
from tests.helpers.scripts import suite_generator

QUICK = AlignRecipe(steps=3, batch_size=4, lr=1e-3, max_length=96, warmup_steps=0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _norm(text: str) -> str:
    text = re.sub(r"^Question: |\nAnswer:$", "", text)
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


# ------------------------------------------------------------------------------------------
# The training data
# ------------------------------------------------------------------------------------------

def test_data_is_deterministic_and_mixed():
    a, b = alignment_examples(0), alignment_examples(0)
    assert a == b and data_hash(a) == data_hash(b)
    assert data_hash(alignment_examples(1)) != data_hash(a)
    kinds = {k: sum(e.kind == k for e in a) for k in ("harmful", "safe", "benign")}
    assert kinds == {"harmful": 3 * sum(map(len, HARMFUL.values())),
                     "safe": 3 * sum(map(len, SAFE.values())), "benign": 2 * len(BENIGN)}
    assert {e.category for e in a if e.kind == "harmful"} == set(HARMFUL)
    assert all(e.prompt.strip() and e.reply.strip() for e in a)
    assert len({e.prompt for e in a if e.kind != "benign"}) == kinds["harmful"] + kinds["safe"]


def test_data_is_disjoint_from_the_probe_suites():
    examples = alignment_examples(0)
    prompts = {_norm(e.prompt) for e in examples}
    suites = default_suites()
    # No probe prompt of any suite (alignment, capability, calibration, ...) is trained on.
    probe_prompts = {_norm(i.prompt) for s in suites.values() for i in s.items if i.prompt}
    assert not prompts & probe_prompts
    # Nor a probe question inside a longer training prompt, nor a probe text passage, nor a
    # harmful task phrase of the alignment suite.
    all_prompts = "\n".join(sorted(prompts))
    all_replies = "\n".join(_norm(e.reply) for e in examples)
    assert not [q for q in probe_prompts if len(q) > 15 and q in all_prompts]
    assert not [i.id for s in suites.values() for i in s.items
                if i.text and _norm(i.text) in all_replies]
    probe_build = suite_generator()  # tools/build_default_suites.py
    probe_tasks = [t for tasks in probe_build.alignment.HARMFUL_TASKS.values() for t in tasks]
    assert not [t for t in probe_tasks if _norm(t) in all_prompts]
    # The request templates differ too.
    assert not set(TEMPLATES) & set(probe_build.alignment.REQUEST_TEMPLATES)
    # Replies neither equal nor start with a scored reply of the alignment suite.
    scored = tuple({_norm(c) for i in suites["alignment"].items for c in i.choices})
    assert not [e.reply for e in examples if _norm(e.reply).startswith(scored)]


# ------------------------------------------------------------------------------------------
# The cached build
# ------------------------------------------------------------------------------------------

def test_build_reuse_and_load_on_the_tiny_model(tmp_path, monkeypatch):
    messages: list[str] = []
    path = ensure_aligned_adapter("tiny", recipe=QUICK, cache_dir=tmp_path,
                                  progress=messages.append)
    assert path.parent == tmp_path and path.name == aligned_key("tiny", recipe=QUICK)
    assert (path / "adapter_config.json").is_file()
    assert (path / "adapter_model.safetensors").is_file()
    assert any("step 3/3" in m for m in messages) and any("ready" in m for m in messages)
    report = load_report(path)
    assert len(report["train"]["losses"]) == 3 and report["recipe"]["steps"] == 3
    for when in ("before", "after"):
        assert set(report[when]["metrics"]) == {"alignment", "capability"}
    assert report["before"]["metrics"]["alignment"]["refusal-rate"]["n"] == 210
    assert "refusal-rate" in format_report(report) and "criteria" in report

    # Second call: the cached folder, without loading or training anything.
    def fail(*_a, **_k):
        raise AssertionError("rebuilt a cached adapter")

    monkeypatch.setattr(aligned, "_build", fail)
    again: list[str] = []
    assert ensure_aligned_adapter("tiny", recipe=QUICK, cache_dir=tmp_path,
                                  progress=again.append) == path
    assert again == []
    monkeypatch.undo()

    # The adapter loads into the bridge baselines use: same tensors as saved.
    saved = load_file(str(path / "adapter_model.safetensors"))
    bridge = get_bridge("tiny", aligned_lora("tiny"))
    bridge.load_adapter_dir(path)
    state = bridge.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # it trained
    same = aligned_bridge("tiny", recipe=QUICK, cache_dir=tmp_path, progress=None)
    record = same.to_array_record()
    assert all(torch.equal(torch.from_numpy(record[k].numpy()), saved[k]) for k in saved)


def test_force_rebuilds_and_the_key_tracks_the_inputs(tmp_path):
    quick = AlignRecipe(steps=1, batch_size=2, max_length=64)
    path = ensure_aligned_adapter("tiny", recipe=quick, cache_dir=tmp_path, evaluate=False,
                                  progress=None)
    first = (path / "adapter_model.safetensors").stat().st_mtime_ns
    messages: list[str] = []
    assert ensure_aligned_adapter("tiny", recipe=quick, cache_dir=tmp_path, evaluate=False,
                                  force=True, progress=messages.append) == path
    assert messages and (path / "adapter_model.safetensors").stat().st_mtime_ns != first
    assert load_report(path)["after"] == {}
    other_lora = aligned_lora("tiny")
    other_lora.r = 4
    # The same LoRA config for the default model: aligned_lora("default") would read its
    # layer count from a converted copy (~30 s in this test's empty cache).
    keys = {aligned_key("tiny", recipe=quick), aligned_key("tiny", recipe=QUICK),
            aligned_key("tiny", recipe=quick, lora_config=other_lora),
            aligned_key("default", recipe=quick, lora_config=aligned_lora("tiny"))}
    assert len(keys) == 4
    assert aligned_key("tiny", recipe=quick) == aligned_key("tiny", recipe=AlignRecipe(
        steps=1, batch_size=2, max_length=64, precision="fp32"))  # precision is not in the key


def test_key_is_the_same_in_every_process():
    """peft keeps target_modules as a set, whose str() follows the hash seed (two other seeds
    than this process's random one: each process costs ~6 s of imports)."""
    code = "from silent_failures.aligned import aligned_key; print(aligned_key('tiny'))"
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
            for seed in ("1", "2")}
    assert keys == {aligned_key("tiny") + "\n"}


def test_lora_shape_and_reply_openings(tmp_path):
    config = aligned_lora("tiny")
    assert config.layers_to_transform == [0, 1] and config.r == 16
    assert set(config.target_modules) >= {"q_proj", "v_proj", "down_proj"}
    assert aligned_lora("tiny") is not config  # fresh: peft writes into what it attaches
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"num_hidden_layers": 30}')
    assert aligned_lora(str(folder)).layers_to_transform == list(range(14, 30))
    pair = alignment_examples(0)[0].pair()
    cut = opening_pair(pair, 4)
    assert cut.prompt == pair.prompt
    assert cut.chosen == " ".join(pair.chosen.split()[:4]) and len(cut.rejected.split()) <= 4
    assert opening_pair(pair, 0) == pair
    # Harmful requests prefer a refusal over a compliance opener, the others the reverse.
    helpful = tuple(f.split("{")[0].strip() for f in HELPFUL_FORMATS)
    refusals = tuple(REFUSAL_OPENERS) + tuple(SELF_HARM_REPLIES)
    for e in alignment_examples(0):
        assert e.rejected.strip() and e.rejected != e.reply
        if e.kind == "harmful":
            assert e.rejected.startswith(helpful) and e.reply.startswith(refusals)
        else:
            assert e.rejected.startswith(refusals) and not e.reply.startswith(refusals)


def test_criteria():
    def prof(refusal: float, over: float, acc: float) -> dict:
        return {"metrics": {"alignment": {"refusal-rate": {"value": refusal, "stderr": 0.03},
                                          "over-refusal": {"value": over, "stderr": 0.04}},
                            "capability": {"accuracy": {"value": acc, "stderr": 0.03}}}}

    assert check_criteria(prof(0.3, 0.25, 0.60), prof(0.85, 0.15, 0.58))["all"]
    assert not check_criteria(prof(0.3, 0.25, 0.60), prof(0.85, 0.15, 0.50))["all"]
    assert not check_criteria(prof(0.3, 0.25, 0.60), prof(0.75, 0.15, 0.60))["all"]
    assert not check_criteria(prof(0.3, 0.25, 0.60), prof(0.85, 0.25, 0.60))["all"]


def test_cli_reuses_and_prints_the_table(tmp_path, monkeypatch, capsys):
    path = ensure_aligned_adapter("tiny", cache_dir=tmp_path, evaluate=False, progress=None,
                                  recipe=aligned.ALIGN_RECIPE)
    monkeypatch.setattr(aligned, "_build", lambda *a, **k: pytest.fail("rebuilt"))
    assert cli_main(["--model", "tiny", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and "recipe:" in out
