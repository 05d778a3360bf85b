import pytest

from panoptic2.config import configurable, get_cfg


class Head:
    @configurable
    def __init__(self, *, num_classes: int, in_channels: int = 3, dropout: float = 0.0):
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.dropout = dropout

    @classmethod
    def from_config(cls, cfg, in_channels=7):
        return {
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "in_channels": in_channels,
            "dropout": 0.5,
        }


def _state(obj):
    return (obj.num_classes, obj.in_channels, obj.dropout)


def test_class_three_ways():
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 11
    assert _state(Head(cfg)) == (11, 7, 0.5)
    # A from_config argument goes to from_config (positionally or by name) ...
    assert _state(Head(cfg, 4)) == (11, 4, 0.5)
    assert _state(Head(cfg, in_channels=4)) == (11, 4, 0.5)
    # ... any other keyword goes to __init__ and overrides what from_config returned.
    assert _state(Head(cfg, dropout=0.1, num_classes=2)) == (2, 7, 0.1)
    assert _state(Head(cfg=cfg)) == (11, 7, 0.5)
    # Without a config, the plain constructor.
    assert _state(Head(num_classes=1, in_channels=2)) == (1, 2, 0.0)
    with pytest.raises(TypeError):
        Head(1, 2)  # keyword-only arguments stay keyword-only


def test_subclass_overrides_from_config():
    class Small(Head):
        @classmethod
        def from_config(cls, cfg):
            return {"num_classes": 1}

    assert _state(Small(get_cfg())) == (1, 3, 0.0)


def test_from_config_with_var_kwargs_receives_everything():
    class Flexible:
        @configurable
        def __init__(self, a, b=0):
            self.a, self.b = a, b

        @classmethod
        def from_config(cls, cfg, **kwargs):
            return {"a": cfg.SEED, "b": kwargs.get("b", 0) * 10}

    obj = Flexible(get_cfg(), b=2)
    assert (obj.a, obj.b) == (-1, 20)


def test_function_with_from_config():
    def size_from_config(cfg, scale=1):
        return {"size": cfg.INPUT.MIN_SIZE_TEST * scale}

    @configurable(from_config=size_from_config)
    def build(size, flip=False):
        return size, flip

    assert build(get_cfg()) == (512, False)
    assert build(get_cfg(), scale=2, flip=True) == (1024, True)
    assert build(3) == (3, False)
    assert build(size=4, flip=True) == (4, True)
    assert build.from_config is size_from_config
    assert build.__name__ == "build"


def test_first_argument_must_be_cfg():
    def bad(config):
        return {}

    with pytest.raises(TypeError, match=r"'cfg' as its first argument, got 'config'"):
        configurable(from_config=bad)

    class BadClass:
        @configurable
        def __init__(self, x=0):
            self.x = x

        @classmethod
        def from_config(cls, config):
            return {"x": 1}

    with pytest.raises(TypeError, match=r"BadClass.from_config.*'cfg' as its first argument"):
        BadClass(get_cfg())
    assert BadClass(x=2).x == 2


def test_misuse_errors():
    class NoFromConfig:
        @configurable
        def __init__(self, x=0):
            self.x = x

    with pytest.raises(TypeError, match="from_config"):
        NoFromConfig(get_cfg())

    class ReturnsList:
        @configurable
        def __init__(self, x=0):
            self.x = x

        @classmethod
        def from_config(cls, cfg):
            return [1]

    with pytest.raises(TypeError, match="must return a dict"):
        ReturnsList(get_cfg())

    def not_init(x):
        return x

    with pytest.raises(TypeError, match="__init__"):
        configurable(not_init)
