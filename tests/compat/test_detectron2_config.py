"""Tests of panoptic2/compat/detectron2_config.py: Detectron2's own YAML files (copied under
data/detectron2_configs) load through the translation table, every key they set is translated
or dropped with a logged reason, the models build, and each translated config equals the
panoptic2 config that reproduces the same model-zoo entry, key by key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from panoptic2.compat.detectron2_config import (
    DETECTRON2_DEFAULTS,
    TRANSLATIONS,
    translate_detectron2_config,
)
from panoptic2.compat.detectron2_defaults import (
    CORE_DEFAULTS,
    DATASET_NAMES,
    DATASETS_WITHOUT_COUNTERPART,
    DEEPLAB_DEFAULTS,
    PANOPTIC_DEEPLAB_DEFAULTS,
)
from panoptic2.compat.detectron2_rules import same
from panoptic2.compat.detectron2_yaml import Detectron2YamlLoader, decode_value
from panoptic2.config import get_cfg, load_config
from panoptic2.config.config import ConfigError, UnknownConfigKeyError, _flatten, _load_tree
from panoptic2.data import DatasetCatalog
from panoptic2.model_zoo import get_config_file
from panoptic2.model_zoo.catalog import CHECKPOINTS
from panoptic2.modeling import build_model
from panoptic2.utils.url_handlers import resolve_url

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
D2 = DATA / "detectron2_configs"
CPU = ["MODEL.DEVICE", "cpu"]


def d2_path(name: str) -> Path:
    """A Detectron2 config name of the model-zoo catalog -> its copy under data/."""
    return D2 / (name if name.startswith("projects/") else f"configs/{name}")


PANOPTIC_FPN = "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"
MASK_RCNN = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
FASTER_RCNN = "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
PDL = "projects/Panoptic-DeepLab/configs/"
PDL_CITYSCAPES = (
    PDL
    + "Cityscapes-PanopticSegmentation/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml"
)
PDL_CITYSCAPES_DSCONV = PDL_CITYSCAPES.replace(".yaml", "_dsconv.yaml")
PDL_COCO_DSCONV = (
    PDL + "COCO-PanopticSegmentation/"
    "panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv.yaml"
)
DEEPLAB = "projects/DeepLab/configs/Cityscapes-SemanticSegmentation/"
DEEPLAB_V3 = DEEPLAB + "deeplab_v3_R_103_os16_mg124_poly_90k_bs16.yaml"
DEEPLAB_V3_PLUS = DEEPLAB + "deeplab_v3_plus_R_103_os16_mg124_poly_90k_bs16.yaml"
BUILT = [
    PANOPTIC_FPN,
    MASK_RCNN,
    FASTER_RCNN,
    PDL_CITYSCAPES,
    PDL_CITYSCAPES_DSCONV,
    PDL_COCO_DSCONV,
    DEEPLAB_V3,
    DEEPLAB_V3_PLUS,
]

# Keys where a translated config may differ from our config of the same zoo entry: keys that
# change neither the model, the solver nor the input. (MODEL.WEIGHTS may be written as
# detectron2://X or its https URL; the test checks both resolve to the same file.)
_OUTPUT_DIR = {"OUTPUT_DIR": "where results are written: ours is one folder per config"}
_BEST = {
    "TEST.BEST_CHECKPOINT_METRIC": "our recipe also keeps the best checkpoint; Detectron2 "
    "has no such key"
}
_CITYSCAPES_GROUPING = {
    "DATALOADER.ASPECT_RATIO_GROUPING": "every Cityscapes image is 2048 x 1024, one aspect-ratio "
    "group, so grouping never changes a batch"
}
ALLOWED_DIFFERENCES = {
    **dict.fromkeys(CHECKPOINTS, _OUTPUT_DIR),
    PDL_CITYSCAPES: {**_OUTPUT_DIR, **_BEST, **_CITYSCAPES_GROUPING},
    PDL_CITYSCAPES_DSCONV: {**_OUTPUT_DIR, **_BEST, **_CITYSCAPES_GROUPING},
    PDL_COCO_DSCONV: {**_OUTPUT_DIR, **_BEST},
    **dict.fromkeys(
        (DEEPLAB_V3, DEEPLAB_V3_PLUS),
        {
            **_OUTPUT_DIR,
            **_BEST,
            **_CITYSCAPES_GROUPING,
            "TEST.EVAL_PERIOD": "our recipe evaluates every 10k iterations; evaluating does not "
            "change training",
        },
    ),
}


def _file_keys(path: Path) -> dict[str, str]:
    """Every leaf key the file and its _BASE_ chain set -> the file that set it last."""
    tree = _load_tree(str(path), loader=Detectron2YamlLoader)
    return {k: tree.sources[k] for k in _flatten(tree.data)}


def test_the_table_has_one_rule_for_every_detectron2_key():
    detectron2_keys = {**CORE_DEFAULTS, **DEEPLAB_DEFAULTS, **PANOPTIC_DEEPLAB_DEFAULTS}
    assert set(TRANSLATIONS) == set(detectron2_keys)
    ours = _flatten(get_cfg())
    copied = [k for k, rule in TRANSLATIONS.items() if rule is same]
    assert len(copied) > 100
    assert [k for k in copied if k not in ours] == []


def test_dataset_table_matches_the_registered_datasets():
    assert all(ours in DatasetCatalog for ours in DATASET_NAMES.values())
    assert [n for n in DATASETS_WITHOUT_COUNTERPART if n in DatasetCatalog] == []


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_translated_zoo_config_equals_ours(name, caplog):
    """Detectron2's file + its defaults, translated, is our config of the same zoo entry."""
    path = d2_path(name)
    with caplog.at_level(logging.INFO, logger="panoptic2.compat.detectron2_config"):
        translated = _flatten(load_config(str(path), CPU))
    ours = _flatten(load_config(get_config_file(CHECKPOINTS[name].config), CPU))
    assert set(translated) == set(ours)
    differences = {k for k in ours if translated[k] != ours[k]} - {"MODEL.WEIGHTS"}
    assert differences == set(ALLOWED_DIFFERENCES[name])
    assert resolve_url(translated["MODEL.WEIGHTS"]) == resolve_url(ours["MODEL.WEIGHTS"])

    # Every key the files set is logged, translated or dropped with its reason.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for key in _file_keys(path):
        assert f"Detectron2 {key} = " in logged, key


