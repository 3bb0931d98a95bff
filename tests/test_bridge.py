"""Model bridge: ArrayRecord <-> model round trips, in-place adapter swaps, and bad arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord
from peft import IA3Config, LoraConfig

from flwr_trust.errors import ArraysMismatchError, ModelLoadError
from flwr_trust.models import ModelBridge, get_bridge, load_base_model
from flwr_trust.models.tiny import build_tiny_model

LORA = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])


def _randomize(bridge: ModelBridge, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in bridge.model.named_parameters():
            if bridge.kind == "full" or "lora_" in name or "ia3_" in name:
                p.copy_(torch.randn(p.shape, generator=gen))


def _same(a: ArrayRecord, b: ArrayRecord) -> bool:
    return list(a.keys()) == list(b.keys()) and all(
        np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_full_round_trip_is_exact(tiny):
    src = ModelBridge(tiny)
    _randomize(src, 0)
    record = src.to_array_record()
    dst = ModelBridge(type(tiny)(build_tiny_model(seed=7), tiny.tokenizer, "tiny"))
    assert not _same(record, dst.to_array_record())
    dst.load_arrays(record)
    assert _same(record, dst.to_array_record())
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(src.model(ids).logits, dst.model(ids).logits)


@pytest.mark.parametrize("config", [LORA, IA3Config(target_modules=["k_proj", "down_proj"],
                                                    feedforward_modules=["down_proj"])])
def test_adapter_round_trip_is_exact_and_in_place(tiny, config):
    bridge = ModelBridge(tiny, config)
    base_weight = bridge.model.get_base_model().model.embed_tokens.weight
    _randomize(bridge, 1)
    record = bridge.to_array_record()
    assert all("lora_" in k or "ia3_" in k for k in record)
    _randomize(bridge, 2)
    bridge.load_arrays(record)
    assert _same(record, bridge.to_array_record())
    # The base was not replaced: same tensor object, adapter swapped in place.
    assert bridge.model.get_base_model().model.embed_tokens.weight is base_weight


def test_get_bridge_reuses_one_base_per_process():
    a = get_bridge("tiny", LORA)
    b = get_bridge("tiny", LORA)
    assert a is b
    other = get_bridge("tiny", LoraConfig(r=2, target_modules=["q_proj"]))
    assert other.model is a.model  # second LoRA config joins the same PeftModel
    assert len(other.to_array_record()) == 4 and len(a.to_array_record()) == 8
    assert load_base_model("tiny", slot="full") is load_base_model("tiny", slot="full")


def test_adapter_dir_round_trip(tiny, tmp_path):
    bridge = ModelBridge(tiny, LORA)
    _randomize(bridge, 3)
    bridge.model.save_pretrained(tmp_path / "adapter", selected_adapters=[bridge.adapter_name])
    saved = bridge.to_array_record()
    folder = tmp_path / "adapter" / bridge.adapter_name
    _randomize(bridge, 4)
    bridge.load_adapter_dir(folder if folder.is_dir() else tmp_path / "adapter")
    assert _same(saved, bridge.to_array_record())


def test_wrong_keys_shapes_and_nan_are_named(tiny):
    bridge = ModelBridge(tiny, LORA)
    _randomize(bridge, 5)
    good = {k: v.clone() for k, v in bridge.state_dict().items()}
    key = next(iter(good))
    with pytest.raises(ArraysMismatchError, match="missing"):
        bridge.load_arrays({k: v for k, v in good.items() if k != key})
    with pytest.raises(ArraysMismatchError, match="unexpected"):
        bridge.load_arrays({**good, "bogus.weight": torch.zeros(2)})
    with pytest.raises(ArraysMismatchError, match="wrong shape"):
        bridge.load_arrays({**good, key: torch.zeros(3, 3)})
    bad = dict(good)
    bad[key] = torch.full_like(good[key], float("nan"))
    with pytest.raises(ArraysMismatchError, match="NaN"):
        bridge.load_arrays(bad)
    with pytest.raises(ArraysMismatchError, match="numeric|number type"):
        bridge.load_arrays({**good, key: np.array(["a"] * good[key].numel())})
    with pytest.raises(ArraysMismatchError, match="number type"):
        bridge.load_arrays({**good, key: torch.ones(good[key].shape, dtype=torch.bool)})
    # A failed load leaves the weights untouched.
    assert all(torch.equal(good[k], v) for k, v in bridge.state_dict().items())


def test_full_arrays_into_adapter_bridge_is_a_clear_error(tiny):
    full = ModelBridge(tiny).to_array_record()
    lora = ModelBridge(type(tiny)(build_tiny_model(), tiny.tokenizer, "tiny"), LORA)
    with pytest.raises(ArraysMismatchError, match="same adapter config"):
        lora.load_arrays(full)


def test_unknown_model_and_adapter_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a local folder nor a model in the Hugg"):
        load_base_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_base_model(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="Could not load"):
        load_base_model(tmp_path / "broken")
    with pytest.raises(ArraysMismatchError, match="adapter_config.json"):
        get_bridge("tiny", LORA).load_adapter_dir(tmp_path)


def test_any_local_hf_folder_loads(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_base_model(tmp_path / "m")
    ids = torch.tensor([[5, 6, 7]])
    assert torch.allclose(loaded.model(ids).logits, tiny.model(ids).logits)
