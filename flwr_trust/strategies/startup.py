"""TrustGuard's start: the model the server probes with and how the run's arrays fit it.

Resolved once, before any model is loaded, the first source that says wins:

- model: ``TrustGuard(model=...)`` / ``trust.model``, then FlowerTune's ``model.name``, then
  the embedded default model; a name that is not a folder is looked up in the Hugging Face
  cache (never downloaded);
- adapter: ``TrustGuard(peft_config=...)``; else the initial arrays say whether they are a
  full state dict or a LoRA adapter, and give its rank and target modules; the alpha (which the
  arrays do not carry) comes from ``trust.lora.alpha`` or FlowerTune's
  ``model.lora.peft-lora-alpha``; a rank or target modules set in the config must agree;
- then the arrays' names and shapes are checked against the model built on the meta device.

What cannot be resolved, or contradicts the arrays, is a TrustError naming the config key (or
keyword) to set. `resolve_server_model` is Flower-free; `shapes_of` and `run_config_of` are the
Flower edge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr_trust.config.keys import BY_NAME
from flwr_trust.errors import ModelLoadError, TrustError
from flwr_trust.models.loader import cached_hub_folder
from flwr_trust.models.shapes import AdapterShape, adapter_shape, expected_shapes, fit_problems

AUTO = "auto"  # TrustGuard's model default: resolve it from the run config and the arrays
FLOWERTUNE = {"trust.model": "model.name", "trust.lora.r": "model.lora.peft-lora-r",
              "trust.lora.alpha": "model.lora.peft-lora-alpha"}


@dataclass(frozen=True)
class ServerModel:
    """What the server probes with: `spec` ("tiny", "default", a folder; None = no server
    model), the adapter config (None = full state dicts) and one line per resolved item, saying
    where it came from (logged once at the start of the run)."""

    spec: str | None
    peft_config: Any | None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Naming:
    """How errors name the settings: config keys (strategy_from_config) or keywords (code)."""

    from_config: bool

    def model(self) -> str:
        return "trust.model" if self.from_config else "TrustGuard(model=...)"

    def adapter(self) -> str:
        return ("strategy_from_config(context.run_config, peft_config=<the app's LoraConfig>)"
                if self.from_config else "TrustGuard(..., peft_config=<the app's LoraConfig>)")


def resolve_server_model(model: str | None, peft_config: Any | None,
                         run_config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                         *, from_config: bool) -> ServerModel:
    """The server's model and adapter config for a run starting from arrays of `shapes`."""
    naming = Naming(from_config)
    if model is None or str(model).lower() == "none":
        return ServerModel(None, None, ("no server model (trust.model = \"none\"): client "
                                        "reports only, no reference or candidate probe",))
    spec, spec_note = _model_spec(model, run_config, naming)
    notes = [spec_note]
    if not shapes:
        raise TrustError("The initial arrays are empty: the server has no model to probe.",
                         f"Pass the model's arrays as initial_arrays, or set "
                         f"{naming.model()} to \"none\" (client reports only).")
    shape = adapter_shape(shapes)
    if peft_config is not None:
        notes.append(f"adapter config given in code ({type(peft_config).__name__})")
    else:
        peft_config, note = _adapter_config(shape, run_config, naming, len(shapes))
        notes.append(note)
    try:
        expected = expected_shapes(spec, peft_config)
    except ModelLoadError as exc:
        raise TrustError(f"{spec_note}: {exc.problem}",
                         f"{exc.fix} Or set {naming.model()} to another model.") from exc
    problems = fit_problems(shapes, expected)
    if problems:
        kind = "full state dict" if peft_config is None else "adapter"
        raise TrustError(
            f"The initial arrays do not fit the server's model ({spec_note}; {kind}): "
            + "; ".join(problems) + ".",
            f"Set {naming.model()} to the base model the app trains (a local folder, or a "
            f"name in the Hugging Face cache; FlowerTune's model.name is used when "
            f"trust.model is unset), or to \"none\" for client reports only.")
    notes.append(f"the initial arrays fit it ({len(shapes)} arrays checked)")
    return ServerModel(spec, peft_config, tuple(notes))


