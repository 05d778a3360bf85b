"""Reading Detectron2 YAML config files as Detectron2 reads them, without running their code.

Two things set a Detectron2 YAML file apart from one of ours, besides its keys:

* **Python literals in strings.** Detectron2's ``CfgNode`` (yacs) passes every string value
  through :func:`ast.literal_eval`, so ``SIZE: (512, 1024)`` is the tuple ``(512, 1024)``
  and ``TRAIN: ("coco_2017_train",)`` a one-name tuple, while ``FORMAT: "RGB"`` stays a
  string. :func:`decode_value` does the same.
* **``!!python/object/apply:eval``.** Detectron2 loads YAML unsafely, and two of its configs
  compute a list with it (``[int(x * 0.1 * 640) for x in range(5, 16)]``). Nothing is ever
  passed to :func:`eval` here: :class:`Detectron2YamlLoader` reads that tag through
  :func:`evaluate_expression`, which computes numbers, lists, tuples, arithmetic,
  ``int``/``float``/``round``/``range`` and single-loop list comprehensions, and refuses any
  other Python. Every other Python tag is refused as in our own files.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from panoptic2.config.config import ConfigError, _SafeLoader

__all__ = ["Detectron2YamlLoader", "decode_value", "evaluate_expression"]

_EVAL_TAG = "tag:yaml.org,2002:python/object/apply:eval"
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"int": int, "float": float, "round": round}
# Bounds that keep a config expression from allocating or computing without limit.
_MAX_STEPS = 100_000
_MAX_EXPONENT = 64


class _Evaluator:
    """Evaluates the restricted expression language (see the module doc) within a budget."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.steps_left = _MAX_STEPS

    def fail(self, why: str) -> ConfigError:
        return ConfigError(f"config expression {self.expression!r}: {why}")

    def number(self, node: ast.AST, names: Mapping[str, Any]) -> Any:
        value = self(node, names)
        if type(value) not in (int, float):
            raise self.fail(f"{value!r} is not a number")
        return value

    def __call__(self, node: ast.AST, names: Mapping[str, Any]) -> Any:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise self.fail(f"more than {_MAX_STEPS} steps")
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self(e, names) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.number(node.operand, names))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.number(node.left, names), self.number(node.right, names)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise self.fail(f"exponent {right} is too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            args = [self.number(a, names) for a in node.args]
            if node.func.id == "range":
                if not all(isinstance(a, int) for a in args) or len(range(*args)) > _MAX_STEPS:
                    raise self.fail(f"unsupported range{tuple(args)}")
                return list(range(*args))
            if node.func.id in _FUNCTIONS:
                return _FUNCTIONS[node.func.id](*args)
        if isinstance(node, ast.ListComp) and len(node.generators) == 1:
            loop = node.generators[0]
            if isinstance(loop.target, ast.Name) and not loop.ifs and not loop.is_async:
                values = self(loop.iter, names)
                if isinstance(values, (list, tuple)):
                    return [self(node.elt, {**names, loop.target.id: v}) for v in values]
        raise self.fail(
            f"{ast.unparse(node)!r} is not supported; only numbers, lists, tuples, arithmetic, "
            "int/float/round/range and single-loop list comprehensions are evaluated (no "
            "Python code runs while reading a config)"
        )


def evaluate_expression(expression: str) -> Any:
    """Computes the value of a Detectron2 config's ``!!python/object/apply:eval`` expression.

    Args:
        expression: e.g. ``"[int(x * 0.1 * 640) for x in range(5, 16)]"``.

    Returns:
        The value: a number, list or tuple (nested).

    Raises:
        ConfigError: the expression uses anything outside the supported language.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"config expression {expression!r} is not valid Python: {e}") from e
    evaluator = _Evaluator(expression)
    try:
        return evaluator(tree.body, {})
    except ConfigError:
        raise
    except (ArithmeticError, ValueError, TypeError) as e:
        raise evaluator.fail(str(e)) from e


class Detectron2YamlLoader(_SafeLoader):
    """Our safe YAML loader plus ``!!python/object/apply:eval`` through evaluate_expression."""


def _construct_eval(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    args = loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else None
    if not args or len(args) != 1 or not isinstance(args[0], str):
        raise yaml.constructor.ConstructorError(
            None, None, "!!python/object/apply:eval needs one expression string", node.start_mark
        )
    try:
        return evaluate_expression(args[0])
    except ConfigError as e:
        raise ConfigError(f"{e}{node.start_mark}") from None


Detectron2YamlLoader.add_constructor(_EVAL_TAG, _construct_eval)


def decode_value(value: Any) -> Any:
    """A YAML value as Detectron2's config holds it: strings that are Python literals decoded.

    Args:
        value: A leaf value read from YAML (or a command-line token).

    Returns:
        ``ast.literal_eval(value)`` for a string that is a literal (``"(512, 1024)"`` ->
        ``(512, 1024)``), else ``value`` unchanged.
    """
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value
