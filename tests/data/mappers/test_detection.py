"""DetectionMapper (Detectron2's DatasetMapper) on hand-made annotations, against references
computed here: exact boxes and masks for polygons, RLE, crowd, box-only data, flips, crops."""

import numpy as np
import pytest
import torch
from fvcore.transforms.transform import CropTransform
from PIL import Image

from panoptic2.config import get_cfg
from panoptic2.data import DATA_MAPPER_REGISTRY
from panoptic2.data.label_space import LabelSpace
from panoptic2.data.mappers import DatasetMapper, DetectionMapper
from panoptic2.data.transforms import Augmentation, RandomFlip, ResizeShortestEdge
from panoptic2.structures import BitMasks, Boxes, Instances

H, W = 20, 30
SPACE = LabelSpace(
    classes=["void", "a", "b"],
    colors=[(0, 0, 0), (1, 1, 1), (2, 2, 2)],
    thing_ids=[1, 2],
    stuff_ids=[],
    thing_dataset_ids=[7, 9],
    stuff_dataset_ids=[],
    label_divisor=1000,
    ignore_label=0,
)


def column_major_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE by hand: run lengths of the column-major pixels, zeros first."""
    flat = mask.flatten(order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], change])).tolist()


class FixedCrop(Augmentation):
    """Always the same window (x0, y0, w, h)."""

    def __init__(self, x0, y0, w, h):
        super().__init__()
        self.window = (x0, y0, w, h)

    def get_transform(self, image):
        return CropTransform(*self.window, orig_w=image.shape[1], orig_h=image.shape[0])


@pytest.fixture
def sample(tmp_path):
    """A 20 x 30 image; a polygon square (class 1), an RLE L-shape (class 2), a crowd RLE."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(tmp_path / "im.png")
    square = np.zeros((H, W), bool)
    square[2:8, 3:11] = True  # polygon corners x 3..11, y 2..8
    ell = np.zeros((H, W), bool)
    ell[10:18, 20:23] = True
    ell[15:18, 23:28] = True
    crowd = np.zeros((H, W), bool)
    crowd[12:19, 2:9] = True
    annotations = [
        {
            "id": 1,
            "category_id": 1,
            "bbox": [3.0, 2.0, 8.0, 6.0],
            "bbox_mode": "XYWH_ABS",
            "segmentation": [[3, 2, 11, 2, 11, 8, 3, 8]],
            "iscrowd": 0,
        },
        {
            "id": 2,
            "category_id": 2,
            "bbox": [20.0, 10.0, 28.0, 18.0],
            "bbox_mode": "XYXY_ABS",
            "segmentation": {"size": [H, W], "counts": column_major_counts(ell)},
            "iscrowd": 0,
        },
        {
            "id": 3,
            "category_id": 1,
            "bbox": [2.0, 12.0, 7.0, 7.0],
            "bbox_mode": "XYWH_ABS",
            "segmentation": {"size": [H, W], "counts": column_major_counts(crowd)},
            "iscrowd": 1,
        },
    ]
    d = {
        "file_name": str(tmp_path / "im.png"),
        "image_id": 5,
        "height": H,
        "width": W,
        "dataset_name": "handmade",
        "annotations": annotations,
    }
    return d, np.stack([square, ell])


def mapper(augmentations=(), masks=True, **kwargs):
    return DetectionMapper(
        is_train=True,
        augmentations=list(augmentations),
        label_space=SPACE,
        use_instance_mask=masks,
        **kwargs,
    )


