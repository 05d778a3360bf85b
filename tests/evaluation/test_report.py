"""Tests of panoptic2/evaluation/report.py: per-image scores and the page in a real browser."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from panoptic2.config import get_cfg
from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.label_space import LabelSpace
from panoptic2.data.panoptic_label import read_panoptic_png
from panoptic2.evaluation import COCOPanopticEvaluator, DatasetEvaluators
from panoptic2.evaluation.panoptic_quality import pq_stat_single_image
from panoptic2.evaluation.report import EvaluationReport

DATASET = "shapes_panoptic_val"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _predictions(num: int) -> list[tuple[dict, dict]]:
    """Ground truth as model outputs, with errors: every other image loses a thing
    (a missed segment) and gains a square of a wrong class (a false positive)."""
    pairs = []
    for k, d in enumerate(DatasetCatalog.get(DATASET)[:num]):
        ids = read_panoptic_png(d["pan_seg_file_name"]).astype(np.int64)
        id_map = np.full(ids.shape, -1, np.int64)
        segments = []
        for s in d["segments_info"]:
            if s["iscrowd"]:
                continue
            id_map[ids == s["id"]] = s["id"]
            segments.append(
                {"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"]}
            )
        if k % 2 == 0:
            thing = next(s for s in segments if s["isthing"])
            id_map[id_map == thing["id"]] = -1
            segments.remove(thing)
            id_map[:20, :20] = 999
            segments.append({"id": 999, "category_id": 3, "isthing": True})
        pairs.append((d, {"panoptic_seg": (torch.from_numpy(id_map), segments)}))
    return pairs


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    space = LabelSpace.from_metadata(MetadataCatalog.get(DATASET))
    report = EvaluationReport(DATASET, str(folder), label_space=space, worst_k=3)
    pq = COCOPanopticEvaluator(get_cfg(), DATASET)
    both = DatasetEvaluators([pq, report])
    both.reset()
    pairs = _predictions(6)
    for inp, out in pairs:
        both.process([inp], [out])
    results = both.evaluate()
    path = report.write(results, iteration=7)
    return report, results, path, pairs, space


def test_per_image_scores_equal_an_independent_computation(report):
    report_, results, _, pairs, space = report
    records, total, _ = report_._merged
    assert [r["image_id"] for r in records] == [d["image_id"] for d, _ in pairs]
    categories = {
        c: {"isthing": int(space.is_thing(c))} for c in (*space.thing_ids, *space.stuff_ids)
    }
    for record, (d, out) in zip(records, pairs):
        id_map, segments = out["panoptic_seg"]
        stat = pq_stat_single_image(
            read_panoptic_png(d["pan_seg_file_name"]),
            d["segments_info"],
            id_map.numpy(),
            segments,
            gt_void_id=0,
            pred_void_id=-1,
        )
        assert record["pq"] == pytest.approx(100 * stat.results(categories)["All"]["pq"])
        if record["image_id"] == pairs[0][0]["image_id"]:
            assert len(record["missed"]) == 1 and len(record["false_positives"]) == 1
    # The report's per-class statistics give the evaluator's PQ.
    assert 100 * total.results(categories)["All"]["pq"] == pytest.approx(
        results["panoptic_seg"]["PQ"]
    )
    assert results["panoptic_seg"]["PQ"] < 100


@pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("PANOPTIC2_REQUIRE_BROWSER"),
    reason="no chromium (.ci/run installs it and sets PANOPTIC2_REQUIRE_BROWSER=1)",
)
def test_page_in_a_headless_browser(report):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "PANOPTIC2_REQUIRE_BROWSER is set but no chromium is installed"
    _, results, path, pairs, space = report
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    messages = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page()
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.goto(f"file://{path}")
            assert page.title() == f"Evaluation of {DATASET}"
            assert page.locator("#gallery figure").count() == 3
            assert page.locator("#gallery img").evaluate_all(
                "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"
            )
            # One row per class with segments: every class of shapes occurs in 6 images.
            classes = [space.classes[c] for c in (*space.thing_ids, *space.stuff_ids)]
            rows = page.locator("#pq-classes tbody tr td:first-child").all_text_contents()
            assert sorted(rows) == sorted(classes)
            assert page.locator("#images tbody tr").count() == len(pairs)
            # Sorting by PQ puts the worst image first, then by clicking again the best.
            page.locator("#images th").nth(1).click()
            first = page.locator("#images tbody tr td:nth-child(2)").first.text_content()
            page.locator("#images th").nth(1).click()
            best = page.locator("#images tbody tr td:nth-child(2)").first.text_content()
            assert float(first) <= float(best)
        finally:
            browser.close()
    errors = [m for m in messages if m.startswith(("error", "pageerror"))]
    assert not errors, errors
