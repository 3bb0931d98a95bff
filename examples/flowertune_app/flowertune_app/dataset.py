"""flowertune-app: local instruction data, Alpaca prompts, and FlowerTune's config helpers.

FlowerTune's template loads a Hugging Face dataset (`dataset.name`) through flwr-datasets and
partitions it IID; this example reads a small instruction file shipped with the app (so it runs
offline) and partitions it the same way: client `partition-id` of `num-partitions` takes every
`num-partitions`-th record.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n### Instruction:\n{instruction}\n### Response: {response}")


def load_data(partition_id: int, num_partitions: int, dataset_name: str) -> list[dict[str, str]]:
    """The records of one IID partition of the instruction file `dataset_name`."""
    lines = (DATA / dataset_name).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return records[partition_id::num_partitions]


def formatting_prompts_func(examples: list[dict[str, str]]) -> list[str]:
    """Standard Alpaca prompts (instruction and response in one training text)."""
    return [PROMPT.format(**example) for example in examples]


def replace_keys(input_dict: dict[str, Any], match: str = "-", target: str = "_"
                 ) -> dict[str, Any]:
    """Recursively replace `match` with `target` in dictionary keys (as FlowerTune does)."""
    return {key.replace(match, target): replace_keys(value, match, target)
            if isinstance(value, dict) else value for key, value in input_dict.items()}


def as_config(tree: dict[str, Any]) -> SimpleNamespace:
    """Attribute access to a nested config (FlowerTune uses omegaconf's DictConfig)."""
    return SimpleNamespace(**{key: as_config(value) if isinstance(value, dict) else value
                              for key, value in tree.items()})
