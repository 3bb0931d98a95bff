"""Model access: load a base model once per process and move Flower arrays in and out of it."""

from flwr_trust.models.app_model import AppModel
from flwr_trust.models.bridge import ModelBridge, adapter_config_from_dir, get_bridge
from flwr_trust.models.loader import LoadedModel, clear_model_cache, load_base_model

__all__ = ["AppModel", "LoadedModel", "ModelBridge", "adapter_config_from_dir", "clear_model_cache",
           "get_bridge", "load_base_model"]
