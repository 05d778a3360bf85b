"""Configuration: typed defaults, YAML files with ``_BASE_``, overrides, ``@configurable``."""

from .config import CfgNode, load_config
from .configurable import configurable
from .defaults import add_config_extension, get_cfg

__all__ = ["CfgNode", "add_config_extension", "configurable", "get_cfg", "load_config"]