def _model_spec(model: str, cfg: Mapping[str, Any], naming: Naming) -> tuple[str, str]:
    """(loadable spec, "model X from <source>")."""
    if model != AUTO:
        key, name = naming.model(), str(model)
    elif cfg.get("trust.model"):
        key, name = "trust.model", str(cfg["trust.model"])
    elif cfg.get("model.name"):
        key, name = "model.name", str(cfg["model.name"])
    else:
        return "default", "model 'default' (the embedded SmolLM2-135M-Instruct: neither " \
                          "trust.model nor FlowerTune's model.name is set)"
    if name.lower() == "none":
        raise TrustError(f"{key} = 'none' cannot be combined with inferring the model.",
                         "Pass model=None to TrustGuard.")
    return _local_spec(name, key, naming), f"model {name!r} from {key}"


def _local_spec(name: str, key: str, naming: Naming) -> str:
    """`name` as the loader takes it: "tiny", "default", a folder, or a Hugging Face name
    found in the local cache (flwr-trust works offline: nothing is downloaded)."""
    if name in ("tiny", "default"):
        return name
    path = Path(name).expanduser()
    if not path.is_dir():
        path = cached_hub_folder(name) or path
    if path.is_dir():
        return str(path.resolve())
    fix_key = naming.model() if key != "model.name" else "trust.model"
    raise TrustError(
        f"{key} = {name!r} is neither a local model folder nor a model in the Hugging Face "
        "cache, and flwr-trust never downloads models.",
        f"Set {fix_key} to a local folder of that model (what save_pretrained() wrote), "
        "\"default\" (the embedded SmolLM2) or \"tiny\", or \"none\" for client reports only.")


def _adapter_config(shape: AdapterShape, cfg: Mapping[str, Any], naming: Naming,
                    n_arrays: int) -> tuple[Any | None, str]:
    """The LoRA config read from the arrays and the config (None for a full state dict)."""
    rank, rank_key = _read(cfg, "trust.lora.r")
    if shape.kind == "full":
        if rank:
            raise TrustError(
                f"{rank_key} = {rank} says the arrays are a LoRA adapter, but the initial "
                f"arrays are a full state dict ({n_arrays} arrays, no lora_A/lora_B).",
                f"Remove {rank_key} (the arrays say what they are), or send the adapter's "
                "arrays (get_peft_model_state_dict).")
        return None, "arrays: a full state dict (read from the initial arrays)"
    if shape.kind == "other" or len(shape.ranks) != 1:
        what = ("ranks " + ", ".join(map(str, shape.ranks)) + " (a rank pattern)"
                if shape.kind == "lora" else "an adapter type other than plain LoRA")
        raise TrustError(f"The initial arrays are a peft adapter with {what}, whose config "
                         "cannot be read from the arrays.", f"Pass {naming.adapter()}.")
    if rank and rank != shape.rank:
        raise TrustError(f"{rank_key} = {rank}, but the initial arrays have LoRA rank "
                         f"{shape.rank}.", f"Set {rank_key} = {shape.rank}, or remove it "
                         "(the rank is read from the arrays).")
    targets = tuple(shape.target_modules)
    if "trust.lora.target-modules" in cfg:
        given = BY_NAME["trust.lora.target-modules"].read(cfg["trust.lora.target-modules"])
        if set(given) != set(targets):
            raise TrustError(f"trust.lora.target-modules = {','.join(given)!r}, but the "
                             f"initial arrays adapt {','.join(targets)!r}.",
                             "Set it to the arrays' modules, or remove it (they are read "
                             "from the arrays).")
    alpha, alpha_key = _read(cfg, "trust.lora.alpha")
    if alpha_key is None:
        raise TrustError(
            f"The initial arrays are a LoRA adapter (rank {shape.rank} on "
            f"{', '.join(targets)}), but its alpha cannot be read from arrays and the run "
            "config sets neither trust.lora.alpha nor FlowerTune's model.lora.peft-lora-alpha.",
            "Set model.lora.peft-lora-alpha (or trust.lora.alpha) in [tool.flwr.app.config] to "
            f"the lora_alpha of the app's LoraConfig, or pass {naming.adapter()}.")
    from peft import LoraConfig

    config = LoraConfig(r=shape.rank, lora_alpha=alpha, target_modules=list(targets),
                        lora_dropout=0.0)
    return config, (f"arrays: a LoRA adapter, rank {shape.rank} on {', '.join(targets)} (read "
                    f"from the initial arrays), alpha {alpha} (from {alpha_key})")


