"""Tests of panoptic2/utils/xla.py: device predicates and the lazy torch_xla access."""

import importlib.util
import sys

import pytest
import torch

from panoptic2.utils import xla


def test_static_shape_devices_are_the_xla_ones():
    assert xla.is_static_shape_device("xla:0")
    assert xla.is_static_shape_device(torch.device("xla"))
    assert not xla.is_static_shape_device("cpu")
    assert not xla.is_static_shape_device(torch.device("cuda", 1))
    assert not xla.is_static_shape_device("meta")


def test_model_device_names():
    assert xla.is_xla_device_name("xla")
    assert xla.is_xla_device_name("xla:1")
    for name in ("cpu", "cuda", "cuda:0", "auto", "xlaa"):
        assert not xla.is_xla_device_name(name), name


def test_installed_version_without_import(monkeypatch):
    before = "torch_xla" in sys.modules
    version = xla.xla_installed_version()
    assert ("torch_xla" in sys.modules) == before
    assert (version is None) == (importlib.util.find_spec("torch_xla") is None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert xla.xla_installed_version() is None


def test_xla_device_names_the_install_script_when_torch_xla_is_missing(monkeypatch):
    # None in sys.modules makes `import torch_xla` raise ImportError.
    monkeypatch.setitem(sys.modules, "torch_xla", None)
    with pytest.raises(ImportError, match="dev/install_xla.sh"):
        xla.xla_device()
