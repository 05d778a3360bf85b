import math
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

import panoptic2.config.defaults as defaults_module
from panoptic2.config import CfgNode, add_config_extension, get_cfg, load_config
from panoptic2.config.config import ConfigError, ConfigTypeError, UnknownConfigKeyError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def assert_same_types(a, b, key=""):
    """Equality that also tells 1 from 1.0 and [..] from (..)."""
    assert type(a) is type(b), f"{key}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), key
        for k in a:
            assert_same_types(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_types(x, y, f"{key}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b, key


# ---------------------------------------------------------------------------------------
# _BASE_ inheritance
# ---------------------------------------------------------------------------------------
@pytest.fixture
def chain(tmp_path):
    write(
        tmp_path / "configs" / "Base-Root.yaml",
        """
        SOLVER:
          BASE_LR: 0.1
          MAX_ITER: 100
          STEPS: [10, 20]
        MODEL:
          SEM_SEG_HEAD:
            NUM_CLASSES: 5
        """,
    )
    write(
        tmp_path / "configs" / "cityscapes" / "Base-Mid.yaml",
        """
        _BASE_: ../Base-Root.yaml
        SOLVER:
          BASE_LR: 0.05
          IMS_PER_BATCH: 4
        DATASETS:
          TRAIN: [mid_train]
        """,
    )
    return write(
        tmp_path / "configs" / "cityscapes" / "exp" / "final.yaml",
        """
        _BASE_: ../Base-Mid.yaml
        SOLVER:
          MAX_ITER: 10
          WEIGHT_DECAY: 1e-5
        """,
    )


def test_base_chain_three_levels_relative_to_each_file(chain, tmp_path, monkeypatch):
    # Relative bases resolve against the including file, whatever the working directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = get_cfg()
    cfg.merge_from_file(str(chain))
    assert cfg.SOLVER.BASE_LR == 0.05  # root 0.1, overridden by mid
    assert cfg.SOLVER.MAX_ITER == 10  # root 100, overridden by final
    assert cfg.SOLVER.STEPS == [10, 20]  # root only
    assert cfg.SOLVER.IMS_PER_BATCH == 4  # mid only
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 5  # root, sibling keys keep defaults
    assert cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE == 255
    assert cfg.DATASETS.TRAIN == ["mid_train"]
    # "1e-5" is a float here, not PyYAML 1.1's string.
    assert math.isclose(cfg.SOLVER.WEIGHT_DECAY, 1e-5)
    assert type(cfg.SOLVER.WEIGHT_DECAY) is float
    # Untouched keys keep their defaults.
    assert cfg.SOLVER.MOMENTUM == 0.9


def test_list_of_bases_merged_in_order(tmp_path):
    write(tmp_path / "a.yaml", "SOLVER: {BASE_LR: 1.0, MAX_ITER: 3}\n")
    write(tmp_path / "sub" / "b.yaml", "SOLVER: {BASE_LR: 2.0}\n")
    top = write(tmp_path / "top.yaml", "_BASE_: [a.yaml, sub/b.yaml]\nSEED: 7\n")
    data = CfgNode.load_yaml_with_base(str(top))
    assert data == {"SOLVER": {"BASE_LR": 2.0, "MAX_ITER": 3}, "SEED": 7}
    cfg = get_cfg()
    cfg.merge_from_file(str(top))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SEED) == (2.0, 3, 7)


def test_missing_base_names_including_file(tmp_path):
    top = write(tmp_path / "dir" / "top.yaml", "_BASE_: ../nope/Base.yaml\nSEED: 1\n")
    with pytest.raises(FileNotFoundError) as e:
        get_cfg().merge_from_file(str(top))
    msg = str(e.value)
    assert str(tmp_path / "nope" / "Base.yaml") in msg
    assert str(top) in msg
    assert "_BASE_" in msg


def test_missing_top_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "absent.yaml"))


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
    write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))


def test_unsafe_yaml_tag_rejected_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = write(tmp_path / "bad.yaml", f"SEED: !!python/object/apply:os.mkdir ['{marker}']\n")
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(str(bad))
    assert str(bad) in str(e.value)
    assert "python/object/apply:os.mkdir" in str(e.value)
    assert "safe_load" in str(e.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match="allow_unsafe"):
        get_cfg().merge_from_file(str(bad), allow_unsafe=True)


