import sys
import textwrap
import uuid
from importlib.metadata import EntryPoint

import pytest

from panoptic2.utils import plugins


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(plugins, "_STATE", plugins._State())
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", lambda **kw: [])


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Writes a module that appends a line to a log file each time it is executed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    log = tmp_path / "imports.log"

    def make(body=""):
        name = f"p2_plugin_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(
            f"with open({str(log)!r}, 'a') as f:\n    f.write({name!r} + '\\n')\n"
            + textwrap.dedent(body)
        )
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    def imports():
        return log.read_text().split() if log.exists() else []

    make.imports = imports
    return make


def test_load_plugins_imports_once_in_order(make_module):
    a, b = make_module(), make_module()
    assert plugins.load_plugins([a, b, a]) == [a, b]
    assert plugins.load_plugins([b]) == [b]
    assert make_module.imports() == [a, b]  # each module executed exactly once
    assert plugins.loaded_plugins() == [a, b]
    assert a in sys.modules and b in sys.modules


def test_import_failure_names_plugin_and_requester(make_module):
    with pytest.raises(ImportError) as e:
        plugins.load_plugins(["p2_missing_plugin_xyz"], requested_by="PLUGINS of 'x.yaml'")
    assert "p2_missing_plugin_xyz" in str(e.value) and "PLUGINS of 'x.yaml'" in str(e.value)
    assert e.value.name == "p2_missing_plugin_xyz"
    # Without requested_by, the caller's file is named.
    with pytest.raises(ImportError, match="test_plugins.py"):
        plugins.load_plugins(["p2_missing_plugin_xyz"])
    # A plugin whose own imports fail is reported as that plugin.
    broken = make_module("import p2_dependency_that_is_missing\n")
    with pytest.raises(ImportError, match=f"plugin '{broken}'.*p2_dependency_that_is_missing"):
        plugins.load_plugins([broken])
    assert plugins.loaded_plugins() == []


def test_bad_names_are_type_errors():
    with pytest.raises(TypeError, match="list of module names"):
        plugins.load_plugins("a.b")
    with pytest.raises(TypeError, match="non-empty"):
        plugins.load_plugins([""])


def test_entry_points_loaded_once_per_process(make_module, monkeypatch):
    ep_module = make_module()
    calls = []

    def fake_entry_points(**kwargs):
        calls.append(kwargs)
        return [EntryPoint(name="demo", value=ep_module, group=plugins.ENTRY_POINT_GROUP)]

    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", fake_entry_points)
    other = make_module()
    assert plugins.load_plugins([other]) == [other]
    assert plugins.load_plugins([]) == []
    assert calls == [{"group": "panoptic2.plugins"}]  # queried once
    assert make_module.imports() == [ep_module, other]  # entry points come first
    assert plugins.loaded_plugins() == [ep_module, other]


def test_entry_point_with_attribute_and_failure(make_module, monkeypatch):
    mod = make_module("def register():\n    pass\n")
    eps = [
        EntryPoint(name="ok", value=f"{mod}:register", group=plugins.ENTRY_POINT_GROUP),
        EntryPoint(name="bad", value="p2_missing_ep_mod", group=plugins.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", lambda **kw: eps)
    with pytest.raises(ImportError, match="entry point 'bad = p2_missing_ep_mod'"):
        plugins.load_plugins([])
    assert plugins.loaded_plugins() == [mod]
    # A failure is not remembered as success: the next call raises again.
    with pytest.raises(ImportError, match="bad"):
        plugins.load_plugins([])
    assert make_module.imports() == [mod]
