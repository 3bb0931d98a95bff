"""TrustGuard's start: model and LoRA shape from the initial arrays and FlowerTune's keys,
errors that name the key to set (before any model loads), and what the start logs."""

from __future__ import annotations

import logging

import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.run import Run
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

from flwr_trust.errors import TrustError
from flwr_trust.models import loader
from flwr_trust.models.shapes import adapter_shape
from flwr_trust.models.tiny import build_tiny_model
from flwr_trust.strategies import TrustGuard, strategy_from_config
from flwr_trust.strategies.startup import resolve_server_model, shapes_of
from tests.helpers.guard import FakeGrid, reply

FLOWERTUNE = {"model.name": "tiny", "model.lora.peft-lora-r": 4,
              "model.lora.peft-lora-alpha": 8}


def lora_arrays(r: int = 4, targets: tuple[str, ...] = ("q_proj", "v_proj"), **kw
                ) -> ArrayRecord:
    """What a FlowerTune app sends: get_peft_model_state_dict of its LoRA model."""
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), **kw)
    return ArrayRecord(get_peft_model_state_dict(get_peft_model(build_tiny_model(), config)))


@pytest.fixture(scope="module")
def arrays() -> ArrayRecord:
    return lora_arrays()


def resolve(cfg, arrays, model="auto", peft_config=None, from_config=True):
    return resolve_server_model(model, peft_config, cfg, shapes_of(arrays),
                                from_config=from_config)


def test_lora_shape_is_read_from_array_names_and_shapes(arrays):
    shape = adapter_shape(shapes_of(arrays))
    assert (shape.kind, shape.rank, shape.target_modules) == ("lora", 4, ("q_proj", "v_proj"))
    assert adapter_shape(shapes_of(lora_arrays(2, ("k_proj",)))).target_modules == ("k_proj",)
    full = ArrayRecord(build_tiny_model().state_dict())
    assert adapter_shape(shapes_of(full)).kind == "full"
    assert adapter_shape(shapes_of(lora_arrays(use_dora=True))).kind == "other"


def test_flowertune_keys_and_arrays_give_the_server_model(arrays):
    out = resolve(FLOWERTUNE, arrays)
    assert out.spec == "tiny"
    assert (out.peft_config.r, out.peft_config.lora_alpha) == (4, 8)
    assert set(out.peft_config.target_modules) == {"q_proj", "v_proj"}
    text = " | ".join(out.notes)
    assert "from model.name" in text and "from model.lora.peft-lora-alpha" in text
    assert "read from the initial arrays" in text and "8 arrays checked" in text
    # trust.* keys win over FlowerTune's; the rank may be left out (the arrays give it)
    out = resolve({"model.name": "nope/not-here", "trust.model": "tiny",
                   "trust.lora.alpha": 16}, arrays)
    assert out.spec == "tiny" and out.peft_config.lora_alpha == 16


def test_full_state_dicts_need_no_adapter_config():
    full = ArrayRecord(build_tiny_model().state_dict())
    out = resolve({"trust.model": "tiny"}, full)
    assert out.spec == "tiny" and out.peft_config is None
    with pytest.raises(TrustError, match=r"model.lora.peft-lora-r = 4 says the arrays are a "
                                         r"LoRA adapter.*Remove model.lora.peft-lora-r"):
        resolve(FLOWERTUNE, full)


@pytest.mark.parametrize("cfg, match", [
    ({"model.name": "tiny", "model.lora.peft-lora-r": 4},
     r"alpha cannot be read from arrays.*Set model.lora.peft-lora-alpha \(or trust.lora.alpha"),
    (FLOWERTUNE | {"model.lora.peft-lora-r": 8},
     r"model.lora.peft-lora-r = 8, but the initial arrays have LoRA rank 4.*Set "
     r"model.lora.peft-lora-r = 4"),
    (FLOWERTUNE | {"trust.lora.target-modules": "q_proj"},
     r"trust.lora.target-modules = 'q_proj', but the initial arrays adapt 'q_proj,v_proj'"),
    (FLOWERTUNE | {"model.lora.peft-lora-alpha": "lots"},
     r"model.lora.peft-lora-alpha = 'lots' is not an integer"),
    (FLOWERTUNE | {"model.name": "someone/Some-7B"},
     r"model.name = 'someone/Some-7B' is neither a local model folder nor a model in the "
     r"Hugging Face cache.*Set trust.model to a local folder"),
    (FLOWERTUNE | {"trust.model": "/no/such/model"},
     r"trust.model = '/no/such/model' is neither a local model folder.*Set trust.model"),
])
def test_what_cannot_be_resolved_names_the_key_to_set(arrays, cfg, match):
    with pytest.raises(TrustError, match=match):
        resolve(cfg, arrays)


