import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers shapes)
import panoptic2.data.mappers  # noqa: F401  (registers PanopticDeepLabMapper)
import panoptic2.modeling.heads.panoptic_deeplab  # noqa: F401
from panoptic2.config import get_cfg
from panoptic2.data import DATA_MAPPER_REGISTRY, DatasetCatalog, MetadataCatalog
from panoptic2.data.label_space import LabelSpace
from panoptic2.modeling import META_ARCH_REGISTRY
from panoptic2.modeling.meta_arch.panoptic_deeplab import PanopticDeepLab
from panoptic2.structures import Boxes, Instances, masks_to_boxes


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


def test_registered():
    assert META_ARCH_REGISTRY.get("PanopticDeepLab") is PanopticDeepLab


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
        assert isinstance(inst, Instances) and inst.image_size == (96, 120)
        k = len(inst)
        assert inst.pred_masks.shape == (k, 96, 120) and inst.pred_masks.dtype == torch.bool
        assert inst.pred_classes.shape == (k,) and inst.pred_classes.dtype == torch.int64
        assert inst.scores.shape == (k,) and isinstance(inst.pred_boxes, Boxes)
        assert torch.equal(inst.pred_boxes.tensor, masks_to_boxes(inst.pred_masks))
        assert k == sum(s["isthing"] for s in segments)


def _space(thing_ids, label_divisor, num_classes=7):
    stuff = [c for c in range(1, num_classes) if c not in thing_ids]
    return LabelSpace(
        classes=["void"] + [f"c{i}" for i in range(1, num_classes)],
        colors=[(i, i, i) for i in range(num_classes)],
        thing_ids=thing_ids,
        stuff_ids=stuff,
        thing_dataset_ids=[100 + t for t in thing_ids],
        stuff_dataset_ids=[100 + s for s in stuff],
        label_divisor=label_divisor,
        ignore_label=0,
    )


def test_label_space_by_hand_without_any_registered_dataset():
    """A model built with a hand-made label space and no dataset named in the config runs
    inference, and post-processes with that label space's things and divisor."""
    cfg = _tiny_cfg()
    cfg.DATASETS.TRAIN = []
    cfg.DATASETS.TEST = []
    cfg.MODEL.PANOPTIC_DEEPLAB.CENTER_THRESHOLD = -1.0  # untrained heatmap: keep every peak
    torch.manual_seed(0)  # weights whose heatmap has positive peaks (centers need > 0)
    all_things = PanopticDeepLab(cfg, label_space=_space([1, 2, 3, 4, 5, 6], 1000)).eval()
    no_things = PanopticDeepLab(cfg, label_space=_space([], 256)).eval()
    no_things.load_state_dict(all_things.state_dict())
    assert all_things.label_space.thing_ids == (1, 2, 3, 4, 5, 6)
    torch.manual_seed(0)
    image = _image_input(file_name="img.png")
    with torch.no_grad():
        (out_a,) = all_things([image])
        (out_b,) = no_things([image])
    assert torch.equal(out_a["sem_seg"], out_b["sem_seg"])
    for s in out_b["panoptic_seg"][1]:  # no thing classes: every segment is stuff, id = class*256
        assert not s["isthing"] and s["id"] == s["category_id"] * 256
    assert len(out_b["instances"]) == 0
    assert out_a["panoptic_seg"][1]
    for s in out_a["panoptic_seg"][1]:  # every class a thing: divisor 1000
        assert s["isthing"] and s["id"] // 1000 == s["category_id"]


def test_label_space_comes_from_the_config_datasets():
    cfg = _tiny_cfg()
    model = PanopticDeepLab(cfg)
    meta = MetadataCatalog.get("shapes_panoptic_val")
    assert model.label_space == LabelSpace.from_metadata(meta)
    assert model.label_space.thing_ids == tuple(meta.thing_ids)


def test_missing_label_space_and_targets_are_clear_errors():
    cfg = _tiny_cfg()
    cfg.DATASETS.TRAIN = []
    cfg.DATASETS.TEST = []
    model = PanopticDeepLab(cfg)
    assert model.label_space is None
    with pytest.raises(ValueError, match="PanopticDeepLab has no label space"):
        model.eval()([_image_input(file_name="img.png")])
    with pytest.raises(ValueError, match="3 classes but the model predicts 7"):
        model.label_space = _space([1], 10, num_classes=3)
    assert model.label_space is None
    with pytest.raises(ValueError, match="PanopticDeepLabMapper"):
        model.train()([_image_input(file_name="img.png")])


@pytest.mark.parametrize(("rule", "read_at"), [("center", (0, 3)), ("centroid", (1, 1))])
def test_instance_score_rule_from_config(rule, read_at):
    """One L-shaped thing grown from the center (0, 3); its mask's centroid is (15/11, 15/11)
    -> (1, 1). The score reads the heatmap where the rule says; the panoptic map is the same."""
    cfg = _tiny_cfg()
    cfg.DATASETS.TRAIN = []
    cfg.DATASETS.TEST = []
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE_SCORE_RULE = rule
    model = PanopticDeepLab(cfg, label_space=_space([4], 1000)).eval()
    assert model.instance_score_rule == rule
    thing = torch.zeros(8, 8, dtype=torch.bool)
    thing[0, :6] = True
    thing[:6, 0] = True
    logits = torch.zeros(7, 8, 8)
    logits[4][thing] = 5.0
    logits[1][~thing] = 5.0
    heat = torch.zeros(1, 8, 8)
    heat[0, 0, 3], heat[0, 1, 1] = 0.9, 0.4
    out = model._panoptic(logits, heat, torch.zeros(2, 8, 8), model.label_space)
    id_map, segments = out["panoptic_seg"]
    assert torch.equal(id_map == 4001, thing)
    (instance,) = [s for s in segments if s["isthing"]]
    semantic = logits.softmax(dim=0)[4][thing].mean()
    assert instance["score"] == pytest.approx(float(semantic * heat[0][read_at]))
    assert out["instances"].scores.tolist() == pytest.approx([instance["score"]])


def test_unknown_instance_score_rule_is_an_error():
    cfg = _tiny_cfg()
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE_SCORE_RULE = "peak"
    with pytest.raises(ValueError, match="instance_score_rule"):
        PanopticDeepLab(cfg)
