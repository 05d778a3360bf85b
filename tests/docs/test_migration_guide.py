"""docs/migrating_from_detectron2.md: every panoptic2 name in its table imports, and the
table covers the Detectron2 APIs users port first."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "migrating_from_detectron2.md"
_NAME = re.compile(r"`((?:panoptic2|projects)(?:\.\w+)+)`")


def _table() -> list[tuple[str, str]]:
    """(Detectron2 cell, panoptic2 cell) of each row of the "Names" table."""
    text = GUIDE.read_text()
    section = text.split("## Names", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("Detectron2", "---"):
            rows.append((cells[0], cells[1]))
    return rows


def _resolve(dotted: str) -> Any:
    """Imports the longest module prefix of ``dotted`` and reads the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


NAMES = sorted({n for _, cell in _table() for n in _NAME.findall(cell)})


def test_every_row_names_panoptic2_objects():
    rows = _table()
    assert len(rows) > 40
    assert [d2 for d2, ours in rows if not _NAME.findall(ours)] == []


@pytest.mark.parametrize("name", NAMES)
def test_name_imports(name):
    assert _resolve(name) is not None


def test_the_common_detectron2_apis_are_covered():
    detectron2_cells = " ".join(d2 for d2, _ in _table())
    for api in (
        "get_cfg",
        "merge_from_file",
        "DatasetCatalog",
        "MetadataCatalog",
        "register_coco_instances",
        "register_coco_panoptic",
        "register_coco_panoptic_separated",
        "DefaultTrainer",
        "DefaultPredictor",
        "Visualizer",
        "DetectionCheckpointer",
        "model_zoo.get",
        "build_model",
        "build_detection_train_loader",
        "DatasetMapper",
        "COCOPanopticEvaluator",
        "SemSegEvaluator",
        "COCOEvaluator",
        "CityscapesSemSegEvaluator",
        "launch",
        "detectron2.utils.comm",
        "hooks.",
        "EventStorage",
    ):
        assert api in detectron2_cells, api