def test_arrays_of_another_model_name_the_model_key(arrays, tmp_path):
    other = tmp_path / "other-model"
    build_tiny_model(hidden=32).save_pretrained(other)  # another width, same layer names
    with pytest.raises(TrustError, match=r"do not fit the server's model \(model '.*other-model"
                                         r"' from trust.model.*8 with wrong shape.*Set "
                                         r"trust.model to the base model the app trains"):
        resolve(FLOWERTUNE | {"trust.model": str(other)}, arrays)
    with pytest.raises(TrustError, match=r"Set TrustGuard\(model=...\) to the base model"):
        resolve({"trust.lora.alpha": 8}, arrays, model=str(other), from_config=False)


def test_adapters_whose_config_the_arrays_lack_ask_for_peft_config(arrays):
    for odd in (lora_arrays(use_dora=True), lora_arrays(rank_pattern={"q_proj": 2})):
        with pytest.raises(TrustError, match=r"cannot be read from the arrays.*peft_config="):
            resolve(FLOWERTUNE, odd)
    given = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    assert resolve({"trust.model": "tiny"}, arrays, peft_config=given).peft_config is given
    with pytest.raises(TrustError, match="initial arrays are empty.*\"none\""):
        resolve(FLOWERTUNE, ArrayRecord())
    assert resolve(FLOWERTUNE, arrays, model=None).spec is None


def test_start_fails_before_any_model_loads(arrays, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(loader, "_load", no_loading)
    guard = strategy_from_config({"model.name": "tiny", "trust.run-dir": str(tmp_path / "r"),
                                  "trust.tensorboard": False})
    with pytest.raises(TrustError, match="model.lora.peft-lora-alpha"):
        guard.start(FakeGrid(2), arrays, num_rounds=1)
    assert not (tmp_path / "r").exists()


def _client(msg, node, rnd):
    if msg.metadata.message_type == "evaluate":
        return reply(msg, None, {"num-examples": 4, "eval_loss": 1.0})
    out = reply(msg, None, {"num-examples": 4, "train_loss": 1.0})
    out.content["arrays"] = msg.content.array_records["arrays"]
    return out


def test_code_built_guard_reads_the_run_config_flower_serves(arrays, tmp_path, monkeypatch,
                                                             caplog):
    """TrustGuard(FedAvg()) with no model keywords: the run config comes from Flower's own
    get_fused_config(grid.run) (the installed app's pyproject.toml plus the run's overrides),
    as in a `flwr run`; the start logs what it resolved, the probe sizes and the run folder
    under Flower's logger, and evaluate rounds carry the gate counters."""
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))
    fab_hash = "0123456789abcdef" * 4
    app = tmp_path / "home" / "apps" / f"someone.ftapp.1.0.0.{fab_hash[:8]}"
    app.mkdir(parents=True)
    (app / "pyproject.toml").write_text(
        '[project]\nname = "ftapp"\nversion = "1.0.0"\n[tool.flwr.app]\npublisher = '
        '"someone"\n[tool.flwr.app.components]\nserverapp = "a:b"\nclientapp = "a:c"\n'
        '[tool.flwr.app.config]\nmodel.name = "nope/not-here"\nmodel.lora.peft-lora-r = 4\n'
        'model.lora.peft-lora-alpha = 8\n')
    run = Run.create_empty(1)
    run.fab_id, run.fab_version, run.fab_hash = "someone/ftapp", "1.0.0", fab_hash
    run.override_config = {"model.name": "tiny"}
    grid = FakeGrid(2, _client)
    grid.run = run
    guard = TrustGuard(FedAvg(), gate="quarantine", modes=("capability",), server_probe_items=4,
                       run_dir=tmp_path / "run", tensorboard=False)
    caplog.set_level(logging.INFO, logger="flwr")
    result = guard.start(grid, arrays, num_rounds=1, train_config=ConfigRecord(),
                         evaluate_config=ConfigRecord())
    assert guard.model_spec == "tiny" and guard.peft_config.lora_alpha == 8
    lines = [r.getMessage() for r in caplog.records if r.name == "flwr.trust"]
    text = "\n".join(lines)
    assert "model 'tiny' from model.name" in text and "alpha 8" in text
    assert "probe items per mode: server capability 4, each client 32" in text
    assert f"run folder {tmp_path / 'run'}" in text and "run completed" in text
    assert logging.getLogger("flwr.trust").parent is logging.getLogger("flwr")
    evaluate = result.evaluate_metrics_clientapp[1]
    assert evaluate["trust.gate-action"] == 0 and evaluate["trust.excluded"] == 0
    assert result.train_metrics_clientapp[1]["trust.gate-action"] == 0


def test_strategy_from_config_import_path_and_lora_keys(arrays, tmp_path):
    """The documented import path; a LoRA config is resolved at the start, not at build."""
    from flwr_trust.strategies import strategy_from_config as documented

    guard = documented(FLOWERTUNE | {"trust.run-dir": str(tmp_path / "r"),
                                     "trust.tensorboard": False})
    assert guard.peft_config is None  # not yet: nothing is known before the arrays are
    guard.startup(arrays, FakeGrid(1))
    assert guard.peft_config.r == 4 and guard.model_spec == "tiny"