@pytest.mark.parametrize("name", [PANOPTIC_FPN, PDL_COCO_DSCONV, DEEPLAB_V3_PLUS])
def test_every_file_key_has_a_record_with_its_file(name):
    path = d2_path(name)
    raw = _load_tree(str(path), loader=Detectron2YamlLoader)
    values = {k: decode_value(v) for k, v in _flatten(raw.data).items()}
    result = translate_detectron2_config(values, _file_keys(path))
    records = {r.detectron2_key: r for r in result.records}
    for key, file in _file_keys(path).items():
        assert records[key].source == file
        assert records[key].targets or records[key].note, key
    assert all(r.targets or r.note for r in result.records)
    defaults = [r for r in result.records if r.source == DETECTRON2_DEFAULTS]
    assert len(defaults) + len(_file_keys(path)) == len(result.records)


@pytest.mark.parametrize("name", BUILT)
def test_translated_model_builds(name):
    cfg = load_config(str(d2_path(name)), CPU)
    model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE
    assert sum(p.numel() for p in model.parameters()) > 10_000_000


def test_translations_that_change_names_or_values():
    """Hand-checked against Detectron2's files and defaults."""
    fpn = load_config(str(d2_path(PANOPTIC_FPN)), CPU)
    # Not in the YAML: Detectron2's defaults (MSRA weights: BGR, FrozenBN, stride in 1x1).
    assert (fpn.INPUT.FORMAT, fpn.MODEL.RESNETS.NORM) == ("BGR", "FrozenBN")
    assert (fpn.MODEL.RESNETS.STRIDE_IN_1X1, fpn.MODEL.BACKBONE.FREEZE_AT) == (True, 2)
    assert fpn.MODEL.PIXEL_STD == [1.0, 1.0, 1.0]
    assert fpn.INPUT.DATASET_MAPPER_NAME == "PanopticFPNMapper"

    coco = load_config(str(d2_path(PDL_COCO_DSCONV)), CPU)
    head = coco.MODEL.SEM_SEG_HEAD
    assert (head.NUM_CLASSES, head.IGNORE_VALUE, head.PREDICT_IGNORE_CLASS) == (134, 0, False)
    assert coco.MODEL.BACKBONE.NAME == "build_resnet_backbone"
    assert coco.MODEL.INS_EMBED_HEAD.USE_DEPTHWISE_SEPARABLE_CONV is True
    assert coco.MODEL.INS_EMBED_HEAD.CENTER_HEAD_USE_DEPTHWISE_SEPARABLE_CONV is False
    assert [int(x * 0.1 * 640) for x in range(5, 16)] == coco.INPUT.MIN_SIZE_TRAIN
    assert (coco.SOLVER.OPTIMIZER, coco.INPUT.GAUSSIAN_SIGMA) == ("Adam", 8.0)
    assert coco.MODEL.PANOPTIC_DEEPLAB.INSTANCE_SCORE_RULE == "centroid"
    # An evaluation config without training data: the test dataset's label space decides.
    eval_only = load_config(str(d2_path(PDL_COCO_DSCONV)), [*CPU, "DATASETS.TRAIN", "()"])
    assert eval_only.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 134

    plus = load_config(str(d2_path(DEEPLAB_V3_PLUS)), CPU)
    deeplab = plus.MODEL.DEEPLAB
    assert (deeplab.IN_FEATURE, deeplab.PROJECT_FEATURES) == ("res5", ["res2"])
    assert deeplab.ASPP_POOL_KERNEL_SIZE == [512 // 16, 1024 // 16]
    assert (deeplab.DECODER_CHANNELS, deeplab.LOSS_TYPE) == (256, "hard_pixel_mining")
    assert plus.PLUGINS == ["projects.DeepLab.deeplab"]
    # Base-RCNN-DilatedC5.yaml's multi-step schedule is not read by the poly schedule.
    assert plus.SOLVER.STEPS == get_cfg().SOLVER.STEPS


def _write(tmp_path: Path, text: str, name: str = "d2.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE_RCNN = D2 / "configs" / "Base-RCNN-FPN.yaml"


@pytest.mark.parametrize(
    ("body", "key", "error", "why"),
    [
        ("MODEL:\n  FOO_HEAD:\n    BAR: 1\n", "MODEL.FOO_HEAD.BAR", UnknownConfigKeyError, ""),
        ("MODEL:\n  KEYPOINT_ON: True\n", "MODEL.KEYPOINT_ON", ConfigError, "keypoint"),
        (
            "MODEL:\n  RESNETS:\n    DEFORM_ON_PER_STAGE: [False, True, True, True]\n",
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
            ConfigError,
            "deformable",
        ),
        (
            "MODEL:\n  ROI_HEADS:\n    NAME: CascadeROIHeads\n",
            "MODEL.ROI_HEADS.NAME",
            ConfigError,
            "StandardROIHeads",
        ),
        ("TEST:\n  AUG:\n    ENABLED: True\n", "TEST.AUG.ENABLED", ConfigError, "augmentation"),
        (
            "DATASETS:\n  TRAIN: ('coco_2014_train',)\n",
            "DATASETS.TRAIN",
            ConfigError,
            "coco_2014_train",
        ),
        # A Panoptic-DeepLab project key in a config without that project.
        (
            "MODEL:\n  SEM_SEG_HEAD:\n    ASPP_CHANNELS: 64\n",
            "MODEL.SEM_SEG_HEAD.ASPP_CHANNELS",
            UnknownConfigKeyError,
            "",
        ),
    ],
)
def test_untranslatable_keys_are_refused_naming_file_and_key(tmp_path, body, key, error, why):
    path = _write(tmp_path, f"_BASE_: {BASE_RCNN}\n{body}")
    with pytest.raises(error) as info:
        load_config(str(path), CPU)
    message = str(info.value)
    assert f"'{key}'" in message and f"'{path}'" in message and why in message


def test_overrides_are_detectron2_keys_and_panoptic2_only_keys_pass(caplog):
    overrides = [
        "SOLVER.IMS_PER_BATCH",
        "2",
        "DATASETS.TEST=('coco_2017_val_panoptic_separated',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "3",
        "MODEL.ALLOW_PARTIAL_WEIGHTS",
        "True",
        "TEST.MAX_IMAGES=5",
    ]
    with caplog.at_level(logging.INFO, logger="panoptic2.compat.detectron2_config"):
        cfg = load_config(str(d2_path(PANOPTIC_FPN)), [*CPU, *overrides])
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.MODEL.ROI_HEADS.NUM_CLASSES) == (2, 3)
    assert cfg.DATASETS.TEST == ["coco_2017_val_panoptic_separated"]
    assert (cfg.MODEL.ALLOW_PARTIAL_WEIGHTS, cfg.TEST.MAX_IMAGES) == (True, 5)
    assert "SOLVER.IMS_PER_BATCH = 2 -> SOLVER.IMS_PER_BATCH = 2 [the command line]" in caplog.text
    with pytest.raises(ConfigError, match=r"'MODEL.KEYPOINT_ON'.*the command line"):
        load_config(str(d2_path(PANOPTIC_FPN)), ["MODEL.KEYPOINT_ON", "True"])
    with pytest.raises(UnknownConfigKeyError, match="the command line"):
        load_config(str(d2_path(PANOPTIC_FPN)), ["MODEL.FOO", "1"])


def test_format_detection_and_explicit_formats(tmp_path):
    detectron2_file = str(d2_path(MASK_RCNN))
    with pytest.raises(UnknownConfigKeyError, match="MODEL.ROI_BOX_HEAD.NAME"):
        load_config(detectron2_file, CPU, config_format="panoptic2")
    with pytest.raises(ValueError, match="config_format"):
        load_config(detectron2_file, CPU, config_format="yacs")
    # Without VERSION: 2, a Detectron2 file is Detectron2's only when told.
    body = (
        "MODEL:\n  ROI_HEADS:\n    NAME: StandardROIHeads\n"
        "  ROI_BOX_HEAD:\n    NAME: FastRCNNConvFCHead\n    NUM_FC: 2\n"
    )
    path = str(_write(tmp_path, body))
    with pytest.raises(UnknownConfigKeyError, match="MODEL.ROI_BOX_HEAD.NAME"):
        load_config(path, CPU)
    cfg = load_config(path, CPU, config_format="detectron2")
    assert cfg.MODEL.ROI_BOX_HEAD.NUM_FC == 2 and cfg.INPUT.FORMAT == "BGR"
    # Our own configs are never taken for Detectron2's, and are not Detectron2 configs.
    ours = str(REPO / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml")
    assert load_config(ours, CPU) == load_config(ours, CPU, config_format="panoptic2")
    with pytest.raises(UnknownConfigKeyError, match="is not a key of Detectron2's config"):
        load_config(ours, CPU, config_format="detectron2")


def test_merge_from_file_translates_detectron2_files():
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_path(FASTER_RCNN)))
    assert (cfg.MODEL.MASK_ON, cfg.MODEL.RESNETS.NORM, cfg.INPUT.FORMAT) == (
        False,
        "FrozenBN",
        "BGR",
    )


