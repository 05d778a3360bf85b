"""``@configurable``: one constructor usable both with explicit arguments and with a config.

Classes and functions keep plain, typed keyword arguments (easy to call, test and read); a
separate ``from_config`` turns a config into those arguments. The decorated callable then
accepts either form, with Detectron2's semantics::

    class Head(nn.Module):
        @configurable
        def __init__(self, *, in_channels: int, num_classes: int, dropout: float = 0.0):
            ...

        @classmethod
        def from_config(cls, cfg, in_channels):
            return {"in_channels": in_channels, "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES}

    Head(in_channels=256, num_classes=19)  # explicit
    Head(cfg, 256)  # from_config(cfg, 256)
    Head(cfg, in_channels=256, dropout=0.1)  # dropout is not a from_config argument: it
    # is passed to __init__ directly and wins over anything from_config returned

    @configurable(from_config=lambda cfg: {"size": cfg.INPUT.MIN_SIZE_TEST})
    def build_resize(size: int): ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from yacs.config import CfgNode as _YacsCfgNode

__all__ = ["configurable"]

F = TypeVar("F", bound=Callable[..., Any])


def _called_with_cfg(*args: Any, **kwargs: Any) -> bool:
    """Whether a call passes a config (first positional argument or ``cfg=``)."""
    if args and isinstance(args[0], _YacsCfgNode):
        return True
    return isinstance(kwargs.get("cfg"), _YacsCfgNode)


def _check_cfg_first(from_config: Callable[..., Any], owner: str) -> Mapping[str, Any]:
    """Returns from_config's parameters; raises TypeError unless the first is named ``cfg``."""
    name = getattr(from_config, "__qualname__", repr(from_config))
    params = inspect.signature(from_config).parameters
    first = next(iter(params), None)
    if first != "cfg":
        raise TypeError(
            f"{name}() (from_config of {owner}) must take 'cfg' as its first argument, "
            f"got {first!r}"
        )
    return params


def _args_from_config(
    from_config: Callable[..., Any], owner: str, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """Calls ``from_config`` with the arguments it accepts and adds the remaining kwargs.

    Args:
        from_config: The function (or bound classmethod) mapping a config to arguments.
        owner: Name of the decorated callable, for error messages.
        *args: The call's positional arguments (the config first, unless given as ``cfg=``).
        **kwargs: The call's keyword arguments.

    Returns:
        The keyword arguments for the decorated callable. Keyword arguments that
        ``from_config`` does not accept are passed through and override its result.
    """
    name = getattr(from_config, "__qualname__", repr(from_config))
    params = _check_cfg_first(from_config, owner)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        result = from_config(*args, **kwargs)
        extra: dict[str, Any] = {}
    else:
        supported = {k: v for k, v in kwargs.items() if k in params}
        extra = {k: v for k, v in kwargs.items() if k not in params}
        result = from_config(*args, **supported)
    if not isinstance(result, Mapping):
        raise TypeError(f"{name}() must return a dict of arguments for {owner}, got {result!r}")
    return {**result, **extra}


@overload
def configurable(init_func: F) -> F: ...


@overload
def configurable(
    init_func: None = None, *, from_config: Callable[..., Mapping[str, Any]] | None = None
) -> Callable[[F], F]: ...


def configurable(init_func=None, *, from_config=None):
    """Lets a class ``__init__`` or a function be called with a config as well as with arguments.

    On ``__init__`` (``@configurable``): the class must define a ``from_config(cls, cfg, ...)``
    classmethod returning a dict of ``__init__`` keyword arguments. ``Cls(cfg, ...)`` calls it;
    any other call goes to ``__init__`` unchanged.

    On a function (``@configurable(from_config=fn)``): ``fn(cfg, ...)`` returns the function's
    keyword arguments; the wrapper exposes it as ``.from_config``.

    A call is "with a config" when its first positional argument (or ``cfg=``) is a CfgNode.
    Keyword arguments that ``from_config`` does not accept are passed on and override its
    result.

    Args:
        init_func: The ``__init__`` being decorated (when used without parentheses).
        from_config: For functions: the config-to-arguments function.

    Returns:
        The wrapped ``__init__`` or a decorator for a function.

    Raises:
        TypeError: Misuse (e.g. a plain function without ``from_config``), a class without a
            ``from_config`` classmethod, or a ``from_config`` whose first argument is not
            ``cfg``.
    """
    if init_func is not None:
        if from_config is not None:
            raise TypeError("@configurable on __init__ takes no from_config=; define a classmethod")
        if not inspect.isfunction(init_func) or init_func.__name__ != "__init__":
            raise TypeError(
                f"@configurable without arguments decorates a class __init__, got {init_func!r}; "
                "decorate functions with @configurable(from_config=...)"
            )

        @functools.wraps(init_func)
        def wrapped_init(self: Any, *args: Any, **kwargs: Any) -> None:
            if not _called_with_cfg(*args, **kwargs):
                init_func(self, *args, **kwargs)
                return
            cls_name = type(self).__qualname__
            from_cfg = getattr(type(self), "from_config", None)
            if from_cfg is None or not inspect.ismethod(from_cfg):
                raise TypeError(
                    f"{cls_name} uses @configurable, so it needs a 'from_config(cls, cfg, ...)' "
                    "classmethod"
                )
            explicit = _args_from_config(from_cfg, f"{cls_name}.__init__", *args, **kwargs)
            init_func(self, **explicit)

        return wrapped_init

    if from_config is None:
        return configurable  # "@configurable()" on __init__
    if not callable(from_config):
        raise TypeError(f"from_config must be callable, got {from_config!r}")
    _check_cfg_first(from_config, "the decorated function")

    def decorator(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@configurable(from_config=...) decorates a callable, got {func!r}")

        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if _called_with_cfg(*args, **kwargs):
                explicit = _args_from_config(from_config, func.__qualname__, *args, **kwargs)
                return func(**explicit)
            return func(*args, **kwargs)

        wrapped.from_config = from_config  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator
