"""flowertune-app: the LoRA model, its training steps and the learning-rate schedule.

As in FlowerTune's template: the base model from `model.name` (4- or 8-bit with bitsandbytes
when `model.quantization` says so, on a GPU), a peft LoRA adapter of rank
`model.lora.peft-lora-r` and alpha `model.lora.peft-lora-alpha`, and cosine annealing of the
learning rate over the rounds. The model is built once per process and reused across rounds.

This example runs offline, so `model.name` may also be one of two stand-ins for a hub name:
`default`, the SmolLM2-135M-Instruct checkpoint embedded in flwr-trust's install, and `tiny`, a
tiny random Llama for tests. Any other value is passed to `from_pretrained` unchanged.
"""

from __future__ import annotations

import math
from functools import cache
from types import SimpleNamespace

import torch
from peft import LoraConfig, get_peft_model
from peft.utils import prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig


def cosine_annealing(current_round: int, total_round: int, lrate_max: float = 0.001,
                     lrate_min: float = 0.0) -> float:
    """Cosine annealing of the learning rate over the rounds."""
    cos_inner = math.pi * current_round / total_round
    return lrate_min + 0.5 * (lrate_max - lrate_min) * (1 + math.cos(cos_inner))


def get_model(model_cfg: SimpleNamespace):
    """The LoRA model for `model.*` (built once per process; later calls return it)."""
    return _model(model_cfg.name, int(model_cfg.quantization),
                  bool(model_cfg.gradient_checkpointing), int(model_cfg.lora.peft_lora_r),
                  int(model_cfg.lora.peft_lora_alpha))


def get_tokenizer(model_name: str):
    """The model's tokenizer, padding with its end-of-sequence token."""
    if model_name == "tiny":
        from flwr_trust.models.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(_folder(model_name), use_fast=True,
                                              padding_side="right")
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@cache
def _model(name: str, quantization: int, gradient_checkpointing: bool, r: int, alpha: int):
    if quantization not in (0, 4, 8):
        raise ValueError(f"Use 4-bit or 8-bit quantization, or 0 for none. You passed: "
                         f"{quantization}")
    if name == "tiny":
        from flwr_trust.models.tiny import build_tiny_model

        model = build_tiny_model()
    else:
        quantization_config = (BitsAndBytesConfig(load_in_4bit=True) if quantization == 4 else
                               BitsAndBytesConfig(load_in_8bit=True) if quantization == 8
                               else None)
        model = AutoModelForCausalLM.from_pretrained(
            _folder(name), quantization_config=quantization_config,
            dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32,
            low_cpu_mem_usage=True)
        if quantization:
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=gradient_checkpointing)
    if gradient_checkpointing:
        model.config.use_cache = False
    peft_config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.075, task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config)


def _folder(name: str) -> str:
    """`default` -> the embedded SmolLM2 checkpoint's folder; any other name unchanged."""
    if name != "default":
        return name
    from flwr_trust.models.default_model import ensure_default_model

    return str(ensure_default_model())


def train_steps(model, tokenizer, texts: list[str], *, max_steps: int, batch_size: int,
                seq_length: int, learning_rate: float) -> float:
    """`max_steps` causal-LM steps on batches of `batch_size` texts; the mean loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    device = next(model.parameters()).device
    model.train()
    losses = []
    for step in range(max_steps):
        batch = [texts[(step * batch_size + j) % len(texts)] for j in range(batch_size)]
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                        max_length=seq_length).to(device)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return sum(losses) / max(len(losses), 1)
