import sys
import textwrap
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from panoptic2.utils import plugins

_REAL_ENTRY_POINTS = plugins.importlib_metadata.entry_points


def _entry_points_with(*ours):
    """entry_points() with ``ours`` as the plugin group; other libraries imported meanwhile
    (triton under torch, ...) still find their own groups."""

    def entry_points(**kwargs):
        if kwargs.get("group") == plugins.ENTRY_POINT_GROUP:
            return list(ours)
        return _REAL_ENTRY_POINTS(**kwargs)

    return entry_points


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(plugins, "_STATE", plugins._State())
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", _entry_points_with())


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


# --------------------------------------------------------------------- trust of config files
@pytest.fixture
def outside(tmp_path, monkeypatch):
    """A directory on sys.path outside the trusted ones, and a marker its code would create."""
    root = tmp_path / "elsewhere"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    marker = tmp_path / "pwned"

    def make(name, *, package=False):
        def code(module):
            return f"open({str(marker)!r}, 'a').write({module!r} + '\\n')\n"

        path = root / name
        if package:
            path.mkdir(parents=True)
            (path / "__init__.py").write_text(code(name))
            (path / "sub.py").write_text(code(f"{name}.sub"))
        else:
            path.with_suffix(".py").write_text(code(name))
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, mod)
        return name

    make.marker = marker
    make.root = root
    return make


def _unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_config_plugin_outside_trusted_dirs_is_refused_unimported(outside):
    name = outside(_unique("p2_evil"))
    with pytest.raises(plugins.UntrustedPluginError) as err:
        plugins.load_plugins([name], config_file="/cfgs/exp.yaml")
    message = str(err.value)
    assert f"plugin '{name}'" in message and "'/cfgs/exp.yaml'" in message
    assert str(outside.root) in message
    assert f"--allow-plugin {name}" in message and "PANOPTIC2_ALLOWED_PLUGINS" in message
    assert not outside.marker.exists() and name not in sys.modules
    assert plugins.loaded_plugins() == []
    # The user typing it (--plugin: no config file) imports it as before.
    assert plugins.load_plugins([name]) == [name]
    assert outside.marker.read_text().split() == [name]


def test_untrusted_package_init_does_not_run_for_a_submodule(outside):
    pkg = outside(_unique("p2_evilpkg"), package=True)
    with pytest.raises(plugins.UntrustedPluginError, match=f"'{pkg}' would be imported from"):
        plugins.load_plugins([f"{pkg}.sub"], config_file="exp.yaml")
    assert not outside.marker.exists() and pkg not in sys.modules


def test_explicitly_allowed_plugins_are_imported(outside, monkeypatch):
    a, b = outside(_unique("p2_a")), outside(_unique("p2_b"))
    pkg = outside(_unique("p2_pkg"), package=True)
    assert plugins.load_plugins([a], config_file="x.yaml", allowed=[a]) == [a]
    monkeypatch.setenv(plugins.ALLOWED_PLUGINS_ENV, f" other , {b},{pkg}")
    assert plugins.load_plugins([b, f"{pkg}.sub"], config_file="x.yaml") == [b, f"{pkg}.sub"]
    assert outside.marker.read_text().split() == [a, b, pkg, f"{pkg}.sub"]


def test_modules_under_the_working_directory_are_trusted(outside, monkeypatch):
    name = outside(_unique("p2_local"))
    monkeypatch.chdir(outside.root)
    assert plugins.load_plugins([name], config_file="x.yaml") == [name]
    # ... but not an installed library inside it (a virtual environment in the project).
    venv = outside.root / ".venv" / "lib" / "site-packages"
    venv.mkdir(parents=True)
    installed = _unique("p2_installed")
    (venv / f"{installed}.py").write_text(f"open({str(outside.marker)!r}, 'a').write('x')\n")
    monkeypatch.syspath_prepend(str(venv))
    with pytest.raises(plugins.UntrustedPluginError, match="site-packages"):
        plugins.load_plugins([installed], config_file="x.yaml")
    assert outside.marker.read_text().split() == [name]


def test_project_panoptic2_and_entry_point_plugins_are_trusted(outside, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # trust below comes from the checkout, not the cwd
    assert plugins.trusted_plugin_roots()[-1] == str(Path(plugins.__file__).resolve().parents[2])
    names = ["tests.engine.toy_plugin", "panoptic2.testing.toy"]
    assert plugins.load_plugins(names, config_file="x.yaml") == names

    pkg = outside(_unique("p2_dist"), package=True)
    ep = EntryPoint(name="demo", value=pkg, group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", _entry_points_with(ep))
    # An installed package that declares itself a plugin is trusted as a whole.
    assert plugins.load_plugins([f"{pkg}.sub"], config_file="x.yaml") == [f"{pkg}.sub"]


@pytest.mark.parametrize("name", ["this", "tabulate", "sys"])
def test_standard_library_and_installed_modules_are_refused(name, monkeypatch):
    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(plugins.UntrustedPluginError, match=f"plugin '{name}'"):
        plugins.load_plugins([name], config_file="x.yaml")
    assert "this" not in sys.modules  # the Zen of Python was not printed


def test_missing_config_plugin_is_an_import_error_naming_the_file():
    with pytest.raises(ImportError, match="p2_missing_xyz.*PLUGINS of 'x.yaml'") as err:
        plugins.load_plugins(["p2_missing_xyz.sub"], requested_by="PLUGINS of 'x.yaml'",
                             config_file="x.yaml")  # fmt: skip
    assert not isinstance(err.value, plugins.UntrustedPluginError)