def _read(cfg: Mapping[str, Any], key: str) -> tuple[Any, str | None]:
    """(typed value, the key it came from): the trust.* key, else its FlowerTune twin;
    (None, None) when neither is set. A malformed value is an error naming the key used."""
    for name in (key, FLOWERTUNE.get(key, "")):
        if name and name in cfg:
            return dataclasses.replace(BY_NAME[key], name=name).read(cfg[name]), name
    return None, None


# ---------------------------------------------------------------- the Flower edge
def shapes_of(arrays: Any) -> dict[str, tuple[int, ...]]:
    """name -> shape of an ArrayRecord's arrays (read from their headers, not decoded)."""
    return {str(name): tuple(int(d) for d in array.shape) for name, array in arrays.items()}


def run_config_of(grid: Any) -> dict[str, Any]:
    """The run config of the run `grid` serves, as Flower builds it for the ServerApp's
    Context (the app's [tool.flwr.app.config] with the run's overrides); empty when the grid
    has no installed app behind it (e.g. Flower's in-process run_simulation)."""
    try:
        from flwr.common.config import get_fused_config

        return dict(get_fused_config(grid.run))
    except Exception:  # no run, no app folder: nothing to read, the defaults apply
        return {}


_CLAIMED: set[Path] = set()  # default run folders handed out in this process


def default_run_dir() -> Path:
    """runs/trust-guard-<time>, or with -2, -3, ... when that folder exists or another guard
    of this process took it (two guards built in one second shared one folder, and the
    second found a finished run there, or resumed a crashed one)."""
    import time

    base = Path("runs") / time.strftime("trust-guard-%Y%m%d-%H%M%S")
    path, k = base, 1
    while path in _CLAIMED or path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    _CLAIMED.add(path)
    return path


def check_run_dir(path: Path) -> None:
    """Refuse at construction a run folder that cannot be one (it, or a parent, is a file, or
    it cannot be made), instead of an OSError in round 1 that names no setting."""
    fix = "Point trust.run-dir (run_dir=) at a writable folder, or leave it empty for " \
          "runs/trust-guard-<time>."
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise TrustError(f"trust.run-dir {str(path)!r} cannot be a folder: "
                                 f"{str(folder)!r} is a file.", fix)
            break
    made = [f for f in (path, *path.parents) if not f.exists()]  # deepest first
    try:  # made and removed again: a run that fails to start leaves no folder behind
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK | os.X_OK)
    except OSError as exc:
        raise TrustError(f"trust.run-dir {str(path)!r} cannot be made ({exc.strerror or exc}).",
                         fix) from exc
    finally:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
    if not writable:
        raise TrustError(f"trust.run-dir {str(path)!r} is not writable.", fix)


def unapplied_keys(cfg: Mapping[str, Any]) -> list[str]:
    """The run config's server-side trust.* keys that a TrustGuard built in code does not
    read (only `strategy_from_config` applies them; the model keys are read either way)."""
    from flwr_trust.config.keys import TOLERANCE_PREFIX
    from flwr_trust.strategies.from_config import STRATEGIES  # it imports this module

    inner = tuple(f"trust.{name}." for name in STRATEGIES)
    return sorted(k for k in cfg if k not in FLOWERTUNE and (
        (k in BY_NAME and BY_NAME[k].side == "server")
        or k.startswith(("trust.strategy", "trust.dp", TOLERANCE_PREFIX, *inner))))