def test_malformed_yaml_and_non_mapping_name_the_file(tmp_path):
    broken = write(tmp_path / "broken.yaml", "SOLVER: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        get_cfg().merge_from_file(str(broken))
    listy = write(tmp_path / "listy.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="listy.yaml.*mapping"):
        get_cfg().merge_from_file(str(listy))


# ---------------------------------------------------------------------------------------
# Unknown keys and types
# ---------------------------------------------------------------------------------------
def test_unknown_key_in_base_file_names_key_that_file_and_suggestion(chain, tmp_path):
    base = tmp_path / "configs" / "Base-Root.yaml"
    base.write_text(base.read_text() + "    BASE_LRR: 0.3\n")  # under MODEL.SEM_SEG_HEAD
    with pytest.raises(UnknownConfigKeyError) as e:
        get_cfg().merge_from_file(str(chain))
    msg = str(e.value)
    assert "'MODEL.SEM_SEG_HEAD.BASE_LRR'" in msg
    assert f"file '{base}'" in msg  # the base that wrote it, not the top file
    assert "did you mean" in msg.lower()
    assert isinstance(e.value, KeyError)  # yacs/Detectron2 callers catch KeyError


def test_unknown_key_suggests_closest_full_key(tmp_path):
    f = write(tmp_path / "typo.yaml", "SOLVER:\n  BASE_LRR: 0.3\n")
    with pytest.raises(UnknownConfigKeyError) as e:
        get_cfg().merge_from_file(str(f))
    assert str(e.value) == (
        f"Unknown config key 'SOLVER.BASE_LRR' (from file '{f}'). Did you mean 'SOLVER.BASE_LR'?"
    )


def test_misspelled_intermediate_node(tmp_path):
    f = write(tmp_path / "typo.yaml", "SOLVR:\n  BASE_LR: 0.3\n")
    with pytest.raises(UnknownConfigKeyError, match=r"'SOLVR.BASE_LR'.*'SOLVER.BASE_LR'\?"):
        get_cfg().merge_from_file(str(f))
    with pytest.raises(UnknownConfigKeyError, match=r"Did you mean 'MODEL.BACKBONE.NAME'\?"):
        get_cfg().merge_from_list(["MODEL.BACKBONEE.NAME", "x"])


def test_unknown_key_from_command_line():
    with pytest.raises(UnknownConfigKeyError) as e:
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "5", "SOLVER.BASE_LRR=0.1"])
    msg = str(e.value)
    assert "'SOLVER.BASE_LRR'" in msg and "command line" in msg
    assert "Did you mean 'SOLVER.BASE_LR'?" in msg
    # Wrong level and wrong case still find the key.
    with pytest.raises(UnknownConfigKeyError, match="'SOLVER.BASE_LR'"):
        get_cfg().merge_from_list(["base_lr", "1"])


def test_wrong_type_names_key_source_and_both_types(tmp_path):
    f = write(tmp_path / "t.yaml", "SOLVER:\n  MAX_ITER: many\n")
    with pytest.raises(ConfigTypeError) as e:
        get_cfg().merge_from_file(str(f))
    assert str(e.value) == (
        f"Config key 'SOLVER.MAX_ITER' (from file '{f}') expects int, got str 'many'"
    )
    with pytest.raises(
        ConfigTypeError, match=r"'SOLVER.MAX_ITER' \(from the command line\).*int.*float"
    ):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "0.5"])
    with pytest.raises(ConfigTypeError, match="'MODEL'.*group of keys"):
        get_cfg().merge_from_list(["MODEL", "3"])


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("SOLVER.BASE_LR", 1, 1.0),  # int -> float, converted
        ("SOLVER.BETAS", (0.5, 0.6), [0.5, 0.6]),  # tuple -> list default
        ("MODEL.PIXEL_MEAN", [1, 2, 3], [1.0, 2.0, 3.0]),  # list of floats takes ints
        ("SOLVER.WEIGHT_DECAY_BIAS", 0.5, 0.5),  # None default accepts anything
        ("SOLVER.WEIGHT_DECAY_BIAS", [1, "a"], [1, "a"]),
        ("SOLVER.MAX_CHECKPOINTS_TO_KEEP", None, None),  # None accepted for any leaf
        ("SOLVER.NESTEROV", True, True),
        ("DATASETS.TRAIN", ["a", "b"], ["a", "b"]),
    ],
)
def test_accepted_types(key, value, expected):
    cfg = get_cfg()
    cfg.merge_from_other_cfg(_nested(key, value))
    got = cfg
    for part in key.split("."):
        got = got[part]
    assert_same_types(got, expected)


