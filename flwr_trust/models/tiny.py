"""A tiny random-init Llama with a byte-level tokenizer, built in code (no files, no network).

Tests and fast CI baselines use it: it has the same interfaces as a real chat model (chat
template, BOS/EOS, peft LoRA targets) and runs a scoring batch in milliseconds.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def system_chat_template(system: str) -> str:
    """TINY_CHAT_TEMPLATE with a default system turn first when the conversation has none, as
    SmolLM2's and many instruct models' templates do: every chat probe then starts with the same
    system block (what the scorer's shared-prefix cache is for)."""
    if "'" in system or "{" in system or "}" in system:
        raise ValueError("the tiny template's system text cannot contain quotes or braces")
    return ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + system
            + "<|im_end|>\n{% endif %}" + TINY_CHAT_TEMPLATE)


def build_tiny_tokenizer(system: str | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE with no merges: 256 byte tokens plus <|im_start|> and <|im_end|>.

    system: a default system prompt the chat template puts before every conversation."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tok.chat_template = TINY_CHAT_TEMPLATE if system is None else system_chat_template(system)
    return tok


TINY_LAYERS = 2


def tiny_config(*, hidden: int = 64, layers: int = TINY_LAYERS) -> LlamaConfig:
    """The tiny model's architecture (no weights): what `build_tiny_model` builds."""
    tok_size = len(build_tiny_tokenizer())
    return LlamaConfig(
        vocab_size=tok_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tok_size - 2,
        eos_token_id=tok_size - 1,
        pad_token_id=tok_size - 1,
        tie_word_embeddings=False,
    )


def build_tiny_model(seed: int = 0, *, hidden: int = 64,
                     layers: int = TINY_LAYERS) -> LlamaForCausalLM:
    """A random-init Llama sized for tests (about 60k parameters), seeded for reproducibility."""
    config = tiny_config(hidden=hidden, layers=layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return model
