"""Tests of panoptic2/compat/detectron2_yaml.py: Detectron2's YAML conventions are read as
Detectron2 reads them, and no Python code runs while reading."""

from __future__ import annotations

import pytest
import yaml

from panoptic2.compat.detectron2_yaml import (
    Detectron2YamlLoader,
    decode_value,
    evaluate_expression,
)
from panoptic2.config import load_config
from panoptic2.config.config import ConfigError

# The two expressions of Detectron2's configs (Base-RetinaNet.yaml and the COCO
# Panoptic-DeepLab config); Python's eval of these constant strings is the reference.
DETECTRON2_EXPRESSIONS = [
    "[int(x * 0.1 * 640) for x in range(5, 16)]",
    "[[x, x * 2**(1.0/3), x * 2**(2.0/3) ] for x in [32, 64, 128, 256, 512 ]]",
]


@pytest.mark.parametrize("expression", DETECTRON2_EXPRESSIONS)
def test_detectron2_expressions_evaluate_as_python_does(expression):
    assert evaluate_expression(expression) == eval(expression)  # noqa: S307 (constant reference)


def test_yaml_tag_is_read_through_the_restricted_evaluator():
    text = 'SIZES: !!python/object/apply:eval ["[int(x * 0.1 * 640) for x in range(5, 16)]"]\n'
    data = yaml.load(text, Loader=Detectron2YamlLoader)
    assert data == {"SIZES": [320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960]}


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo hacked')",
        "open('/etc/passwd').read()",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "[x for x in range(10 ** 9)]",
        "2 ** 100000",
        "[x for x in range(3) if x]",
        "len([1, 2])",
        "lambda: 1",
    ],
)
def test_anything_else_is_refused(expression):
    with pytest.raises(ConfigError, match="config expression"):
        evaluate_expression(expression)


def test_other_python_tags_are_refused():
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load('X: !!python/object/apply:os.system ["echo hacked"]', Loader=Detectron2YamlLoader)
    with pytest.raises(yaml.constructor.ConstructorError, match="one expression"):
        yaml.load("X: !!python/object/apply:eval [1, 2]", Loader=Detectron2YamlLoader)


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("(512, 1024)", (512, 1024)),
        ("('coco_2017_train',)", ("coco_2017_train",)),
        ("RGB", "RGB"),
        ("./output", "./output"),
        ("coco_2017_train", "coco_2017_train"),
        ("1e-4", 1e-4),
        ([1, "2"], [1, "2"]),
        (3, 3),
    ],
)
def test_strings_that_are_python_literals_are_decoded(value, decoded):
    assert decode_value(value) == decoded


def test_work_is_bounded():
    with pytest.raises(ConfigError, match="steps"):
        evaluate_expression("[[y for y in range(1000)] for x in range(1000)]")
    with pytest.raises(ConfigError, match="division by zero"):
        evaluate_expression("1 / 0")


def test_a_refused_expression_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        'VERSION: 2\nINPUT:\n  MIN_SIZE_TRAIN: !!python/object/apply:eval ["open(1)"]\n'
    )
    with pytest.raises(ConfigError, match=r"'open\(1\)' is not supported.*bad\.yaml\", line 3"):
        load_config(str(path))
