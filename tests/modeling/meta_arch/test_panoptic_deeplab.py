import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers shapes)
import panoptic2.data.mappers  # noqa: F401  (registers PanopticDeepLabMapper)
import panoptic2.modeling.heads.panoptic_deeplab  # noqa: F401
from panoptic2.config import get_cfg
from panoptic2.data import DATA_MAPPER_REGISTRY, DatasetCatalog, MetadataCatalog
from panoptic2.modeling import META_ARCH_REGISTRY
from panoptic2.modeling.meta_arch.panoptic_deeplab import (
    PanopticDeepLab,
    masks_to_boxes_xyxy,
    pad_and_stack,
)


def _tiny_cfg():
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res5"]
    for head in (cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.INS_EMBED_HEAD):
        head.ASPP_CHANNELS, head.CONVS_DIM, head.HEAD_CHANNELS = 32, 32, 32
        head.ASPP_DILATIONS = [1, 2, 3]
        head.ASPP_DROPOUT = 0.0
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 7
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 0
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    cfg.MODEL.PANOPTIC_DEEPLAB.STUFF_AREA = 16
    cfg.DATASETS.TRAIN = ["shapes_panoptic_train"]
    cfg.DATASETS.TEST = ["shapes_panoptic_val"]
    cfg.INPUT.DATASET_MAPPER_NAME = "PanopticDeepLabMapper"
    cfg.INPUT.MIN_SIZE_TRAIN = [0]
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.GAUSSIAN_SIGMA = 3.0
    return cfg


def _image_input(h=64, w=80, **extra):
    return {"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8), **extra}


def test_registered_and_pad_helpers():
    assert META_ARCH_REGISTRY.get("PanopticDeepLab") is PanopticDeepLab
    out = pad_and_stack([torch.ones(1, 3, 5), torch.ones(1, 4, 2)], 4, pad_value=-1)
    assert out.shape == (2, 1, 4, 8)
    assert (
        out[0, 0, 3].eq(-1).all() and out[1, 0, :, 2:].eq(-1).all() and out[1, 0, :, :2].eq(1).all()
    )
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert masks_to_boxes_xyxy(masks).tolist() == [[2.0, 1.0, 5.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


@pytest.mark.slow
def test_overfits_one_shapes_batch_and_eval_formats():
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE = [64, 96]  # a quarter of the image: 4x less compute per step
    mapper = DATA_MAPPER_REGISTRY.get("PanopticDeepLabMapper")(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get("shapes_panoptic_train")[:2]]
    model = PanopticDeepLab(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(20):
        losses = model(batch)
        assert set(losses) == {"loss_sem_seg", "loss_center", "loss_offset"}
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert totals[-1] < 0.5 * totals[0], totals

    model.eval()
    inputs = [
        {k: d[k] for k in ("image", "file_name")} | {"height": 96, "width": 120} for d in batch
    ]
    with torch.no_grad():
        outputs = model(inputs)
    assert model.last_postprocess_time > 0
    meta = MetadataCatalog.get("shapes_panoptic_val")
    for out in outputs:
        assert out["sem_seg"].shape == (7, 96, 120) and out["sem_seg"].is_floating_point()
        id_map, segments = out["panoptic_seg"]
        assert id_map.shape == (96, 120) and id_map.dtype == torch.int64
        ids = set(torch.unique(id_map).tolist()) - {-1}
        assert {s["id"] for s in segments} == ids
        for s in segments:
            assert s["category_id"] == s["id"] // meta.label_divisor
            assert s["category_id"] != meta.ignore_label  # the void class is never predicted
            assert s["isthing"] == (s["category_id"] in meta.thing_ids)
            assert ("score" in s) == s["isthing"]
        inst = out["instances"]
        k = inst["pred_masks"].shape[0]
        assert inst["pred_masks"].shape == (k, 96, 120) and inst["pred_masks"].dtype == torch.bool
        assert inst["pred_classes"].shape == (k,) and inst["pred_classes"].dtype == torch.int64
        assert inst["scores"].shape == (k,) and inst["pred_boxes"].shape == (k, 4)
        assert k == sum(s["isthing"] for s in segments)


def _register_meta(name, **fields):
    MetadataCatalog.get(name).set(num_classes=7, ignore_label=0, **fields)


def test_metadata_comes_from_evaluated_dataset():
    _register_meta("_pdl_test_a", thing_ids=[1, 2, 3, 4, 5, 6], label_divisor=1000)
    _register_meta("_pdl_test_b", thing_ids=[], label_divisor=256)
    cfg = _tiny_cfg()
    cfg.DATASETS.TRAIN = ["_pdl_test_train_unused"]
    cfg.DATASETS.TEST = ["_pdl_test_a"]
    model = PanopticDeepLab(cfg).eval()
    # The construction-time default is DATASETS.TEST[0], not the training set.
    assert model.postprocess_metadata(_image_input()).label_divisor == 1000
    assert model.postprocess_metadata(_image_input(dataset_name="_pdl_test_b")).label_divisor == 256
    torch.manual_seed(0)
    with torch.no_grad():
        out_a, out_b = model([_image_input(), _image_input(dataset_name="_pdl_test_b")])
    for s in out_b["panoptic_seg"][1]:  # no thing classes: every segment is stuff, id = class*256
        assert not s["isthing"] and s["id"] == s["category_id"] * 256
    assert out_b["instances"]["pred_masks"].shape[0] == 0
    for s in out_a["panoptic_seg"][1]:  # every class a thing: divisor 1000
        assert s["isthing"] and s["id"] // 1000 == s["category_id"]


def test_missing_metadata_and_targets_are_clear_errors():
    cfg = _tiny_cfg()
    cfg.DATASETS.TEST = []
    model = PanopticDeepLab(cfg)
    with pytest.raises(ValueError, match="dataset_name"):
        model.eval()([_image_input(file_name="img.png")])
    _register_meta("_pdl_test_c", thing_ids=[1], label_divisor=10)
    MetadataCatalog.get("_pdl_test_c").set(num_classes=3)
    with pytest.raises(ValueError, match="_pdl_test_c"):
        model([_image_input(dataset_name="_pdl_test_c")])
    with pytest.raises(ValueError, match="PanopticDeepLabMapper"):
        model.train()([_image_input(file_name="img.png")])