@pytest.mark.parametrize(
    "key, value, expected_type, given",
    [
        ("MODEL.WEIGHTS", ["a"], "str", "list ['a']"),  # str default rejects a list
        ("MODEL.WEIGHTS", 3, "str", "int 3"),
        ("SOLVER.MAX_ITER", 1.5, "int", "float 1.5"),
        ("SOLVER.MAX_ITER", True, "int", "bool True"),  # bool is not an int here
        ("SOLVER.NESTEROV", 1, "bool", "int 1"),
        ("SOLVER.BASE_LR", False, "float", "bool False"),
        ("SOLVER.STEPS", 5, "a list", "int 5"),
        ("INPUT.MIN_SIZE_TRAIN[1]", [512, "big"], "int", "str 'big'"),
    ],
)
def test_rejected_types(key, value, expected_type, given):
    with pytest.raises(ConfigTypeError) as e:
        get_cfg().merge_from_other_cfg(_nested(key.split("[")[0], value))
    assert str(e.value).startswith(f"Config key '{key}' (from merge_from_other_cfg())")
    assert f"expects {expected_type}" in str(e.value)
    assert str(e.value).endswith(f"got {given}")


def _nested(key, value):
    out = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def test_string_for_list_hint(tmp_path):
    f = write(tmp_path / "d.yaml", "DATASETS:\n  TRAIN: name\n")
    with pytest.raises(ConfigTypeError) as e:
        get_cfg().merge_from_file(str(f))
    assert (
        "DATASETS.TRAIN must be a list of dataset names, e.g. ['name'] (YAML: [name]); "
        "got the string 'name'"
    ) in str(e.value)
    assert str(f) in str(e.value)
    with pytest.raises(ConfigTypeError) as e:
        get_cfg().merge_from_list(["DATASETS.TEST", "a,b"])
    assert "DATASETS.TEST must be a list of dataset names, e.g. ['a', 'b'] (YAML: [a, b])" in str(
        e.value
    )
    assert "command line" in str(e.value)
    # Any list-typed key, with the element type taken from its default.
    with pytest.raises(ConfigTypeError, match=r"SOLVER.BETAS must be a list of float"):
        get_cfg().merge_from_other_cfg({"SOLVER": {"BETAS": "0.9"}})


def test_failed_merge_changes_nothing(tmp_path):
    cfg = get_cfg()
    f = write(tmp_path / "partial.yaml", "SEED: 3\nSOLVER: {BASE_LR: 0.5, MAX_ITER: x}\n")
    with pytest.raises(ConfigTypeError):
        cfg.merge_from_file(str(f))
    assert cfg == get_cfg()


def test_frozen_config_rejects_merge():
    cfg = get_cfg()
    cfg.freeze()
    with pytest.raises(AttributeError, match="frozen"):
        cfg.merge_from_list(["SEED", "1"])


