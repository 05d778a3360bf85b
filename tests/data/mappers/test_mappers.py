"""The three mappers on tiny hand-built files, incl. the bad-input errors."""

import numpy as np
import pytest
from PIL import Image

from panoptic2.config import get_cfg
from panoptic2.data import DATA_MAPPER_REGISTRY, MetadataCatalog
from panoptic2.data.label_space import LabelSpace
from panoptic2.data.mappers import (
    PanopticDeepLabMapper,
    PanopticDeepLabTargetGenerator,
    PanopticFPNMapper,
    SemanticSegmentationMapper,
)
from panoptic2.data.panoptic_label import label_from_segments
from panoptic2.data.transforms import RandomFlip
from panoptic2.structures import Instances

H, W = 12, 16


@pytest.fixture
def files(tmp_path):
    """An RGB image, a semantic PNG and a COCO-style panoptic PNG + segments_info."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    sem = np.zeros((H, W), np.uint8)
    sem[:, 8:] = 2
    sem[0] = 255
    Image.fromarray(sem).save(tmp_path / "sem.png")
    ids = np.zeros((H, W), np.int64)  # 0 = void
    ids[1:, :] = 300  # stuff (category 5)
    ids[2:6, 2:6] = 7 + 256 * 1  # thing 1, first instance
    ids[7:11, 9:15] = 9  # thing 1, second instance
    ids[7:10, 1:4] = 70000  # crowd of thing 2
    color = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(color).save(tmp_path / "pan.png")
    segments = [
        {"id": 300, "category_id": 5, "iscrowd": 0},
        {"id": 263, "category_id": 1, "iscrowd": 0},
        {"id": 9, "category_id": 1, "iscrowd": 0},
        {"id": 70000, "category_id": 2, "iscrowd": 1},
    ]
    d = {
        "file_name": str(tmp_path / "img.png"),
        "image_id": "img",
        "height": H,
        "width": W,
        "sem_seg_file_name": str(tmp_path / "sem.png"),
        "pan_seg_file_name": str(tmp_path / "pan.png"),
        "segments_info": segments,
    }
    return d, image, sem, ids


def _gen():
    return PanopticDeepLabTargetGenerator(0, [1, 2], 256, sigma=1, small_instance_area=20)


def test_label_of_the_hand_built_files(files):
    d, _, _, ids = files
    pan = label_from_segments(
        ids, d["segments_info"], label_divisor=256, ignore_label=0, thing_ids=[1, 2]
    )
    assert pan.dtype == np.int32
    assert pan[0, 0] == 0 and pan[1, 0] == 5 * 256
    assert pan[3, 3] == 1 * 256 + 1 and pan[8, 10] == 1 * 256 + 2 and pan[8, 2] == 2 * 256


def test_semantic_mapper(files):
    d, image, sem, _ = files
    out = SemanticSegmentationMapper(is_train=True, augmentations=[])(d)
    assert out["image"].shape == (3, H, W) and np.array_equal(
        out["image"].permute(1, 2, 0).numpy(), image
    )
    assert out["sem_seg"].dtype.is_floating_point is False and np.array_equal(
        out["sem_seg"].numpy(), sem
    )
    assert out["height"] == H and out["image_id"] == "img"
    bgr = SemanticSegmentationMapper(is_train=True, augmentations=[], image_format="BGR")(d)
    assert np.array_equal(bgr["image"].numpy()[0], image[..., 2])
    flipped = SemanticSegmentationMapper(is_train=True, augmentations=[RandomFlip(1.0)])(d)
    assert np.array_equal(flipped["sem_seg"].numpy(), sem[:, ::-1])
    assert np.array_equal(flipped["image"].permute(1, 2, 0).numpy(), image[:, ::-1])
    test = SemanticSegmentationMapper(is_train=False, augmentations=[])(d)
    assert "sem_seg" not in test


def test_mappers_from_config(files, tmp_path):
    d, _, _, _ = files
    MetadataCatalog.get("_h_test_set").set(
        ignore_label=0, label_divisor=256, thing_ids=[1, 2], num_classes=6
    )
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ["_h_test_set"]
    cfg.INPUT.MIN_SIZE_TRAIN = [24]
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE = [20, 20]
    for name in ("SemanticSegmentationMapper", "PanopticDeepLabMapper", "PanopticFPNMapper"):
        sample = d
        if name == "SemanticSegmentationMapper":
            # In this label space 255 is not a class (void is 0): semantic labels use 0.
            sem = np.asarray(Image.open(d["sem_seg_file_name"])).copy()
            sem[sem == 255] = 0
            Image.fromarray(sem).save(tmp_path / "sem0.png")
            sample = dict(d, sem_seg_file_name=str(tmp_path / "sem0.png"))
        out = DATA_MAPPER_REGISTRY.get(name)(cfg, True)(sample)
        assert out["image"].shape == (3, 20, 20) and out["sem_seg"].shape == (20, 20), name
    with pytest.raises(ValueError, match=r"sem.png' \(image_id 'img'\) has class ids \[255\]"):
        DATA_MAPPER_REGISTRY.get("SemanticSegmentationMapper")(cfg, True)(d)
    cfg.DATASETS.TRAIN = ["_h_no_meta"]
    with pytest.raises(ValueError, match="_h_no_meta"):
        PanopticDeepLabMapper(cfg, True)


def test_panoptic_deeplab_mapper(files):
    d, image, _, ids = files
    out = PanopticDeepLabMapper(is_train=True, augmentations=[], target_generator=_gen())(d)
    assert out["sem_seg"][3, 3] == 1 and out["sem_seg"][8, 2] == 2 and out["sem_seg"][0, 0] == 0
    # Instance 1 is the 4x4 block at rows/cols 2..5: centre (3.5, 3.5) rounds to (4, 4).
    assert out["center"][0, 4, 4] == 1.0 and out["offset"][0, 2, 2] == pytest.approx(1.5)
    assert out["center_weights"][8, 2] == 0  # crowd
    assert out["sem_seg_weights"][3, 3] == 3  # 16 px < 20: small
    # Decoded arrays (from the record reader) skip the file reads and give the same result.
    pan = label_from_segments(
        ids, d["segments_info"], label_divisor=256, ignore_label=0, thing_ids=[1, 2]
    )
    decoded = {"image": image, "panoptic_label": pan, "file_name": "x", "image_id": 1}
    out2 = PanopticDeepLabMapper(is_train=True, augmentations=[], target_generator=_gen())(decoded)
    for key in ("sem_seg", "center", "offset", "sem_seg_weights"):
        assert np.array_equal(out[key].numpy(), out2[key].numpy()), key


def test_panoptic_fpn_mapper(files):
    d, _, _, _ = files
    space = LabelSpace(
        classes=["void", "a", "b", "c", "d", "e"],
        colors=[(0, 0, 0)] * 6,
        thing_ids=[1, 2],
        stuff_ids=[3, 4, 5],
        thing_dataset_ids=[1, 2],
        stuff_dataset_ids=[3, 4, 5],
        label_divisor=256,
        ignore_label=0,
    )
    mapper = PanopticFPNMapper(is_train=True, augmentations=[], label_space=space)
    no_sem = {k: v for k, v in d.items() if k != "sem_seg_file_name"}
    inst = mapper(no_sem)["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (H, W)
    assert inst.gt_classes.tolist() == [1, 1]  # crowd dropped
    assert inst.gt_boxes.tensor.tolist() == [[2, 2, 6, 6], [9, 7, 15, 11]]
    assert inst.gt_masks.tensor.shape == (2, H, W) and inst.gt_masks.tensor[0].sum() == 16
    stuff = mapper(no_sem)["sem_seg"]
    assert stuff[0, 0] == 255 and stuff[1, 0] == 3 and stuff[3, 3] == 0  # void, stuff 5 -> 3, thing
    # From annotations (a polygon), with the separated stuff PNG.
    ann = dict(
        d,
        annotations=[
            {
                "category_id": 2,
                "iscrowd": 0,
                "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]],
                "bbox": [1, 1, 4, 3],
                "bbox_mode": "XYWH_ABS",
            },
            {"category_id": 1, "iscrowd": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]},
        ],
    )
    out = mapper(ann)
    assert out["instances"].gt_classes.tolist() == [2]
    assert out["instances"].gt_boxes.tensor.tolist() == [[1, 1, 5, 4]]
    assert np.array_equal(out["sem_seg"].numpy(), files[2])


def test_missing_and_corrupt_image(files, tmp_path):
    d, _, _, _ = files
    mapper = SemanticSegmentationMapper(is_train=True, augmentations=[])
    missing = dict(d, file_name=str(tmp_path / "nope.jpg"))
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        mapper(missing)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        mapper(dict(d, file_name=str(tmp_path / "bad.jpg")))
    good = np.zeros((H, W, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "ok.jpg")
    assert mapper(dict(d, file_name=str(tmp_path / "ok.jpg")))["image"].shape == (3, H, W)


def test_label_errors(files, tmp_path):
    d, _, _, _ = files
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match="wide.png"):
        SemanticSegmentationMapper(is_train=True, augmentations=[])(
            dict(d, sem_seg_file_name=str(tmp_path / "wide.png"))
        )
    mapper = PanopticDeepLabMapper(is_train=True, augmentations=[], target_generator=_gen())
    extra = dict(
        d, segments_info=d["segments_info"] + [{"id": 4242, "category_id": 1, "iscrowd": 0}]
    )
    with pytest.raises(ValueError, match=r"pan.png.*segment 4242 .*missing from the PNG"):
        mapper(extra)
    fewer = dict(d, segments_info=d["segments_info"][1:])
    with pytest.raises(ValueError, match=r"pan.png.*\[300\]"):
        mapper(fewer)
    with pytest.raises(FileNotFoundError, match=r"gone.png.*image_id 'img'"):
        mapper(dict(d, pan_seg_file_name=str(tmp_path / "gone.png")))
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(ValueError, match=r"gray.png'.*must be 8-bit RGB.*image_id 'img'"):
        mapper(dict(d, pan_seg_file_name=str(tmp_path / "gray.png")))


def test_record_backed_dicts_give_the_same_targets_as_files(tmp_path):
    """Shapes (COCO layout) -> DeepLab2 records -> register_records -> mapper: the targets
    equal those from the PNG + JSON files (instance numbering may differ; targets do not)."""
    from panoptic2.data import DatasetCatalog
    from panoptic2.data.datasets import load_coco_panoptic_json
    from panoptic2.data.datasets.shapes import generate_shapes, shapes_metadata
    from panoptic2.data.mappers import PanopticDeepLabTargetGenerator
    from panoptic2.data.records import convert_coco_dataset, register_records

    root = tmp_path / "coco"
    generate_shapes(str(root), "coco", num_train=0, num_val=3, seed=5)
    # Crowd keeps its class (instance 0), as the file-backed panoptic map does.
    convert_coco_dataset(
        str(root), str(tmp_path / "rec"), splits=("val",), num_shards=2, treat_crowd_as_ignore=False
    )
    meta = shapes_metadata()
    register_records("_records_val", str(tmp_path / "rec" / "val-*.tfrecord"), meta)
    try:
        record_dicts = DatasetCatalog.get("_records_val")
    finally:
        DatasetCatalog.remove("_records_val")
    file_dicts = load_coco_panoptic_json(
        str(root / "annotations" / "panoptic_val2017.json"),
        str(root / "val2017"),
        str(root / "annotations" / "panoptic_val2017"),
        meta,
    )
    generator = PanopticDeepLabTargetGenerator(
        ignore_label=meta["ignore_label"],
        thing_ids=meta["thing_ids"],
        label_divisor=meta["label_divisor"],
        small_instance_area=100,
    )
    mapper = PanopticDeepLabMapper(is_train=True, augmentations=[], target_generator=generator)
    by_stem = {d["file_name"].rsplit("/", 1)[-1].split(".")[0]: d for d in file_dicts}
    assert len(record_dicts) == len(file_dicts) == 3
    for rec in record_dicts:
        from_record = mapper(rec)
        from_files = mapper(by_stem[str(rec["file_name"]).split(".")[0]])
        assert from_record["image"].equal(from_files["image"])
        for key in (
            "sem_seg",
            "center",
            "offset",
            "sem_seg_weights",
            "center_weights",
            "offset_weights",
        ):
            assert np.array_equal(from_record[key].numpy(), from_files[key].numpy()), key


def test_panoptic_fpn_mapper_image_without_things(files):
    d, _, _, _ = files
    space = LabelSpace.from_categories(
        [{"id": 1, "name": "a", "isthing": 1}, {"id": 5, "name": "s", "isthing": 0}]
    )
    mapper = PanopticFPNMapper(
        is_train=True, augmentations=[RandomFlip(prob=1.0)], label_space=space
    )
    crowd_only = {k: v for k, v in d.items() if k not in ("pan_seg_file_name", "segments_info")}
    crowd_only["annotations"] = [{"category_id": 1, "iscrowd": 1, "segmentation": []}]
    inst = mapper(crowd_only)["instances"]
    assert len(inst) == 0 and inst.gt_masks.tensor.shape == (0, H, W)
