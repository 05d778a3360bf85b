"""The configuration system: one typed tree of defaults, YAML files and command-line overrides.

panoptic2 has exactly one config system, built on fvcore's :class:`fvcore.common.config.CfgNode`
(itself a yacs ``CfgNode``), rather than on omegaconf or Python-file configs, because:

* **Typed defaults.** Every key is declared with a default in :mod:`panoptic2.config.defaults`;
  the default's type is the key's type, so an override of the wrong type, or a key that does
  not exist, is an error at load time instead of a silently ignored typo.
* **Detectron2 familiarity.** Users keep their ``cfg.SOLVER.BASE_LR`` code, their YAML files
  and their ``KEY VALUE`` command lines.
* **``_BASE_`` inheritance.** A YAML file names one or more base files (relative to itself);
  chains of any depth are merged base first.

What this module adds over fvcore:

* YAML is read with a :class:`yaml.SafeLoader` subclass only (no Python tags, no eval); its only
  change is that YAML 1.2 floats such as ``1e-4`` load as floats instead of strings.
* Every error names the full key, where the value came from (the file, or the command line),
  and for unknown keys the closest valid key (``did you mean 'SOLVER.BASE_LR'?``).
* A list-typed key given a string gets a hint (``DATASETS.TRAIN: name`` -> use ``[name]``).
* Overrides accept ``KEY VALUE`` pairs and ``KEY=VALUE`` tokens, mixed, parsed as YAML.
* :meth:`CfgNode.dump` writes YAML that loads back to an equal config.
* Projects declare their own keys with :func:`add_config_extension`; :func:`load_config` imports
  the plugins a config names (``PLUGINS``) before building the defaults, so plugin keys are valid.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import yaml
from fvcore.common.config import CfgNode as _FvCfgNode
from yacs.config import CfgNode as _YacsCfgNode

__all__ = [
    "BASE_KEY",
    "CfgNode",
    "ConfigError",
    "ConfigTypeError",
    "UnknownConfigKeyError",
    "load_config",
]

logger = logging.getLogger(__name__)

BASE_KEY = "_BASE_"
PLUGINS_KEY = "PLUGINS"
_COMMAND_LINE = "the command line"
# A dotted key such as "SOLVER.BASE_LR"; used to tell "KEY=VALUE" tokens from plain values.
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Types a leaf may hold; yacs checks exact types (no subclasses), and so do we.
_LEAF_TYPES = (tuple, list, str, int, float, bool, type(None))
# Nicer wording for the string-for-list hint of well-known keys.
_LIST_ITEM_NAMES = {
    "DATASETS.TRAIN": "dataset names",
    "DATASETS.TEST": "dataset names",
    PLUGINS_KEY: "module names",
}


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------
class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and its source."""


class UnknownConfigKeyError(ConfigError, KeyError):
    """A file or override names a key that no default (or extension) declares."""

    def __str__(self) -> str:
        # KeyError would repr() the message (adding quotes); show it as written.
        return str(self.args[0]) if self.args else ""


class ConfigTypeError(ConfigError, TypeError):
    """A value's type does not match the type of the key's default."""


# ---------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------
class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads YAML 1.2 floats without a dot (``1e-4``)."""


class _SafeDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes strings :class:`_SafeLoader` would read as floats."""