def test_empty_group_in_yaml_is_a_no_op(tmp_path):
    f = write(tmp_path / "e.yaml", "SOLVER:\nSEED: 4\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(f))
    assert cfg.SEED == 4 and cfg.SOLVER == get_cfg().SOLVER


# ---------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------
def test_both_override_syntaxes_mixed():
    cfg = get_cfg()
    cfg.merge_from_list(
        [
            "SOLVER.BASE_LR",
            "0.5",
            "SOLVER.MAX_ITER=7",
            "DATASETS.TRAIN",
            "[a, b]",
            "MODEL.WEIGHTS=",
            "TEST.BEST_CHECKPOINT_METRIC",
            "panoptic_seg/PQ=x",  # a value is never split at '='
            "SOLVER.WEIGHT_DECAY=1e-4",
            "MODEL.DEVICE",
            "cuda:1",
            "OUTPUT_DIR",
            "1.0",  # str key: the text typed, not float 1.0
            "SOLVER.MAX_CHECKPOINTS_TO_KEEP=null",
            "INPUT.CROP.SIZE=[256, 128]",
        ]
    )
    assert cfg.SOLVER.BASE_LR == 0.5 and type(cfg.SOLVER.BASE_LR) is float
    assert cfg.SOLVER.MAX_ITER == 7
    assert cfg.DATASETS.TRAIN == ["a", "b"]
    assert cfg.MODEL.WEIGHTS == ""
    assert cfg.TEST.BEST_CHECKPOINT_METRIC == "panoptic_seg/PQ=x"
    assert cfg.SOLVER.WEIGHT_DECAY == 1e-4
    assert cfg.MODEL.DEVICE == "cuda:1"
    assert cfg.OUTPUT_DIR == "1.0"
    assert cfg.SOLVER.MAX_CHECKPOINTS_TO_KEEP is None
    assert cfg.INPUT.CROP.SIZE == [256, 128]


def test_override_errors():
    with pytest.raises(ConfigError, match="'SOLVER.BASE_LR'.*no value"):
        get_cfg().merge_from_list(["SEED", "1", "SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="only allowed"):
        get_cfg().merge_from_list(["_BASE_=x.yaml"])
    with pytest.raises(TypeError, match="list of tokens"):
        get_cfg().merge_from_list("SEED=1")
    with pytest.raises(ConfigError, match="safe_load"):
        get_cfg().merge_from_list(["MODEL.WEIGHTS", "!!python/object/apply:os.getcwd []"])


# ---------------------------------------------------------------------------------------
# dump round trip
# ---------------------------------------------------------------------------------------
def test_dump_load_round_trip(tmp_path):
    @add_config_extension
    def add_project(cfg):
        cfg.PROJ = CfgNode()
        cfg.PROJ.SIZES = (1, 2)
        cfg.PROJ.EMPTY = ""
        cfg.PROJ.NOTHING = None
        cfg.PROJ.DEEP = CfgNode()
        cfg.PROJ.DEEP.RATE = 1e-4
        cfg.PROJ.DEEP.NAMES = ["x"]

    cfg = get_cfg()
    cfg.merge_from_list(
        [
            "PROJ.SIZES=[3, 4, 5]",
            "PROJ.NOTHING={A: [1, 2.5], B: null}",
            "PROJ.DEEP.RATE=1e-12",
            "PROJ.DEEP.NAMES=['1e-4', 'null', '', 'yes', 'a: b']",  # strings that look special
            "SOLVER.WEIGHT_DECAY_BIAS=-0.0",
            "SOLVER.MAX_CHECKPOINTS_TO_KEEP=null",
            "DATASETS.TRAIN=[a, b]",
            "SEED=-5",
            "SOLVER.STEPS=[]",
            "MODEL.PIXEL_STD=[.inf, 1.0, 2.0]",
        ]
    )
    text = cfg.dump()
    path = tmp_path / "dumped.yaml"
    path.write_text(text)
    loaded = get_cfg()
    loaded.merge_from_file(str(path))
    assert loaded == cfg
    assert_same_types(dict(loaded), dict(cfg))
    assert type(loaded.PROJ.SIZES) is tuple
    assert loaded.PROJ.DEEP.NAMES == ["1e-4", "null", "", "yes", "a: b"]
    # The dump is plain YAML: readable by yaml.safe_load too.
    assert yaml.safe_load(text)["PROJ"]["SIZES"] == [3, 4, 5]


# ---------------------------------------------------------------------------------------
# Extensions and load_config
# ---------------------------------------------------------------------------------------
def test_extension_adds_keys_once_and_yaml_can_use_them(tmp_path):
    def add_keys(cfg):
        cfg.MY_PROJECT = CfgNode()
        cfg.MY_PROJECT.DEPTH = 3
        cfg.MY_PROJECT.NAMES = []

    before = get_cfg()
    assert "MY_PROJECT" not in before
    assert add_config_extension(add_keys) is add_keys
    add_config_extension(add_keys)  # second registration: no-op
    assert list(defaults_module._EXTENSIONS) == [add_keys]
    assert get_cfg().MY_PROJECT.DEPTH == 3
    assert "MY_PROJECT" not in before  # earlier configs are not touched

    f = write(tmp_path / "p.yaml", "MY_PROJECT:\n  DEPTH: 5\n  NAMES: [a]\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(f))
    assert (cfg.MY_PROJECT.DEPTH, cfg.MY_PROJECT.NAMES) == (5, ["a"])
    with pytest.raises(ConfigTypeError, match="MY_PROJECT.DEPTH"):
        get_cfg().merge_from_list(["MY_PROJECT.DEPTH", "deep"])


def test_extension_may_not_change_existing_keys():
    def bad(cfg):
        cfg.SOLVER.BASE_LR = 1.0

    with pytest.raises(ConfigError, match="SOLVER.BASE_LR"):
        add_config_extension(bad)
    assert defaults_module._EXTENSIONS == []
    assert get_cfg().SOLVER.BASE_LR == 0.01
    with pytest.raises(TypeError):
        add_config_extension("not callable")


def _write_plugin(tmp_path, monkeypatch, key):
    name = f"p2_test_plugin_{uuid.uuid4().hex[:8]}"
    write(
        tmp_path / "plugins" / f"{name}.py",
        f"""
        from panoptic2.config import CfgNode, add_config_extension

        @add_config_extension
        def _add(cfg):
            cfg.{key} = CfgNode()
            cfg.{key}.WIDTH = 8
            cfg.{key}.RATE = 0.5
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_load_config_imports_plugins_named_in_base_chain(tmp_path, monkeypatch):
    name = _write_plugin(tmp_path, monkeypatch, "MYPLUG")
    monkeypatch.chdir(tmp_path)  # the plugin lives under the working directory: trusted
    write(tmp_path / "cfg" / "Base.yaml", f"PLUGINS: [{name}]\nMYPLUG:\n  WIDTH: 16\n")
    top = write(tmp_path / "cfg" / "exp" / "top.yaml", "_BASE_: ../Base.yaml\nSEED: 2\n")
    # Before the plugin is imported, its keys are unknown (and the error says why).
    with pytest.raises(UnknownConfigKeyError, match="load_config"):
        get_cfg().merge_from_file(str(top))

    cfg = load_config(str(top), ["MYPLUG.RATE", "0.25", "SOLVER.MAX_ITER=3"])
    assert cfg.is_frozen()
    assert (cfg.MYPLUG.WIDTH, cfg.MYPLUG.RATE) == (16, 0.25)
    assert (cfg.SEED, cfg.SOLVER.MAX_ITER) == (2, 3)
    assert list(cfg.PLUGINS) == [name]
    assert name in sys.modules


def test_load_config_plugins_from_argument_and_overrides(tmp_path, monkeypatch):
    first = _write_plugin(tmp_path, monkeypatch, "FIRST")
    second = _write_plugin(tmp_path, monkeypatch, "SECOND")
    cfg = load_config(None, [f"PLUGINS=[{second}]", "SECOND.WIDTH", "2"], plugins=[first])
    assert list(cfg.PLUGINS) == [first, second]
    assert cfg.SECOND.WIDTH == 2 and cfg.FIRST.WIDTH == 8
    # The dumped config of a run reloads in a fresh process through its PLUGINS.
    path = tmp_path / "run.yaml"
    path.write_text(cfg.dump())
    assert load_config(str(path)) == cfg


def test_load_config_missing_plugin_names_the_file(tmp_path):
    f = write(tmp_path / "m.yaml", "PLUGINS: [no_such_module_p2]\n")
    with pytest.raises(ImportError) as e:
        load_config(str(f))
    assert "no_such_module_p2" in str(e.value) and str(f) in str(e.value)
    with pytest.raises(ConfigTypeError, match=r"PLUGINS must be a list of module names"):
        load_config(None, ["PLUGINS", "no_such_module_p2"])


def test_load_config_refuses_untrusted_file_plugins_unless_allowed(tmp_path, monkeypatch):
    name = _write_plugin(tmp_path, monkeypatch, "EVIL")
    marker = tmp_path / "plugins" / f"{name}.py"
    marker.write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n" + marker.read_text())
    cfg_file = write(tmp_path / "cfg" / "exp.yaml", f"PLUGINS: [{name}]\nEVIL:\n  WIDTH: 3\n")
    with pytest.raises(ImportError) as err:
        load_config(str(cfg_file))
    assert f"plugin '{name}'" in str(err.value) and str(cfg_file) in str(err.value)
    assert "--allow-plugin" in str(err.value)
    assert not (tmp_path / "pwned").exists() and name not in sys.modules

    cfg = load_config(str(cfg_file), allowed_plugins=[name])
    assert cfg.EVIL.WIDTH == 3 and list(cfg.PLUGINS) == [name]
    assert (tmp_path / "pwned").exists()


def test_every_shipped_config_loads_with_its_plugins(tmp_path):
    """Configs under configs/ and projects/*/configs name only trusted plugins; checked in a
    fresh interpreter run outside the checkout, so trust comes from where the modules live."""
    repo = Path(__file__).resolve().parents[2]
    files = sorted(
        str(p)
        for pattern in ("configs/**/*.yaml", "projects/*/configs/**/*.yaml")
        for p in repo.glob(pattern)
    )
    assert len(files) > 20
    script = (
        "import sys\n"
        "from panoptic2.config import load_config\n"
        "for f in sys.argv[1:]:\n"
        "    load_config(f)\n"
        "print('loaded', len(sys.argv) - 1)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("PANOPTIC2_ALLOWED_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-c", script, *files],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"loaded {len(files)}" in proc.stdout
