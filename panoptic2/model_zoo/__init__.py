"""The model zoo: shipped configs by name and the checkpoints published for them."""

from .catalog import CHECKPOINTS, ModelZooEntry
from .model_zoo import get, get_checkpoint_url, get_config, get_config_file, list_configs

__all__ = [
    "CHECKPOINTS",
    "ModelZooEntry",
    "get",
    "get_checkpoint_url",
    "get_config",
    "get_config_file",
    "list_configs",
]