def test_polygon_and_rle_masks_boxes_classes_and_crowd_dropped(sample):
    d, masks = sample
    before = {k: (list(v) if isinstance(v, list) else v) for k, v in d.items()}
    out = mapper()(d)
    inst = out["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (H, W)
    assert inst.gt_classes.dtype == torch.int64 and inst.gt_classes.tolist() == [1, 2]
    assert isinstance(inst.gt_boxes, Boxes) and inst.gt_boxes.tensor.dtype == torch.float32
    assert inst.gt_boxes.tensor.tolist() == [[3, 2, 11, 8], [20, 10, 28, 18]]
    assert isinstance(inst.gt_masks, BitMasks)
    assert torch.equal(inst.gt_masks.tensor, torch.from_numpy(masks))
    assert out["image"].shape == (3, H, W) and out["image"].dtype == torch.uint8
    assert (out["height"], out["width"]) == (H, W)
    assert d == before  # the dataset dict is not modified


def test_horizontal_flip_mirrors_boxes_and_masks_exactly(sample):
    d, masks = sample
    inst = mapper([RandomFlip(prob=1.0)])(d)["instances"]
    # x -> W - x swaps the sides of each box.
    assert inst.gt_boxes.tensor.tolist() == [[W - 11, 2, W - 3, 8], [W - 28, 10, W - 20, 18]]
    assert torch.equal(inst.gt_masks.tensor, torch.from_numpy(masks[:, :, ::-1].copy()))
    img = np.asarray(Image.open(d["file_name"]))
    out = mapper([RandomFlip(prob=1.0)])(d)["image"].permute(1, 2, 0).numpy()
    assert np.array_equal(out, img[:, ::-1])


def test_masks_off_gives_boxes_only(sample):
    d, _ = sample
    inst = mapper(masks=False)(d)["instances"]
    assert not inst.has("gt_masks")
    assert inst.gt_boxes.tensor.tolist() == [[3, 2, 11, 8], [20, 10, 28, 18]]


def test_box_only_dataset_with_masks_on_gives_boxes_only(sample):
    d, _ = sample
    box_only = dict(
        d,
        annotations=[{k: v for k, v in a.items() if k != "segmentation"} for a in d["annotations"]],
    )
    inst = mapper(masks=True)(box_only)["instances"]
    assert not inst.has("gt_masks") and inst.gt_classes.tolist() == [1, 2]
    assert inst.gt_boxes.tensor.tolist() == [[3, 2, 11, 8], [20, 10, 28, 18]]


def test_boxes_are_clipped_and_emptied_instances_removed_by_a_crop(sample):
    d, masks = sample
    # Window x 5..25, y 0..12: the square is cut on the left, the L keeps rows 10-11 only.
    inst = mapper([FixedCrop(5, 0, 20, 12)])(d)["instances"]
    assert inst.image_size == (12, 20)
    assert inst.gt_classes.tolist() == [1, 2]
    # Transformed annotation boxes, clipped to the window (not tight: Detectron2's rule).
    assert inst.gt_boxes.tensor.tolist() == [[0, 2, 6, 8], [15, 10, 20, 12]]
    assert torch.equal(inst.gt_masks.tensor, torch.from_numpy(masks[:, 0:12, 5:25].copy()))
    # With recompute_boxes, the boxes are the tight boxes of the cropped masks.
    tight = mapper([FixedCrop(5, 0, 20, 12)], recompute_boxes=True)(d)["instances"]
    assert tight.gt_boxes.tensor.tolist() == [[0, 2, 6, 8], [15, 10, 18, 12]]
    # A window holding none of the square's pixels and none of its box removes it.
    right = mapper([FixedCrop(12, 0, 18, 20)])(d)["instances"]
    assert right.gt_classes.tolist() == [2]
    assert right.gt_boxes.tensor.tolist() == [[8, 10, 16, 18]]
    # Boxes only: a box cropped to zero width is removed too.
    assert mapper([FixedCrop(12, 0, 18, 20)], masks=False)(d)["instances"].gt_classes.tolist() == [
        2
    ]


def test_resize_scales_boxes_and_masks(sample):
    d, masks = sample
    inst = mapper([ResizeShortestEdge(40, 1000)])(d)["instances"]
    assert inst.image_size == (40, 60)
    assert inst.gt_boxes.tensor.tolist() == [[6, 4, 22, 16], [40, 20, 56, 36]]
    expected = masks.repeat(2, axis=1).repeat(2, axis=2)  # nearest neighbour x2
    assert torch.equal(inst.gt_masks.tensor, torch.from_numpy(expected))


def test_image_without_objects_gives_empty_instances(sample):
    d, _ = sample
    crowd_only = dict(d, annotations=[d["annotations"][2]])
    inst = mapper([RandomFlip(prob=1.0)])(crowd_only)["instances"]
    assert len(inst) == 0 and inst.gt_masks.tensor.shape == (0, H, W)
    assert inst.gt_boxes.tensor.shape == (0, 4)


def test_errors_name_the_image(sample):
    d, _ = sample
    mixed = [dict(d["annotations"][0]), dict(d["annotations"][1])]
    del mixed[1]["segmentation"]
    with pytest.raises(ValueError, match=r"im\.png.*handmade.*annotations \[2\] have no"):
        mapper()(dict(d, annotations=mixed))
    # Masks off: a mixed image is fine.
    assert len(mapper(masks=False)(dict(d, annotations=mixed))["instances"]) == 2
    stuff = [dict(d["annotations"][0], category_id=0)]
    with pytest.raises(ValueError, match=r"im\.png.*classes \[0\] are not thing classes"):
        mapper()(dict(d, annotations=stuff))
    with pytest.raises(ValueError, match=r"im\.png.*has no 'annotations'"):
        mapper()({k: v for k, v in d.items() if k != "annotations"})
    with pytest.raises(ValueError, match="recompute_boxes needs use_instance_mask"):
        mapper(masks=False, recompute_boxes=True)


def test_inference_reads_and_resizes_the_image_only(sample):
    d, _ = sample
    m = DetectionMapper(
        is_train=False, augmentations=[ResizeShortestEdge(40, 1000)], label_space=SPACE
    )
    out = m(d)
    assert "instances" not in out
    assert out["image"].shape == (3, 40, 60) and (out["height"], out["width"]) == (H, W)


def test_from_config_and_registry(sample):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ["shapes_instances_train"]
    cfg.DATASETS.TEST = ["shapes_instances_val"]
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.CROP.ENABLED = True
    m = DATA_MAPPER_REGISTRY.get("DetectionMapper")(cfg, True)
    assert isinstance(m, DetectionMapper)
    assert m.use_instance_mask and m.recompute_boxes
    assert m.label_space.thing_ids == (1, 2, 3)
    assert not DetectionMapper(cfg, False).recompute_boxes  # inference: no crop
    cfg.MODEL.MASK_ON = False
    m = DetectionMapper(cfg, is_train=True)
    assert not m.use_instance_mask and not m.recompute_boxes
    # Detectron2's name reaches the same class, from the registry and from Python.
    assert DATA_MAPPER_REGISTRY.get("DatasetMapper") is DetectionMapper is DatasetMapper