# PyYAML (YAML 1.1) reads "1e-4" as a string; people write learning rates that way.
_EXP_FLOAT_RE = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _cls in (_SafeLoader, _SafeDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT_RE, list("-+0123456789"))


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
    # Lists of scalars on one line ("PIXEL_MEAN: [123.675, 116.28, 103.53]"), mappings as blocks.
    flow = all(not isinstance(x, (list, tuple, dict)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_SafeDumper.add_representer(list, _represent_list)


def _parse_yaml(
    stream: str | IO[str], origin: str, loader: type[yaml.SafeLoader] = _SafeLoader
) -> Any:
    """Parses YAML safely; errors name ``origin`` (a file path or "the command line")."""
    try:
        return yaml.load(stream, Loader=loader)
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(
            f"{origin}: {e.problem} {e.problem_mark or ''}. Config YAML is read with "
            "yaml.safe_load: Python tags (!!python/...) and custom tags are not allowed."
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: invalid YAML: {e}") from e


@dataclass
class _YamlTree:
    """A YAML file merged with its ``_BASE_`` chain (base first, without ``_BASE_`` keys)."""

    data: dict[str, Any]
    sources: dict[str, str]  # dotted leaf key -> the file that set it last
    plugins: list[tuple[str, str]]  # (module, file) of every PLUGINS entry in the chain
    file: str  # the top-level file

    def source_of(self, key: str) -> str:
        return f"file '{self.sources.get(key, self.file)}'"


def _open_cfg(filename: str) -> IO[str]:
    """Opens a config file through panoptic2's PathManager (local paths, URLs)."""
    try:
        from panoptic2.utils.file_io import PathManager
    except ModuleNotFoundError as e:  # file_io not written yet / stripped install
        if e.name not in ("panoptic2.utils.file_io", "panoptic2.utils"):
            raise
        from iopath.common.file_io import g_pathmgr as PathManager
    return PathManager.open(filename, "r")


def _resolve_base(base: Any, including: str) -> str:
    if not isinstance(base, str) or not base:
        raise ConfigError(
            f"file '{including}': {BASE_KEY} must be a path or a list of paths, got {base!r}"
        )
    base = os.path.expanduser(base)
    if "://" in base or os.path.isabs(base):
        return base
    if "://" in including:
        return including.rsplit("/", 1)[0] + "/" + base
    # Relative bases are relative to the including file, not to the working directory.
    return os.path.normpath(os.path.join(os.path.dirname(including), base))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf path -> value for the leaves (non-mappings, empty mappings) of ``data``."""
    out = {}
    for k, v in data.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``base`` updated by ``override``; mappings merge, anything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_tree(
    filename: str, stack: tuple[str, ...] = (), loader: type[yaml.SafeLoader] = _SafeLoader
) -> _YamlTree:
    """Reads ``filename`` and its ``_BASE_`` chain (depth first, bases merged in order)."""
    if "://" not in filename:
        filename = os.path.normpath(os.path.expanduser(filename))
    try:
        with _open_cfg(filename) as f:
            raw = _parse_yaml(f, f"file '{filename}'", loader)
    except FileNotFoundError as e:
        if stack:
            raise FileNotFoundError(
                f"Base config '{filename}' does not exist; it is named in {BASE_KEY} of "
                f"'{stack[-1]}'"
            ) from e
        raise FileNotFoundError(f"Config file '{filename}' does not exist") from e
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"file '{filename}': a config must be a YAML mapping, got {raw!r:.80}")

    bases = raw.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list):
        raise ConfigError(f"file '{filename}': {BASE_KEY} must be a path or a list of paths")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    plugins: list[tuple[str, str]] = []
    for base in bases:
        path = _resolve_base(base, filename)
        if path in stack or path == filename:
            chain = " -> ".join((*stack, filename, path))
            raise ConfigError(f"{BASE_KEY} cycle: {chain}")
        tree = _load_tree(path, (*stack, filename), loader)
        merged = _deep_merge(merged, tree.data)
        sources.update(tree.sources)
        plugins.extend(tree.plugins)

    if PLUGINS_KEY in raw:
        own = _coerce([""], raw[PLUGINS_KEY], PLUGINS_KEY, f"file '{filename}'")
        plugins.extend((m, filename) for m in own or ())
    merged = _deep_merge(merged, raw)
    sources.update(dict.fromkeys(_flatten(raw), filename))
    return _YamlTree(merged, sources, plugins, filename)


# ---------------------------------------------------------------------------------------
# Type checking
# ---------------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def _check_plain(value: Any, key: str, source: str) -> Any:
    """Checks that ``value`` holds only types a CfgNode leaf may hold (dicts become nodes)."""
    if isinstance(value, dict):
        return {k: _check_plain(v, f"{key}.{k}", source) for k, v in value.items()}
    if type(value) not in _LEAF_TYPES:
        raise ConfigTypeError(
            f"Config key '{key}' (from {source}) got {_describe(value)}; values must be "
            "str, int, float, bool, null, lists or mappings (quote dates and the like)"
        )
    if isinstance(value, (list, tuple)):
        return type(value)(_check_plain(v, f"{key}[{i}]", source) for i, v in enumerate(value))
    return value


def _string_for_list_error(key: str, value: str, default: Sequence[Any], source: str) -> Exception:
    items = [p.strip() for p in value.split(",") if p.strip()] or [value]
    what = _LIST_ITEM_NAMES.get(key)
    if what is None:
        kinds = {type(x).__name__ for x in default}
        what = f"{kinds.pop()}" if len(kinds) == 1 else "values"
    return ConfigTypeError(
        f"{key} must be a list of {what}, e.g. {items!r} (YAML: [{', '.join(items)}]); "
        f"got the string {value!r} (from {source})"
    )


def _coerce(default: Any, value: Any, key: str, source: str) -> Any:
    """Returns ``value`` converted to the type of ``default``, or raises ConfigTypeError.

    Rules (yacs-compatible): a None default accepts anything, None is accepted for any leaf,
    int is accepted (and converted) for float, list and tuple are interchangeable (converted to
    the default's type, elements checked against a homogeneous default), nothing else converts.
    """
    if default is None or value is None:
        return _check_plain(value, key, source)
    if isinstance(default, (list, tuple)):
        if isinstance(value, str):
            raise _string_for_list_error(key, value, default, source)
        if isinstance(value, (list, tuple)):
            kinds = {type(x) for x in default}
            item_default = default[0] if len(kinds) == 1 else None
            if isinstance(item_default, (list, tuple, dict)):
                item_default = None  # nested lists: only plain types are checked
            return type(default)(
                _coerce(item_default, v, f"{key}[{i}]", source) for i, v in enumerate(value)
            )
        expected = f"a list (e.g. [{value!r}])" if type(value) in _LEAF_TYPES else "a list"
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "bool (true/false)"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "int"
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        expected = "float (int accepted)"
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        expected = "str"
    else:
        return _check_plain(value, key, source)
    raise ConfigTypeError(
        f"Config key '{key}' (from {source}) expects {expected}, got {_describe(value)}"
    )


def _suggest(key: str, candidates: Sequence[str]) -> str | None:
    """The valid full key closest to ``key`` (case-insensitive), or None."""
    upper = {c.upper(): c for c in candidates}
    match = difflib.get_close_matches(key.upper(), list(upper), n=1, cutoff=0.6)
    if match:
        return upper[match[0]]
    # "BASE_LR" at the wrong level: same last component somewhere else.
    last = key.upper().rsplit(".", 1)[-1]
    same_leaf = [c for u, c in upper.items() if u.rsplit(".", 1)[-1] == last]
    return same_leaf[0] if len(same_leaf) == 1 else None


# ---------------------------------------------------------------------------------------
# CfgNode
# ---------------------------------------------------------------------------------------
class CfgNode(_FvCfgNode):
    """A node of the config tree: a dict with attribute access, typed by its defaults.

    Example::

        cfg = get_cfg()
        cfg.merge_from_file("configs/cityscapes/panoptic_deeplab.yaml")
        cfg.merge_from_list(["SOLVER.BASE_LR", "0.02", "SOLVER.MAX_ITER=500"])
        print(cfg.dump())
    """

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> dict[str, Any]:
        """Reads a YAML file merged with its ``_BASE_`` chain (fvcore's API, safe YAML only).

        Args:
            filename: Path or URL of the YAML file.
            allow_unsafe: Must be False; unsafe YAML is not supported.

        Returns:
            The merged mapping, without ``_BASE_`` keys.
        """
        _reject_unsafe(allow_unsafe)
        return _load_tree(filename).data

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merges a YAML file and its ``_BASE_`` chain into this config, type-checked.

        Args:
            cfg_filename: Path or URL of the YAML file.
            allow_unsafe: Must be False; unsafe YAML is not supported.

        Raises:
            FileNotFoundError: The file, or a base (named with the file including it), is missing.
            UnknownConfigKeyError: A key is not declared; names the key, file and closest key.
            ConfigTypeError: A value has the wrong type; names the key, file, both types.
            ConfigError: The YAML is malformed or uses a Python/custom tag.
        """
        from panoptic2.utils.plugins import loaded_plugins  # late: utils may import config

        _reject_unsafe(allow_unsafe)
        tree, _ = _read_config_tree(cfg_filename, (), "auto")
        missing = [m for m, _ in tree.plugins if m not in loaded_plugins()]
        hint = (
            f" The file names PLUGINS {missing} that are not imported yet; load it with "
            "panoptic2.config.load_config(), which imports them before building the defaults."
            if missing
            else ""
        )
        self._merge_checked(tree.data, tree.source_of, unknown_hint=hint)

    def merge_from_list(self, cfg_list: Sequence[Any]) -> None:
        """Merges command-line overrides into this config, type-checked.

        Tokens are ``KEY VALUE`` pairs (Detectron2) or single ``KEY=VALUE`` tokens, mixed
        freely. A token read where a key is expected is split at its first ``=`` if it has one;
        a token read as a value is never split. String values are parsed as YAML literals
        (safely: ``0.1`` -> float, ``[a, b]`` -> list, ``null`` -> None, empty -> ``""``);
        for keys whose default is a string, a scalar stays the text that was typed.

        Args:
            cfg_list: e.g. ``["SOLVER.BASE_LR", "0.1", "DATASETS.TRAIN=[a, b]"]``.
        """
        data: dict[str, Any] = {}
        for key, raw in _split_overrides(cfg_list):
            *parents, leaf = key.split(".")
            node: Any = self
            for part in parents:
                node = node.get(part) if isinstance(node, Mapping) else None
            default = node.get(leaf) if isinstance(node, Mapping) else None
            target = data
            for part in parents:
                if not isinstance(target.get(part), dict):
                    target[part] = {}
                target = target[part]
            target[leaf] = _decode_value(raw, default)
        self._merge_checked(data, lambda _key: _COMMAND_LINE)

    def merge_from_other_cfg(self, cfg_other: Mapping[str, Any]) -> None:
        """Merges another config (or mapping) into this one, type-checked.

        Args:
            cfg_other: A CfgNode or a plain nested mapping.
        """
        self._merge_checked(_to_plain(cfg_other), lambda _key: "merge_from_other_cfg()")

    def dump(self, **kwargs: Any) -> str:
        """Serialises the config to YAML that :meth:`merge_from_file` reads back to an equal one.

        Args:
            **kwargs: Passed to :func:`yaml.dump` (e.g. ``sort_keys=True``).

        Returns:
            The YAML text. Keys keep their declaration order; tuples are written as lists
            (they are converted back by the defaults' types on load).
        """
        kwargs.setdefault("sort_keys", False)
        kwargs.setdefault("default_flow_style", False)
        kwargs.setdefault("allow_unicode", True)
        return yaml.dump(_to_plain(self), Dumper=_SafeDumper, **kwargs)

    def _merge_checked(
        self,
        data: Mapping[str, Any],
        source_of: Callable[[str], str],
        unknown_hint: str = "",
    ) -> None:
        """Validates all of ``data`` against this node, then applies it (all or nothing)."""
        if self.is_frozen():
            raise AttributeError("Cannot merge into a frozen CfgNode; defrost() it first")
        plan: list[tuple[_YacsCfgNode, str, Any]] = []
        _plan_merge(self, data, "", source_of, list(_flatten(self)), unknown_hint, plan)
        for node, key, value in plan:
            if isinstance(value, dict):
                value = type(self)(value, new_allowed=node.is_new_allowed())
            dict.__setitem__(node, key, value)


def _plan_merge(
    node: _YacsCfgNode,
    data: Mapping[str, Any],
    prefix: str,
    source_of: Callable[[str], str],
    all_keys: list[str],
    unknown_hint: str,
    plan: list[tuple[_YacsCfgNode, str, Any]],
) -> None:
    """Checks ``data`` against ``node`` recursively; appends ``(node, key, value)`` to set."""
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(
                f"Config keys must be strings, got {_describe(key)} under "
                f"'{prefix or '<root>'}' (from {source_of(prefix.rstrip('.'))})"
            )
        full = prefix + key
        if key == BASE_KEY:
            raise ConfigError(f"'{full}' is only allowed at the top of a YAML file")
        if key not in node:
            if node.is_new_allowed():
                plan.append((node, key, _check_plain(value, full, source_of(full))))
                continue
            # Report a leaf so that a misspelled group ("SOLVR.BASE_LR") is matched whole.
            leaf = prefix + next(iter(_flatten({key: value})))
            suggestion = _suggest(leaf, all_keys)
            hint = f" Did you mean '{suggestion}'?" if suggestion else ""
            raise UnknownConfigKeyError(
                f"Unknown config key '{leaf}' (from {source_of(leaf)}).{hint}{unknown_hint}"
            )
        default = node[key]
        if isinstance(default, _YacsCfgNode):
            if value is None:  # "SOLVER:" with every child commented out
                continue
            if not isinstance(value, Mapping):
                raise ConfigTypeError(
                    f"Config key '{full}' (from {source_of(full)}) is a group of keys "
                    f"({', '.join(list(default)[:4])}, ...), got {_describe(value)}"
                )
            _plan_merge(default, value, full + ".", source_of, all_keys, unknown_hint, plan)
        else:
            plan.append((node, key, _coerce(default, value, full, source_of(full))))


def _reject_unsafe(allow_unsafe: bool) -> None:
    if allow_unsafe:
        raise ValueError("allow_unsafe=True is not supported: config YAML is read safely only")


def _to_plain(value: Any) -> Any:
    """CfgNode/mapping -> dict, tuple -> list, recursively (what safe YAML can write)."""
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _split_overrides(cfg_list: Sequence[Any]) -> list[tuple[str, Any]]:
    """Splits override tokens into ``(key, raw value)`` pairs; see merge_from_list."""
    if isinstance(cfg_list, str):
        raise TypeError(f"overrides must be a list of tokens, got the string {cfg_list!r}")
    pairs = []
    tokens = list(cfg_list)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not isinstance(token, str):
            raise ConfigError(f"Override key must be a string, got {_describe(token)}")
        if "=" in token:
            key, raw = token.split("=", 1)
            i += 1
        elif i + 1 < len(tokens):
            key, raw = token, tokens[i + 1]
            i += 2
        else:
            raise ConfigError(
                f"Override '{token}' (from {_COMMAND_LINE}) has no value; write 'KEY VALUE' "
                "or 'KEY=VALUE'"
            )
        key = key.strip()
        if key == BASE_KEY:
            raise ConfigError(f"'{BASE_KEY}' is only allowed at the top of a YAML file")
        if not _KEY_RE.match(key):
            raise ConfigError(f"Invalid override key '{key}' (from {_COMMAND_LINE})")
        pairs.append((key, raw))
    return pairs


def _decode_value(raw: Any, default: Any) -> Any:
    """Parses a command-line value as a safe YAML literal; see merge_from_list."""
    if not isinstance(raw, str):
        return raw
    if not raw.strip():
        return ""  # `MODEL.WEIGHTS ""` means the empty string, not null
    try:
        value = _parse_yaml(raw, _COMMAND_LINE)
    except ConfigError as e:
        if isinstance(e.__cause__, yaml.constructor.ConstructorError):
            raise
        return raw  # not YAML (e.g. "a: b: c"): the text itself
    if isinstance(default, str) and type(value) in (int, float, bool):
        return raw  # "1.0" for a str key is the text the user typed
    return value


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------
def _read_config_tree(
    filename: str, overrides: Sequence[str], config_format: str
) -> tuple[_YamlTree, Sequence[str]]:
    """The file's tree and the overrides left to merge, a Detectron2 file translated."""
    from panoptic2.compat.detectron2_config import load_detectron2_tree  # late: imports data

    translated = load_detectron2_tree(filename, overrides, config_format)
    return translated if translated is not None else (_load_tree(filename), overrides)


def load_config(
    config_file: str | None,
    overrides: Sequence[str] = (),
    plugins: Sequence[str] = (),
    allowed_plugins: Sequence[str] = (),
    config_format: str = "auto",
) -> CfgNode:
    """Builds the config of a run: plugins, defaults, the file, the overrides; frozen.

    Steps: read ``config_file`` and its ``_BASE_`` chain as raw YAML; import (with
    :func:`panoptic2.utils.plugins.load_plugins`) ``plugins``, every ``PLUGINS`` entry of every
    file in the chain and the ``PLUGINS`` overrides, so that their config extensions are
    registered; then :func:`get_cfg`, merge the file and the overrides (type-checked) and set
    ``PLUGINS`` to all plugins named anywhere, so spawned workers can import the same ones.
    A file's ``PLUGINS`` are imported only when trusted (see :mod:`panoptic2.utils.plugins`).

    Args:
        config_file: YAML path or URL; None or "" for the defaults plus overrides.
        overrides: Command-line tokens, see :meth:`CfgNode.merge_from_list`.
        plugins: Extra plugin modules (e.g. from ``--plugin``), imported first.
        allowed_plugins: Modules a config file may name in ``PLUGINS`` wherever they live
            (``--allow-plugin``).
        config_format: "panoptic2", "detectron2" (the file and the overrides are Detectron2's,
            translated by :mod:`panoptic2.compat.detectron2_config`) or "auto" (Detectron2's
            when its ``_BASE_`` chain sets ``VERSION: 2``).

    Returns:
        The frozen config.
    """
    from panoptic2.utils.plugins import load_plugins  # late: panoptic2.utils may import config

    from .defaults import get_cfg  # late: defaults.py imports this module

    plugin_names = list(_coerce([""], list(plugins), "plugins", "the plugins argument"))
    load_plugins(plugin_names, requested_by="the plugins argument of load_config (--plugin)")
    tree = None
    if config_file:
        tree, overrides = _read_config_tree(config_file, overrides, config_format)
    for module, file in tree.plugins if tree else ():
        load_plugins(
            [module], requested_by=f"PLUGINS of '{file}'", config_file=file, allowed=allowed_plugins
        )
        plugin_names.append(module)
    for key, raw in _split_overrides(overrides):
        if key == PLUGINS_KEY:
            value = _coerce([""], _decode_value(raw, []), PLUGINS_KEY, _COMMAND_LINE)
            names = list(value or ())
            load_plugins(names, requested_by=f"{PLUGINS_KEY} on the command line")
            plugin_names.extend(names)

    cfg = get_cfg()
    if tree is not None:
        cfg._merge_checked(tree.data, tree.source_of)
    cfg.merge_from_list(overrides)
    cfg.PLUGINS = list(dict.fromkeys(plugin_names))
    cfg.freeze()
    return cfg
