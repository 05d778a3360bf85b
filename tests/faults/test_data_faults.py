"""Faulted copies of the shapes dataset: every fault is an error that names the file, the
entry or the key, never a wrong result.

Each case copies a small generated dataset, breaks one thing, and asserts both the error
type (or exit status) and that the message names what is wrong.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from panoptic2.config import get_cfg
from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import (
    load_cityscapes_panoptic,
    load_coco_json,
    load_coco_panoptic_json,
    load_voc_sem_seg,
    register_coco_panoptic,
)
from panoptic2.data.datasets.cityscapes import cityscapes_files
from panoptic2.data.datasets.metadata import get_cityscapes_metadata
from panoptic2.data.datasets.shapes import COMPLETE_MARKER, generate_shapes, shapes_metadata
from panoptic2.data.label_space import LabelSpace
from panoptic2.data.mappers import PanopticDeepLabMapper, SemanticSegmentationMapper
from panoptic2.data.reading import SizeMismatchError
from panoptic2.evaluation import COCOPanopticEvaluator
from panoptic2.evaluation.cityscapes_evaluation import (
    CityscapesInstanceEvaluator,
    CityscapesPanopticEvaluator,
    CityscapesSemSegEvaluator,
)
from panoptic2.modeling import build_model
from panoptic2.solver import build_lr_scheduler, build_optimizer

REPO = Path(__file__).resolve().parents[2]
META = shapes_metadata()
_TOOL = REPO / "tools" / "check_dataset.py"
_spec = importlib.util.spec_from_file_location("check_dataset", _TOOL)
check_dataset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_dataset)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def coco_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_coco")
    generate_shapes(str(root), "coco", num_train=0, num_val=3, image_size=(48, 64))
    return root


@pytest.fixture
def coco(coco_src, tmp_path):
    """A private copy of shapes in the COCO layout, and a helper editing its JSONs."""
    root = tmp_path / "coco"
    shutil.copytree(coco_src, root)

    def edit(name, fn):
        path = root / "annotations" / name
        data = json.loads(path.read_text())
        fn(data)
        path.write_text(json.dumps(data))
        return path

    return root, edit


def _load_panoptic(root):
    ann = root / "annotations"
    return load_coco_panoptic_json(
        str(ann / "panoptic_val2017.json"),
        str(root / "val2017"),
        str(ann / "panoptic_val2017"),
        META,
        dataset_name="faulty",
    )


@pytest.fixture(scope="module")
def cs_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_cityscapes")
    generate_shapes(str(root), "cityscapes", num_train=0, num_val=2, image_size=(48, 64))
    return root


@pytest.fixture
def cs(cs_src, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(cs_src, root)
    return root


# ------------------------------------------------------ duplicates in the dataset files
def test_duplicate_image_id_in_coco_panoptic_json(coco):
    root, edit = coco

    def duplicate(data):
        data["images"][1]["id"] = data["images"][0]["id"]

    edit("panoptic_val2017.json", duplicate)
    with pytest.raises(ValueError, match=r"Image id .* appears twice in the 'images' list") as e:
        _load_panoptic(root)
    msg = str(e.value)
    assert "panoptic_val2017.json" in msg and "faulty" in msg
    assert "entry 0" in msg and "entry 1" in msg  # both entries named


def test_duplicate_image_file_in_coco_panoptic_json(coco):
    root, edit = coco
    edit("panoptic_val2017.json", lambda d: d["images"][2].update(d["images"][0], id=99))
    with pytest.raises(ValueError, match=r"Image file name '.*\.jpg' appears twice"):
        _load_panoptic(root)


def test_duplicate_annotation_png_in_coco_panoptic_json(coco):
    root, edit = coco
    edit(
        "panoptic_val2017.json",
        lambda d: d["annotations"][1].update(file_name=d["annotations"][0]["file_name"]),
    )
    with pytest.raises(ValueError, match=r"Annotation PNG '.*\.png' appears twice.*entry 0"):
        _load_panoptic(root)


def test_duplicate_annotation_of_one_image(coco):
    root, edit = coco
    edit(
        "panoptic_val2017.json",
        lambda d: d["annotations"][1].update(image_id=d["annotations"][0]["image_id"]),
    )
    with pytest.raises(ValueError, match=r"Annotated image id .* appears twice.*entry 0.*entry 1"):
        _load_panoptic(root)


def test_duplicate_ids_in_coco_instances_json(coco):
    root, edit = coco
    path = edit(
        "instances_val2017.json", lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"])
    )
    with pytest.raises(ValueError, match=r"Annotation id .* appears twice.*instances_val2017"):
        load_coco_json(str(path), str(root / "val2017"), META, dataset_name="faulty")
    edit("instances_val2017.json", lambda d: d["images"][1].update(id=d["images"][0]["id"]))
    with pytest.raises(ValueError, match=r"Image id .* appears twice in the 'images' list"):
        load_coco_json(str(path), str(root / "val2017"), META, dataset_name="faulty")


def test_duplicate_image_in_cityscapes(cs):
    gt = cs / "gtFine"
    json_file = gt / "cityscapes_panoptic_val_trainId.json"
    data = json.loads(json_file.read_text())
    data["images"].append(dict(data["images"][0]))
    json_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"Image id '.*' appears twice.*cityscapes_panoptic"):
        load_cityscapes_panoptic(
            str(cs / "leftImg8bit" / "val"),
            str(gt / "cityscapes_panoptic_val_trainId"),
            str(json_file),
            get_cityscapes_metadata(),
            dataset_name="faulty_cs",
        )
    # The same image id in two cities of the folder layout.
    images = sorted((cs / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    city, other = images[0].parent, cs / "leftImg8bit" / "val" / "elsewhere"
    other.mkdir()
    shutil.copy(images[0], other / images[0].name)
    gt_city = gt / "val" / city.name
    (gt / "val" / "elsewhere").mkdir()
    for f in gt_city.glob(images[0].name.replace("_leftImg8bit.png", "") + "*"):
        shutil.copy(f, gt / "val" / "elsewhere" / f.name)
    with pytest.raises(ValueError, match=r"Image id '.*' appears twice in '.*leftImg8bit/val'"):
        cityscapes_files(
            str(cs / "leftImg8bit" / "val"), str(gt / "val"), "_gtFine_labelTrainIds.png", "x"
        )


def test_voc_id_listed_twice(tmp_path):
    generate_shapes(str(tmp_path), "voc", num_train=0, num_val=2, image_size=(48, 64))
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    listing = voc / "ImageSets" / "Segmentation" / "val.txt"
    ids = listing.read_text().split()
    listing.write_text("\n".join([*ids, ids[0]]) + "\n")
    with pytest.raises(
        ValueError, match=r"Image id '.*' appears twice in '.*val.txt'.*line 1.*line 3"
    ):
        load_voc_sem_seg(str(voc), "val", dataset_name="faulty_voc")


def test_check_dataset_reports_duplicates_and_never_crashes(coco, capsys):
    root, edit = coco
    name = f"_faults_{uuid.uuid4().hex[:6]}"
    register_coco_panoptic(
        name,
        META,
        str(root / "val2017"),
        str(root / "annotations" / "panoptic_val2017"),
        str(root / "annotations" / "panoptic_val2017.json"),
    )
    try:
        assert check_dataset.main([name]) == 0
        edit("panoptic_val2017.json", lambda d: d["images"][1].update(id=d["images"][0]["id"]))
        assert check_dataset.main([name]) == 1
        assert "appears twice" in capsys.readouterr().out
        # A malformed segment (no category id) is a problem, not a traceback.
        edit(
            "panoptic_val2017.json",
            lambda d: d.update(images=d["images"][:1] + [dict(d["images"][1], id=12345)]),
        )
        edit(
            "panoptic_val2017.json",
            lambda d: d["annotations"][0]["segments_info"][0].pop("category_id"),
        )
        assert check_dataset.main([name]) == 1
        out = capsys.readouterr().out
        assert "loading failed:" in out and "panoptic_val2017.json" in out
        assert "missing required field `category_id`" in out
        assert "$.annotations[0].segments_info[0]" in out
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# -------------------------------------------------------------------- size mismatches
def test_image_size_differs_from_json_in_training_and_evaluation(coco):
    root, _ = coco
    dicts = _load_panoptic(root)
    wrong = dict(dicts[0], height=dicts[0]["height"] + 2)
    space = LabelSpace.from_metadata(META)
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = cfg.DATASETS.TEST = ["shapes_panoptic_val"]
    cfg.INPUT.MIN_SIZE_TRAIN = [0]
    cfg.INPUT.MIN_SIZE_TEST = 0
    for is_train in (True, False):
        mapper = PanopticDeepLabMapper(cfg, is_train)
        with pytest.raises(
            SizeMismatchError,
            match=r"Image '.*\.jpg' is 64x48 \(WxH\) but its dataset dict says 64x50",
        ):
            mapper(wrong)
    evaluator = COCOPanopticEvaluator("faulty", label_space=space)
    prediction = {"panoptic_seg": (torch.zeros(50, 64, dtype=torch.int64), None)}
    with pytest.raises(SizeMismatchError, match=r"Label '.*\.png' has size 64x48"):
        evaluator.process([wrong], [prediction])


def test_label_outside_the_classes_names_the_file(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    sem = np.zeros((8, 8), np.uint8)
    sem[2, 2] = 50
    Image.fromarray(sem).save(tmp_path / "sem.png")
    d = {
        "file_name": str(tmp_path / "img.png"),
        "sem_seg_file_name": str(tmp_path / "sem.png"),
        "image_id": "x",
        "height": 8,
        "width": 8,
    }
    mapper = SemanticSegmentationMapper(
        is_train=True, augmentations=[], ignore_label=255, num_classes=21
    )
    with pytest.raises(
        ValueError, match=r"sem.png' \(image_id 'x'\) has class ids \[50\] outside 0..20"
    ):
        mapper(d)


# ------------------------------------------------------------ Cityscapes ground truth
def _cs_metadata_name(cs) -> str:
    gt = cs / "gtFine"
    name = f"_faults_cs_{uuid.uuid4().hex[:6]}"
    MetadataCatalog.get(name).set(
        **get_cityscapes_metadata(),
        gt_dir=str(gt / "val"),
        panoptic_root=str(gt / "cityscapes_panoptic_val_trainId"),
        panoptic_json=str(gt / "cityscapes_panoptic_val_trainId.json"),
    )
    return name


def _panoptic_pairs(cs):
    """The ground truth as predictions (PQ 100 when the files are sound)."""
    gt = cs / "gtFine"
    data = json.loads((gt / "cityscapes_panoptic_val_trainId.json").read_text())
    dicts = load_cityscapes_panoptic(
        str(cs / "leftImg8bit" / "val"),
        str(gt / "cityscapes_panoptic_val_trainId"),
        str(gt / "cityscapes_panoptic_val_trainId.json"),
        get_cityscapes_metadata(),
    )
    assert data
    pairs = []
    for d in dicts:
        rgb = np.asarray(Image.open(d["pan_seg_file_name"]), dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        label = np.full(ids.shape, -1, np.int64)
        segments = []
        for s in d["segments_info"]:
            label[ids == s["id"]] = s["id"]
            segments.append(
                {"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"]}
            )
        pairs.append(
            ({"file_name": d["file_name"]}, {"panoptic_seg": (torch.from_numpy(label), segments)})
        )
    return pairs


def _evaluate(evaluator, pairs):
    evaluator.reset()
    for inp, out in pairs:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


def _rewrite_first_gt_png(cs, fn):
    """Applies ``fn(ids, segments_info) -> (ids, segments_info)`` to the first image's PNG."""
    gt = cs / "gtFine"
    json_file = gt / "cityscapes_panoptic_val_trainId.json"
    data = json.loads(json_file.read_text())
    ann = data["annotations"][0]
    path = gt / "cityscapes_panoptic_val_trainId" / ann["file_name"]
    rgb = np.asarray(Image.open(path), dtype=np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    ids, ann["segments_info"] = fn(ids, ann["segments_info"])
    out = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(out).save(path)
    json_file.write_text(json.dumps(data))
    return path


def _drop_segment_from_png(ids, segments):
    ids = ids.copy()
    ids[ids == segments[0]["id"]] = 0
    return ids, segments


def _write_48_bit(path):
    import cv2

    cv2.imwrite(str(path), np.zeros((48, 64, 3), np.uint16))
    return path


def _write_other_size(path):
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "fault, message",
    [
        (
            lambda cs: _rewrite_first_gt_png(cs, _drop_segment_from_png),
            r"{png}' \(image '.*', dataset '{name}'\), segment .* missing from the PNG",
        ),
        (
            lambda cs: _rewrite_first_gt_png(cs, lambda ids, segs: (ids, segs[1:])),
            r"{png}' \(image .*\) contains segment ids .* not in its segments_info",
        ),
        (
            lambda cs: _write_48_bit(_rewrite_first_gt_png(cs, lambda i, s: (i, s))),
            r"{png}': must be 8-bit RGB.*\(image '.*', dataset '{name}'\)",
        ),
        (
            lambda cs: _write_other_size(_rewrite_first_gt_png(cs, lambda i, s: (i, s))),
            r"{png}' \(image .*\) is 64x40 \(WxH\) but the image is 64x48",
        ),
    ],
    ids=["json-segment-not-in-png", "png-id-not-in-json", "48-bit-png", "other-size"],
)
def test_cityscapes_panoptic_ground_truth_faults(cs, tmp_path, fault, message):
    name = _cs_metadata_name(cs)
    pairs = _panoptic_pairs(cs)  # the ground truth as it was: a perfect prediction
    try:
        res = _evaluate(CityscapesPanopticEvaluator(get_cfg(), name, str(tmp_path / "ok")), pairs)
        assert res["panoptic_seg"]["PQ"] == pytest.approx(100.0)
        png = fault(cs)
        evaluator = CityscapesPanopticEvaluator(get_cfg(), name, str(tmp_path / "faulty"))
        with pytest.raises(ValueError, match=message.format(png=png.name, name=name)):
            _evaluate(evaluator, pairs)
    finally:
        MetadataCatalog.remove(name)


