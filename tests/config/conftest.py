"""Isolation for config tests: no leaked config extensions, plugins or entry points."""

import pytest

import panoptic2.config.defaults as defaults
from panoptic2.utils import plugins


@pytest.fixture(autouse=True)
def _isolated_config_state(monkeypatch):
    # Extensions and plugin bookkeeping are process-global; give each test a clean slate.
    monkeypatch.setattr(defaults, "_EXTENSIONS", [])
    monkeypatch.setattr(plugins, "_STATE", plugins._State())
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", lambda **kw: [])
