"""Tests of panoptic2/registry.py: one declaration site, lazy builtin locations, clear misses."""

import ast
import pathlib
import subprocess
import sys

import pytest

from panoptic2 import registry
from panoptic2.registry import REGISTRIES, Registry, UnknownNameError, nearest_name

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_miss_lists_names_and_suggests_nearest():
    reg = Registry("THING", call="obj()", chosen_by="MODEL.THING.NAME")
    reg.register(name="ResNetBackbone")(object)
    reg.register(name="MobileNet")(dict)
    with pytest.raises(KeyError) as info:
        reg.get("ResNetBakbone")
    msg = str(info.value)
    assert isinstance(info.value, UnknownNameError)
    assert "THING (MODEL.THING.NAME) 'ResNetBakbone' is not registered" in msg
    assert "['MobileNet', 'ResNetBackbone']" in msg
    assert msg.endswith("Did you mean 'ResNetBackbone'?")
    with pytest.raises(KeyError) as info:
        reg.get("zzz")
    assert "Did you mean" not in str(info.value)


def test_nearest_name_prefers_case_insensitive_match():
    assert nearest_name("sgd", ["SGD", "sgdw"]) == "SGD"
    assert nearest_name("AdamWW", ["Adam", "AdamW"]) == "AdamW"
    assert nearest_name("x", ["Adam"]) is None


def test_register_forms_and_duplicates():
    reg = Registry("T", call="obj()")

    @reg.register()
    def f():
        return 1

    def g():
        return 2

    assert reg.register(g) is g
    assert reg.register(g) is g  # the same object again: a no-op
    reg.register(f, name="alias")
    assert reg.names() == ["alias", "f", "g"]
    assert "f" in reg and len(reg) == 3 and dict(reg)["alias"] is f
    with pytest.raises(ValueError, match=r"'g' is already registered .*remove\('g'\)"):
        reg.register(name="g")(f)
    assert reg.remove("g") is g
    assert "g" not in reg
    with pytest.raises(KeyError, match="'g' is not registered"):
        reg.remove("g")
    assert "called as obj()" in repr(reg)


def test_every_registry_is_declared_in_registry_py_only():
    """No module creates a Registry of its own: grep the package for constructor calls."""
    offenders = []
    for path in (ROOT / "panoptic2").rglob("*.py"):
        if path.name == "registry.py" and path.parent.name == "panoptic2":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Registry":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "fvcore.common.registry":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
    declared = {name for name in registry.__all__ if name.endswith("_REGISTRY")}
    assert declared == {f"{name}_REGISTRY" for name in REGISTRIES}
    assert len(REGISTRIES) == 16


def test_builtin_entries_are_found_without_importing_their_modules_first():
    """A fresh process that imports only panoptic2.registry still finds every builtin
    entry: each registry imports its declared locations on the first search."""
    code = (
        "from panoptic2.registry import REGISTRIES\n"
        "import sys\n"
        "assert 'panoptic2.modeling' not in sys.modules\n"
        "print({n: len(r) for n, r in REGISTRIES.items()})\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    counts = ast.literal_eval(out)
    empty = sorted(name for name, n in counts.items() if n == 0 and name != "HOOK")
    assert not empty, f"registries without builtin entries: {empty}"
    assert counts["TRAIN_SAMPLER"] == 2 and counts["META_ARCH"] >= 3


def test_call_conventions_are_documented():
    for name, reg in REGISTRIES.items():
        assert reg.call.startswith("obj("), name
        assert reg.locations, name
