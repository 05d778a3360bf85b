"""The defaults: every config key the code reads is declared, and each node is declared once.

The key test parses (never imports) the sources of ``panoptic2/``, ``projects/`` and ``tools/``
and collects the config paths they read through ``cfg`` (``cfg.MODEL.RESNETS.DEPTH``,
``self.cfg.TEST.EVAL_PERIOD``, ``cfg.TEST.get("KEY", default)``, and simple aliases such as
``pd = cfg.MODEL.PANOPTIC_DEEPLAB`` followed by ``pd.STUFF_AREA``). A read of an undeclared key
is an AttributeError (or, through ``.get``, a silently ignored setting) that only shows on the
code path that reaches it; this test finds it without running that path.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import panoptic2.testing.toy as toy_plugin
import projects.DeepLab.deeplab.config as deeplab_config
from panoptic2.config import CfgNode, add_config_extension, get_cfg

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("panoptic2", "projects", "tools")
DEFAULTS_PY = REPO / "panoptic2" / "config" / "defaults.py"

# Attribute names that are CfgNode (and dict) methods or attributes, not config keys: a chain
# ends before them (``cfg.MODEL.clone()`` reads the node ``MODEL``). Upper-case class constants
# of fvcore's CfgNode (IMMUTABLE, NEW_ALLOWED, ...) are left out so that they still count as keys.
_NODE_ATTRS = frozenset(name for name in dir(CfgNode) if not name.isupper()) | {
    "clone",
    "dump",
    "merge_from_file",
    "merge_from_list",
    "merge_from_other_cfg",
    "freeze",
    "defrost",
    "get",
    "is_frozen",
    "items",
    "keys",
    "values",
    "set_new_allowed",
    "__class__",
}

# "path:KEY" of reads that are not config reads although they look like them; each with the
# reason. Undeclared config keys are never listed here: declare them in defaults.py instead.
_NOT_CONFIG_READS: dict[str, str] = {}


# ---------------------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------------------
def _is_root(node: ast.AST) -> bool:
    """``cfg`` or ``<name>.cfg`` (``self.cfg``, ``trainer.cfg``)."""
    if isinstance(node, ast.Name):
        return node.id == "cfg"
    return (
        isinstance(node, ast.Attribute) and node.attr == "cfg" and isinstance(node.value, ast.Name)
    )


class _ConfigReads(ast.NodeVisitor):
    """Collects (dotted key, line) of every config read in one module, in source order.

    Only maximal chains are reported (``cfg.MODEL.RESNETS.DEPTH`` gives ``MODEL.RESNETS.DEPTH``,
    not also ``MODEL``); an alias assignment reports the node it names. Aliases are names bound
    to a config chain by a plain assignment; they live in the function that binds them (and the
    functions nested in it) and are forgotten when the name is bound to anything else.
    """

    def __init__(self) -> None:
        self.reads: list[tuple[str, int]] = []
        self._aliases: dict[str, tuple[str, ...]] = {}

    def _chain(self, node: ast.AST) -> tuple[str, ...] | None:
        """The config path ``node`` denotes (``()`` for the root), or None if it is none."""
        if _is_root(node):
            return ()
        if isinstance(node, ast.Name):
            return self._aliases.get(node.id)
        if isinstance(node, ast.Attribute) and node.attr not in _NODE_ATTRS:
            base = self._chain(node.value)
            return None if base is None else (*base, node.attr)
        return None

    def _record(self, chain: tuple[str, ...], node: ast.AST) -> None:
        if chain:
            self.reads.append((".".join(chain), node.lineno))

    # --- reads -------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = self._chain(node)
        if chain is None:
            self.generic_visit(node)
        elif isinstance(node.ctx, ast.Load):
            self._record(chain, node)
        else:
            # ``cfg.MODEL.DEVICE = x`` writes a key but reads the node that holds it.
            self._record(chain[:-1], node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            base = self._chain(func.value)
            if base is not None:
                self._record((*base, node.args[0].value), node)
                for arg in [*node.args[1:], *node.keywords]:
                    self.visit(arg)
                return
        self.generic_visit(node)

    # --- aliases -----------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            self._aliases.pop(node.id, None)

    def _bind(self, targets: list[ast.expr], value: ast.expr | None) -> None:
        if value is not None:
            self.visit(value)
        for target in targets:
            self.visit(target)
        chain = None if value is None else self._chain(value)
        if chain is not None:
            for target in targets:
                if isinstance(target, ast.Name):
                    self._aliases[target.id] = chain

    def visit_Assign(self, node: ast.Assign) -> None:
        self._bind(node.targets, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.annotation)
        self._bind([node.target], node.value)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._bind([node.target], node.value)

    # --- scopes ------------------------------------------------------------------------
    def _scope(self, params: ast.arguments | None, body: list[ast.AST]) -> None:
        outer = self._aliases
        self._aliases = dict(outer)
        if params is not None:
            for arg in [*params.posonlyargs, *params.args, *params.kwonlyargs]:
                self._aliases.pop(arg.arg, None)
            for arg in (params.vararg, params.kwarg):
                if arg is not None:
                    self._aliases.pop(arg.arg, None)
        for stmt in body:
            self.visit(stmt)
        self._aliases = outer

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self._scope(node.args, node.body)
        self._aliases.pop(node.name, None)

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self._scope(node.args, [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(expr)
        self._scope(None, node.body)
        self._aliases.pop(node.name, None)


def collect_config_reads(source: str) -> list[tuple[str, int]]:
    """(dotted key, line) of every config read in ``source``, in source order."""
    collector = _ConfigReads()
    collector.visit(ast.parse(source))
    return collector.reads


def _source_files() -> list[Path]:
    files = []
    for top in SOURCE_DIRS:
        files.extend(p for p in sorted((REPO / top).rglob("*.py")) if "build" not in p.parts)
    return files


def _is_declared(cfg: CfgNode, key: str) -> bool:
    """Whether ``key`` names an existing node or key of ``cfg``."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            return False
        node = node[part]
    return True


