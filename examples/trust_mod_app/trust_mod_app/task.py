"""Model, local data and training of a FlowerTune-style LoRA app (nothing here knows flwr-trust).

The model is a Hugging Face causal LM wrapped with a peft LoRA adapter, built once per process;
``model.name = "tiny"`` builds flwr-trust's tiny random Llama in code (offline, fast), any other
value is a local model folder. Each client's local data is a few short texts of its own.
"""

from __future__ import annotations

import random
from functools import cache

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

TOPICS = ("gardening", "sailing", "baking", "chess", "astronomy", "cycling")
STYLES = {"formal": "It is noted that {t} requires patience and care, item {i}.",
          "casual": "honestly {t} is super fun lol, number {i}!"}


@cache
def get_model(name: str, lora_r: int, lora_alpha: int):
    """(peft model, tokenizer), built once per process like FlowerTune's get_model."""
    if name == "tiny":
        from flwr_trust.models.tiny import build_tiny_model, build_tiny_tokenizer

        base, tokenizer = build_tiny_model(), build_tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(name)
        base = AutoModelForCausalLM.from_pretrained(name)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
    config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.05, task_type="CAUSAL_LM")
    return get_peft_model(base, config), tokenizer


def local_texts(partition_id: int, n_train: int = 16, n_heldout: int = 8
                ) -> tuple[list[str], list[str], list[str]]:
    """(train texts, held-out texts, held-out style labels) of one client."""
    rng = random.Random(partition_id)
    topic = TOPICS[partition_id % len(TOPICS)]

    def make(i: int) -> tuple[str, str]:
        style = rng.choice(sorted(STYLES))
        return STYLES[style].format(t=topic, i=i), style

    train = [make(i)[0] for i in range(n_train)]
    held = [make(100 + i) for i in range(n_heldout)]
    return train, [t for t, _ in held], [s for _, s in held]


def train_steps(model, tokenizer, texts: list[str], steps: int, lr: float) -> float:
    """A few causal-LM steps on batches of 4 texts; returns the mean training loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        batch = [texts[(step * 4 + j) % len(texts)] for j in range(4)]
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=64)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return sum(losses) / max(len(losses), 1)


@torch.no_grad()
def eval_loss(model, tokenizer, texts: list[str]) -> float:
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=64)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return float(model(**enc, labels=labels).loss)
