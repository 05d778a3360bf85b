"""Evaluator selection from dataset metadata through the registry."""

import pytest

from panoptic2.config import get_cfg
from panoptic2.data import MetadataCatalog
from panoptic2.evaluation import (
    EVALUATOR_REGISTRY,
    DatasetEvaluator,
    DatasetEvaluators,
    build_evaluator,
)
from panoptic2.testing.processes import run_fresh_python


class _Constant(DatasetEvaluator):
    def __init__(self, cfg, dataset_name, output_dir, task="a"):
        self.task = task
        self.seen = 0

    def process(self, inputs, outputs):
        self.seen += len(inputs)

    def evaluate(self):
        return {self.task: {"seen": self.seen}}


@pytest.fixture
def registry():
    EVALUATOR_REGISTRY.register(_Constant)
    EVALUATOR_REGISTRY.register(lambda cfg, n, o: _Constant(cfg, n, o, task="b"), name="_ConstantB")
    yield
    for name in ("_Constant", "_ConstantB"):
        EVALUATOR_REGISTRY.remove(name)
    for name in ("ev_one", "ev_two", "ev_none", "ev_typo"):
        MetadataCatalog.remove(name)


def test_metadata_names_the_evaluators(registry):
    MetadataCatalog.get("ev_one").set(evaluators=["_Constant"])
    assert isinstance(build_evaluator(get_cfg(), "ev_one"), _Constant)
    MetadataCatalog.get("ev_two").set(evaluators=["_Constant", "_ConstantB"])
    combined = build_evaluator(get_cfg(), "ev_two")
    assert isinstance(combined, DatasetEvaluators)
    combined.process([{}, {}], [{}, {}])
    assert combined.evaluate() == {"a": {"seen": 2}, "b": {"seen": 2}}


def test_missing_or_unknown_evaluator_is_a_clear_error(registry):
    MetadataCatalog.get("ev_none")
    with pytest.raises(KeyError, match=r"Dataset 'ev_none' names no evaluators.*_Constant"):
        build_evaluator(get_cfg(), "ev_none")
    MetadataCatalog.get("ev_typo").set(evaluators=["_Constnt"])
    with pytest.raises(KeyError, match="Did you mean '_Constant'"):
        build_evaluator(get_cfg(), "ev_typo")


def test_two_evaluators_for_one_task_is_an_error():
    evaluators = DatasetEvaluators([_Constant(None, "", None), _Constant(None, "", None)])
    with pytest.raises(KeyError, match="same task 'a'"):
        evaluators.evaluate()


def test_builtin_evaluators_register_on_first_search_in_a_fresh_process():
    """The package imports its evaluators lazily; the registry's locations still find them,
    and every public name of the package resolves."""

    code = (
        "import sys\n"
        "import panoptic2.evaluation as evaluation\n"
        "assert 'panoptic2.evaluation.coco_evaluation' not in sys.modules\n"
        "from panoptic2.registry import EVALUATOR_REGISTRY\n"
        "names = set(EVALUATOR_REGISTRY.names())\n"
        "expected = {'COCOEvaluator', 'COCOPanopticEvaluator', 'SemSegEvaluator',\n"
        "            'CityscapesInstanceEvaluator', 'CityscapesPanopticEvaluator',\n"
        "            'CityscapesSemSegEvaluator'}\n"
        "assert expected <= names, names\n"
        "for name in evaluation.__all__:\n"
        "    getattr(evaluation, name)\n"
        "assert evaluation.COCOEvaluator is EVALUATOR_REGISTRY.get('COCOEvaluator')\n"
    )
    proc = run_fresh_python(code)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        import panoptic2.evaluation

        panoptic2.evaluation.Nope  # noqa: B018