def _full_defaults() -> CfgNode:
    """The defaults with the extensions of every plugin in the repository.

    The extensions are registered here rather than relied upon from import: the config tests'
    conftest gives each test an empty extension list.
    """
    add_config_extension(toy_plugin.add_toy_config)
    add_config_extension(deeplab_config.add_deeplab_config)
    return get_cfg()


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------
_SNIPPET = textwrap.dedent(
    """
    def build(cfg, cfg_clip):
        depth = cfg.MODEL.RESNETS.DEPTH
        typo = cfg.MODEL.RESNETS.DEPHT
        pd = cfg.MODEL.PANOPTIC_DEEPLAB
        area = pd.STUFF_AREA
        write = cfg.TEST.get("WRITE_PREDICTIONS", False)
        missing = cfg.TEST.get("NOT_A_KEY")
        enabled = cfg_clip.ENABLED
        cfg = cfg.clone()
        cfg.MODEL.DEVICE = "cpu"
        pd = make_other()
        other = pd.STUFF_AREA
        return self.cfg.SOLVER.BASE_LR + len(cfg.keys())

    def elsewhere(x):
        return pd.CENTER_THRESHOLD + trainer.cfg.INPUT.CROP.SIZE[0]
    """
)


def test_collector_finds_reads_aliases_and_get():
    reads = collect_config_reads(_SNIPPET)
    assert reads == [
        ("MODEL.RESNETS.DEPTH", 3),
        ("MODEL.RESNETS.DEPHT", 4),
        ("MODEL.PANOPTIC_DEEPLAB", 5),
        ("MODEL.PANOPTIC_DEEPLAB.STUFF_AREA", 6),
        ("TEST.WRITE_PREDICTIONS", 7),
        ("TEST.NOT_A_KEY", 8),
        ("MODEL", 11),
        ("SOLVER.BASE_LR", 14),
        ("INPUT.CROP.SIZE", 17),
    ]
    cfg = get_cfg()
    undeclared = [key for key, _ in reads if not _is_declared(cfg, key)]
    assert undeclared == ["MODEL.RESNETS.DEPHT", "TEST.NOT_A_KEY"]


def test_every_config_read_is_declared():
    cfg = _full_defaults()
    undeclared = []
    num_reads = 0
    for path in _source_files():
        rel = path.relative_to(REPO).as_posix()
        for key, line in collect_config_reads(path.read_text(encoding="utf-8")):
            num_reads += 1
            if not _is_declared(cfg, key) and f"{rel}:{key}" not in _NOT_CONFIG_READS:
                undeclared.append(f"{rel}:{line}: {key}")
    assert num_reads > 100, "the collector found almost no reads; is it still working?"
    message = "Config keys read but not declared in panoptic2/config/defaults.py:\n"
    assert not undeclared, message + "\n".join(undeclared)


def _cfg_path(node: ast.AST) -> tuple[str, ...] | None:
    """``_C.A.B`` -> ("A", "B"); None if ``node`` is not an attribute chain on ``_C``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "_C" and parts:
        return tuple(reversed(parts))
    return None


def _is_node_creation(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in ("CN", "CfgNode")
    )


def declaration_problems(source: str) -> list[str]:
    """Nodes of ``_C`` created more than once, or whose keys are not declared in one block."""
    problems = []
    created: dict[tuple[str, ...], int] = {}
    # For each assignment to _C.*, in source order: the nodes whose block it belongs to
    # (every node above the assigned path, and the path itself when it creates a node).
    blocks: list[tuple[int, set[tuple[str, ...]]]] = []
    for stmt in ast.parse(source).body:
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or stmt.value is None:
            continue
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for path in filter(None, map(_cfg_path, targets)):
            nodes = {path[:i] for i in range(1, len(path))}
            if _is_node_creation(stmt.value):
                nodes.add(path)
                if path in created:
                    problems.append(
                        f"node {'.'.join(path)} created twice (lines {created[path]} and "
                        f"{stmt.lineno})"
                    )
                created.setdefault(path, stmt.lineno)
            blocks.append((stmt.lineno, nodes))
    closed: dict[tuple[str, ...], int] = {}
    open_nodes: set[tuple[str, ...]] = set()
    for lineno, nodes in blocks:
        for node in open_nodes - nodes:
            closed.setdefault(node, lineno)
        for node in sorted(nodes & set(closed)):
            problems.append(
                f"node {'.'.join(node)} reopened at line {lineno} after other keys started at "
                f"line {closed.pop(node)}"
            )
        open_nodes = nodes
    return problems


def test_declaration_problems_detects_reopened_and_duplicate_nodes():
    source = textwrap.dedent(
        """
        _C = CN()
        _C.A = CN()
        _C.A.X = 1
        _C.A.SUB = CN()
        _C.A.SUB.Y = 2
        _C.A.Z = 3
        _C.B = CN()
        _C.B.X = 1
        _C.A.W = 4
        _C.B = CN()
        """
    )
    assert declaration_problems(source) == [
        "node B created twice (lines 8 and 11)",
        "node A reopened at line 10 after other keys started at line 8",
        "node B reopened at line 11 after other keys started at line 10",
    ]


def test_defaults_declare_each_node_once_in_one_block():
    problems = declaration_problems(DEFAULTS_PY.read_text(encoding="utf-8"))
    assert not problems, "panoptic2/config/defaults.py:\n" + "\n".join(problems)