@pytest.mark.slow
def test_train_net_trains_and_evaluates_a_detectron2_config(tmp_path):
    """tools/train_net.py --config-format detectron2 on a Detectron2-format shapes config:
    two iterations, an evaluation, the translation in the run's log and config.yaml."""
    config = DATA / "shapes_panoptic_deeplab_R_18_detectron2.yaml"
    cmd = [
        sys.executable,
        str(REPO / "tools" / "train_net.py"),
        "--config-file",
        str(config),
        "--config-format",
        "detectron2",
        "OUTPUT_DIR",
        str(tmp_path),
        "TEST.MAX_IMAGES",
        "2",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dumped = yaml.safe_load((tmp_path / "config.yaml").read_text())
    head = dumped["MODEL"]["SEM_SEG_HEAD"]
    assert (head["NUM_CLASSES"], head["IGNORE_VALUE"], head["PREDICT_IGNORE_CLASS"]) == (
        7,
        0,
        False,
    )
    assert dumped["SOLVER"]["OPTIMIZER"] == "Adam"
    assert dumped["INPUT"]["DATASET_MAPPER_NAME"] == "PanopticDeepLabMapper"
    log = (tmp_path / "log.txt").read_text()
    assert "Detectron2 SOLVER.OPTIMIZER = 'ADAM' -> SOLVER.OPTIMIZER = 'Adam'" in log
    assert (
        "Detectron2 MODEL.SEM_SEG_HEAD.NUM_CLASSES = 6 -> MODEL.SEM_SEG_HEAD.NUM_CLASSES = 7" in log
    )
    assert (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "inference" / "shapes_panoptic_val" / "results.json").is_file()
