"""Tests of tools/evaluate_panoptic.py: results, output file, and its clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.evaluation.pq_reference import (
    CATEGORIES,
    assert_results_close,
    make_case,
    write_coco_folder,
)
from tests.evaluation.pq_reference import reference_pq as reference

_TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "evaluate_panoptic.py")
_spec = importlib.util.spec_from_file_location("evaluate_panoptic", _TOOL)
evaluate_panoptic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate_panoptic)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pq_tool")
    cases = [make_case(300 + k) for k in range(4)]
    gt = write_coco_folder(root, "gt", [(k, c[0], c[1]) for k, c in enumerate(cases)], CATEGORIES)
    pred = write_coco_folder(
        root, "pred", [(k, c[2], c[3]) for k, c in enumerate(cases)], CATEGORIES
    )
    return root, gt, pred, reference(cases)


def _args(gt, pred, *extra):
    return [
        "--gt-json",
        gt[0],
        "--gt-folder",
        gt[1],
        "--pred-json",
        pred[0],
        "--pred-folder",
        pred[1],
        *extra,
    ]


def test_prints_tables_and_writes_the_pq_compute_structure(folders, tmp_path, capsys):
    _, gt, pred, expected = folders
    out = tmp_path / "result.json"
    assert evaluate_panoptic.main(_args(gt, pred, "--workers", "1", "--output", str(out))) == 0
    printed = capsys.readouterr().out
    assert (
        "Things" in printed
        and "disc" in printed
        and f"{100 * expected['All']['pq']:.3f}" in printed
    )
    written = json.loads(out.read_text())
    written["per_class"] = {int(k): v for k, v in written["per_class"].items()}
    assert_results_close(written, expected)


def test_runs_as_a_script_with_workers(folders, tmp_path):
    _, gt, pred, expected = folders
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [sys.executable, _TOOL, *_args(gt, pred, "--workers", "2", "--output", str(out))],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["All"]["pq"] == pytest.approx(
        expected["All"]["pq"], abs=1e-12
    )


def test_workers_give_identical_results_and_no_torch_is_imported(folders, tmp_path):
    _, gt, pred, expected = folders
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"r{workers}.json"
        code = (
            "import runpy, sys\n"
            f"sys.argv = [{_TOOL!r}, *{_args(gt, pred, '--workers', workers, '--output', str(out))!r}]\n"
            "try:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "loaded = [m for m in ('torch', 'pycocotools', 'cityscapesscripts') if m in sys.modules]\n"
            "assert not loaded, loaded\n"
        )
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(json.loads(out.read_text()))
    assert outputs[0] == outputs[1]  # bit-identical, not just close
    outputs[0]["per_class"] = {int(k): v for k, v in outputs[0]["per_class"].items()}
    assert_results_close(outputs[0], expected)


def _corrupt_copy(folders, tmp_path, edit_json=None, remove_png=None):
    root, gt, pred, _ = folders
    pred_dir = tmp_path / "pred"
    shutil.copytree(pred[1], pred_dir)
    with open(pred[0]) as f:
        data = json.load(f)
    if edit_json:
        edit_json(data)
    if remove_png:
        os.remove(pred_dir / remove_png)
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps(data))
    return gt, (str(pred_json), str(pred_dir))


def _error(folders, tmp_path, capsys, **corruption):
    gt, pred = _corrupt_copy(folders, tmp_path, **corruption)
    assert evaluate_panoptic.main(_args(gt, pred, "--workers", "1")) == 1
    return capsys.readouterr().err


def test_unknown_category(folders, tmp_path, capsys):
    def edit(data):
        data["annotations"][1]["segments_info"][0]["category_id"] = 99

    err = _error(folders, tmp_path, capsys, edit_json=edit)
    assert "Image '1 (000001.png)'" in err and "unknown category_id 99" in err


def test_json_segment_missing_from_png(folders, tmp_path, capsys):
    def edit(data):
        data["annotations"][2]["segments_info"].append({"id": 12345, "category_id": 1})

    err = _error(folders, tmp_path, capsys, edit_json=edit)
    assert (
        "Image '2 (000002.png)'" in err
        and "[12345]" in err
        and "absent from the predicted PNG" in err
    )


def test_png_segment_missing_from_json(folders, tmp_path, capsys):
    def edit(data):
        removed = data["annotations"][0]["segments_info"].pop(0)
        edit.removed = removed["id"]

    err = _error(folders, tmp_path, capsys, edit_json=edit)
    assert f"[{edit.removed}]" in err and "in the predicted PNG but not in its segments_info" in err


def test_missing_png(folders, tmp_path, capsys):
    err = _error(folders, tmp_path, capsys, remove_png="000003.png")
    assert "not found" in err and "000003.png" in err


def test_image_without_prediction(folders, tmp_path, capsys):
    def edit(data):
        del data["annotations"][2]

    err = _error(folders, tmp_path, capsys, edit_json=edit)
    assert "No prediction for the image with id 2" in err