def _sem_pairs(cs):
    pairs = []
    for image in sorted((cs / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
        stem = image.name.replace("_leftImg8bit.png", "")
        train = np.asarray(
            Image.open(
                image.parent.parent.parent.parent
                / "gtFine"
                / "val"
                / image.parent.name
                / f"{stem}_gtFine_labelTrainIds.png"
            ),
            dtype=np.int64,
        )
        scores = torch.nn.functional.one_hot(torch.from_numpy(np.where(train == 255, 0, train)), 19)
        pairs.append(({"file_name": str(image)}, {"sem_seg": scores.permute(2, 0, 1).float()}))
    return pairs


def test_cityscapes_semantic_and_instance_ground_truth_faults(cs, tmp_path):
    name = _cs_metadata_name(cs)
    pairs = _sem_pairs(cs)
    gt_file = sorted((cs / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))[0]
    try:
        _evaluate(CityscapesSemSegEvaluator(get_cfg(), name, str(tmp_path / "ok")), pairs)
        data = gt_file.read_bytes()
        gt_file.write_bytes(data[: len(data) // 2])  # truncated
        with pytest.raises(
            ValueError,
            match=rf"Ground truth '.*{gt_file.name}' of image '.*' \(dataset '{name}'\) cannot be decoded",
        ):
            _evaluate(CityscapesSemSegEvaluator(get_cfg(), name, str(tmp_path / "a")), pairs)
        Image.fromarray(np.zeros((48, 60), np.uint8)).save(gt_file)
        with pytest.raises(
            ValueError, match=rf"{gt_file.name}' .* is 60x48 \(WxH\) but the image is 64x48"
        ):
            _evaluate(CityscapesSemSegEvaluator(get_cfg(), name, str(tmp_path / "b")), pairs)
        instance_file = Path(str(gt_file).replace("labelIds", "instanceIds"))
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(instance_file)
        instances = [(inp, {"panoptic_seg": (torch.full((48, 64), -1), [])}) for inp, _ in pairs]
        with pytest.raises(ValueError, match=rf"{instance_file.name}' .* has PIL mode 'RGB'"):
            _evaluate(CityscapesInstanceEvaluator(get_cfg(), name, str(tmp_path / "c")), instances)
    finally:
        MetadataCatalog.remove(name)


# ------------------------------------------------------------------ config and tools
def test_config_values_that_cannot_train_name_their_key():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "ToyClassifier"
    import panoptic2.testing.toy  # noqa: F401  (registers the toy model and its keys)

    model = torch.nn.Linear(2, 2)
    cfg.SOLVER.BASE_LR = -0.1
    with pytest.raises(
        ValueError, match=r"SOLVER.BASE_LR must be a finite learning rate >= 0, got -0.1"
    ):
        build_optimizer(cfg, model)
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MAX_ITER = 0
    with pytest.raises(
        ValueError, match=r"SOLVER.MAX_ITER must be a positive number of iterations, got 0"
    ):
        build_lr_scheduler(cfg, build_optimizer(cfg, model))
    assert build_model  # the registry miss of a model name is tested in tests/test_registry.py


def test_make_shapes_dataset_output_serves_the_builtin_names(tmp_path):
    out = tmp_path / "shapes_coco"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_shapes_dataset.py"),
            "--output",
            str(out),
            "--layout",
            "coco",
            "--num-train",
            "2",
            "--num-val",
            "2",
            "--image-size",
            "48",
            "64",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    marker = json.loads((out / COMPLETE_MARKER).read_text())
    assert marker["num_val"] == 2 and marker["image_size"] == [48, 64]
    code = (
        "from panoptic2.data import DatasetCatalog\n"
        "print(len(DatasetCatalog.get('shapes_panoptic_val')))\n"
    )
    env = dict(os.environ, PANOPTIC2_DATASETS=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "2"
