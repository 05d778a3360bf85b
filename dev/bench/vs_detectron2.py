"""Speed of panoptic2 against Detectron2, same weights and inputs, on the CPU.

Two models, each built by both libraries from their own configs:

* Panoptic FPN R50 (Detectron2 ``configs/COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml``,
  ours ``configs/coco/panoptic_fpn_R_50_1x.yaml``), images 480x640;
* Panoptic-DeepLab R-52 (Detectron2 ``projects/Panoptic-DeepLab/configs/Cityscapes-
  PanopticSegmentation/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml``,
  ours ``configs/cityscapes/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml``),
  images 512x1024; BatchNorm for SyncBN on both sides (one process).

and two figures for each: **inference** seconds per image (eval mode, no gradients,
network + post-processing, batch 1) and **training** seconds per iteration (each library's
``SimpleTrainer.run_step`` with its optimizer from its config: forward, losses, backward,
step; batch 2, the same batch every step, the RNG re-seeded alike before each step).

Weights: Detectron2's model is built (seed 0), its norm statistics set from a forward pass
of the test image (so activations have a trained network's scale), a few output layers
given weights that make it predict instances (a random network predicts none, and its
post-processing would cost nothing), then saved in Detectron2's ``.pth`` format and loaded
into ours through ``Checkpointer().load`` (the converter chosen from the key names); every
tensor must load, none be left over. Inputs: a photo (matplotlib's sample
``grace_hopper.jpg``) resized to the size, the same tensors given to both models; training
adds synthetic targets (ellipse instances over stuff bands) in each library's format.

The runs interleave (Detectron2, panoptic2, panoptic2, Detectron2, ...) after one warm-up
call each; the script prints medians and the ratios, and exits non-zero when the outputs
differ: panoptic maps equal on fewer than 99.99 % of pixels, semantic logits further apart
than 1e-4 (relative to their range), other instances (count, classes, scores within
1e-4, boxes within 1e-2 pixels), or first training losses (same weights, batch and seed)
further apart than 1e-4 relative (1e-2 for ``loss_cls``, see ``SAMPLED_LOSS_TOLERANCE``).

Detectron2 is not a dependency of panoptic2. To run this, build it from source beside the
main environment, in a virtualenv that sees the same torch::

    git clone https://github.com/facebookresearch/detectron2 /tmp/d2src
    python -m venv --system-site-packages /work/d2-venv    # same torch as panoptic2's
    /work/d2-venv/bin/pip install wheel "omegaconf>=2.1,<2.4" "hydra-core>=1.1"
    /work/d2-venv/bin/pip install --no-deps --no-build-isolation \\
        git+https://github.com/cocodataset/panopticapi.git   # Panoptic-DeepLab imports it
    cd /tmp/d2src && MAX_JOBS=2 /work/d2-venv/bin/python setup.py build_ext --inplace
    cd /path/to/panoptic2 && /work/d2-venv/bin/python dev/bench/vs_detectron2.py \\
        --detectron2-root /tmp/d2src [--models fpn deeplab] [--tasks inference train] \\
        [--rounds 5 --train-rounds 3 --threads 1]

(Detectron2's other dependencies, fvcore, iopath, pycocotools..., are panoptic2's too.)
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from panoptic2.checkpoint import Checkpointer  # noqa: E402
from panoptic2.config import load_config  # noqa: E402
from panoptic2.engine import SimpleTrainer  # noqa: E402
from panoptic2.modeling import build_model  # noqa: E402
from panoptic2.solver import build_optimizer  # noqa: E402
from panoptic2.structures import BitMasks, Boxes, Instances, masks_to_boxes  # noqa: E402
from panoptic2.utils.benchmark import TimingSummary, interleaved_times  # noqa: E402
from panoptic2.utils.events import EventStorage  # noqa: E402

INSTALL = __doc__[__doc__.index("Detectron2 is not a dependency") :]

PIXEL_AGREEMENT = 0.9999
LOGIT_TOLERANCE = 1e-4
# First training losses: same weights, batch and seed, so equal up to float rounding.
LOSS_TOLERANCE = 1e-4
# The ROI box classifier's loss averages over background proposals drawn at random, by
# index, from the proposal list. Both libraries' lists hold the same boxes (998 and 1000 of
# 1000 on this script's FPN batch), but where objectness scores tie within the logits'
# float noise (~1e-5) about 1 % of them sit at other positions, so the same random indices
# draw some other background boxes (the foreground samples are identical): loss_cls then
# differs by ~1e-3 relative, the other losses by < 1e-5.
SAMPLED_LOSS_TOLERANCE = {"loss_cls": 1e-2}
SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE = 1e-2


def import_detectron2(root: str) -> None:
    """Makes Detectron2 and its Panoptic-DeepLab project importable, or exits saying how.

    The project is imported as ``detectron2.projects.panoptic_deeplab``, which a source
    build of Detectron2 maps to ``projects/Panoptic-DeepLab`` (as its ``train_net.py`` does).
    """
    if root:
        sys.path.insert(0, root)
    try:
        import detectron2._C  # noqa: F401  (the built extension)
        import detectron2.projects.panoptic_deeplab  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"Cannot import Detectron2 ({e}).\n\n{INSTALL}") from None


def detectron2_root() -> Path:
    import detectron2

    return Path(detectron2.__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ inputs
def photo(height: int, width: int, order: str) -> torch.Tensor:
    """(3, height, width) uint8 of matplotlib's sample photo, in ``order`` ("RGB"/"BGR")."""
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    bgr = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (width, height))
    image = bgr if order == "BGR" else bgr[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


@dataclass
class Scene:
    """Synthetic annotations: stuff bands, with ellipse instances over them."""

    stuff: np.ndarray  # (H, W) int64 stuff index 0..num_stuff-1 of each band
    masks: np.ndarray  # (K, H, W) bool instance masks (no overlap)
    classes: np.ndarray  # (K,) int64 thing index 0..num_things-1


def scene(height: int, width: int, num_stuff: int, num_things: int, seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    rows = np.arange(height)[:, None].repeat(width, 1)
    stuff = (rows * 5 // height + seed) % num_stuff
    yy, xx = np.mgrid[:height, :width]
    masks, taken = [], np.zeros((height, width), bool)
    for _ in range(8):
        cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.1, 0.9) * width
        ry, rx = rng.uniform(0.05, 0.2) * height, rng.uniform(0.03, 0.12) * width
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        mask &= ~taken
        if mask.sum() > 64:
            masks.append(mask)
            taken |= mask
    classes = rng.integers(0, num_things, len(masks))
    return Scene(stuff.astype(np.int64), np.stack(masks), classes.astype(np.int64))


# ------------------------------------------------------------------------------ weights
def calibrate_norms(model: torch.nn.Module, run: Callable[[], object]) -> None:
    """Sets every BatchNorm/FrozenBN's statistics to those of its input in one forward pass
    (layer by layer, so each layer sees normalised inputs), as a trained network's are."""
    hooks = []

    def set_stats(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

    for module in model.modules():
        if type(module).__name__ in ("FrozenBatchNorm2d", "BatchNorm2d", "SyncBatchNorm"):
            hooks.append(module.register_forward_pre_hook(set_stats))
    model.eval()
    with torch.no_grad():
        run()
    for hook in hooks:
        hook.remove()


def save_detectron2_checkpoint(model: torch.nn.Module, folder: str) -> str:
    """The model's weights as Detectron2 saves them (``{"model": state_dict}`` in a .pth)."""
    path = os.path.join(folder, "detectron2_model.pth")
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return path


def load_into_ours(model: torch.nn.Module, path: str) -> None:
    """Loads a Detectron2 checkpoint through our normal path; every tensor must load."""
    checkpointer = Checkpointer(model)
    checkpointer.load(path)
    report = checkpointer.last_load_report
    problems = {
        "not loaded": report.not_loaded,
        "left over": report.unexpected,
    }
    if any(problems.values()) or not report.whole_model:
        raise SystemExit(f"Detectron2 weights did not load whole: {problems}")
    print(f"  loaded {len(report.loaded)} tensors ({report.loaded_numel} values) from {path}")


# ------------------------------------------------------------------------------ training
def timed_trainers(d2_model, d2_optimizer, d2_batch, model, optimizer, batch, seed=0):
    """Step functions of both libraries' SimpleTrainer on a repeated batch, seeded alike."""
    from detectron2.engine import SimpleTrainer as D2SimpleTrainer

    d2_model.train()
    model.train()
    d2_trainer = D2SimpleTrainer(d2_model, itertools.repeat(d2_batch), d2_optimizer)
    trainer = SimpleTrainer(model, itertools.repeat(batch), optimizer)
    counters = {"d2": itertools.count(seed), "ours": itertools.count(seed)}

    def d2_step() -> None:
        torch.manual_seed(next(counters["d2"]))
        d2_trainer.run_step()
        d2_trainer.iter += 1

    def step() -> None:
        torch.manual_seed(next(counters["ours"]))
        trainer.run_step()
        trainer.iter += 1

    return d2_step, step


def first_losses(d2_model, d2_batch, model, batch) -> tuple[dict, dict]:
    """Both models' losses on the batch, same seed (for the record: same work)."""
    d2_model.train()
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        d2 = {k: float(v) for k, v in d2_model(d2_batch).items()}
        torch.manual_seed(0)
        ours = {k: float(v) for k, v in model(batch).items()}
    return d2, ours


# ------------------------------------------------------------------------------ checks
class Mismatch(list):
    """Output differences found (empty: outputs agree)."""


def compare_logits(name: str, a: torch.Tensor, b: torch.Tensor, out: Mismatch) -> float:
    scale = max(float(a.abs().max()), 1.0)
    diff = float((a - b).abs().max()) / scale
    if a.shape != b.shape or diff > LOGIT_TOLERANCE:
        out.append(f"{name}: semantic logits differ by {diff:.2e} of their range")
    return diff


def compare_losses(name: str, d2: dict, ours: dict, out: Mismatch) -> None:
    """Same loss names, each within LOSS_TOLERANCE (relative; SAMPLED_LOSS_TOLERANCE for the
    losses of randomly drawn background samples)."""
    if set(d2) != set(ours):
        out.append(f"{name}: losses {sorted(d2)} vs {sorted(ours)}")
        return
    for key, value in d2.items():
        tolerance = SAMPLED_LOSS_TOLERANCE.get(key, LOSS_TOLERANCE)
        if abs(ours[key] - value) > tolerance * max(abs(value), 1e-8):
            out.append(f"{name}: first {key} {value:.6g} (Detectron2) vs {ours[key]:.6g}")


def compare_maps(name: str, a: torch.Tensor, b: torch.Tensor, out: Mismatch) -> float:
    agree = float((a == b).double().mean()) if a.shape == b.shape else 0.0
    if agree < PIXEL_AGREEMENT:
        out.append(f"{name}: panoptic maps agree on {100 * agree:.4f} % of pixels")
    return agree


def compare_instances(name: str, d2, ours, class_map, out: Mismatch) -> int:
    """Same number, classes (through ``class_map``), scores and boxes."""
    if len(d2) != len(ours):
        out.append(f"{name}: {len(d2)} instances from Detectron2, {len(ours)} from panoptic2")
        return len(d2)
    if not len(d2):
        return 0
    mapped = torch.tensor([class_map[int(c)] for c in d2.pred_classes])
    if not torch.equal(mapped, ours.pred_classes.cpu()):
        out.append(f"{name}: instance classes differ")
    score_diff = float((d2.scores - ours.scores).abs().max())
    if score_diff > SCORE_TOLERANCE:
        out.append(f"{name}: instance scores differ by {score_diff:.2e}")
    if d2.has("pred_boxes"):
        box_diff = float((d2.pred_boxes.tensor - ours.pred_boxes.tensor).abs().max())
        if box_diff > BOX_TOLERANCE:
            out.append(f"{name}: boxes differ by {box_diff:.2e} pixels")
    if d2.has("pred_masks"):
        masks_agree = float((d2.pred_masks == ours.pred_masks).double().mean())
        if masks_agree < PIXEL_AGREEMENT:
            out.append(f"{name}: instance masks agree on {100 * masks_agree:.4f} % of pixels")
    return len(d2)


# ------------------------------------------------------------------------------ cases
@dataclass
class Case:
    """One model built by both libraries, with its inputs for both."""

    name: str
    d2_model: torch.nn.Module
    model: torch.nn.Module
    d2_optimizer: torch.optim.Optimizer | None
    optimizer: torch.optim.Optimizer | None
    inputs: list[dict]
    d2_train_batch: list[dict]
    train_batch: list[dict]
    check: Callable[[Any, Any, Mismatch], dict[str, Any]]


def _d2_cfg(config_file: Path, deeplab: bool, overrides: list[str]):
    from detectron2.config import get_cfg

    cfg = get_cfg()
    if deeplab:
        from detectron2.projects.panoptic_deeplab import add_panoptic_deeplab_config

        add_panoptic_deeplab_config(cfg)
    cfg.merge_from_file(str(config_file))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *overrides])
    cfg.freeze()
    return cfg


def _ours(config: str, overrides: list[str]):
    cfg = load_config(str(REPO / config), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *overrides])
    return cfg, build_model(cfg)


def panoptic_fpn_case(height: int, width: int, batch_size: int, folder: str) -> Case:
    """Panoptic FPN R50 on a 640x480 photo (sizes as given)."""
    from detectron2.modeling import build_model as d2_build_model
    from detectron2.solver import build_optimizer as d2_build_optimizer
    from detectron2.structures import BitMasks as D2BitMasks
    from detectron2.structures import Boxes as D2Boxes
    from detectron2.structures import Instances as D2Instances

    d2_cfg = _d2_cfg(
        detectron2_root() / "configs/COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml",
        False,
        [],
    )
    torch.manual_seed(0)
    d2_model = d2_build_model(d2_cfg)
    image = photo(height, width, "BGR")
    inputs = [{"image": image, "height": height, "width": width}]
    calibrate_norms(d2_model, lambda: d2_model(inputs))
    with torch.no_grad():
        # Class logits that vary with the box (a random head scores every box ~1/81 and
        # keeps none), background less likely, so that boxes pass the test thresholds.
        predictor = d2_model.roi_heads.box_predictor
        predictor.cls_score.weight.normal_(0, 0.02)
        predictor.cls_score.bias[-1] = -2.0
    path = save_detectron2_checkpoint(d2_model, folder)
    cfg, model = _ours("configs/coco/panoptic_fpn_R_50_1x.yaml", [])
    load_into_ours(model, path)
    space = model.label_space
    things = list(space.thing_ids)

    d2_batch, batch = [], []
    for i in range(batch_size):
        img = image if i % 2 == 0 else image.flip(-1)
        s = scene(height, width, 53, 80, seed=i)
        masks = torch.from_numpy(s.masks)
        sem = torch.from_numpy(s.stuff + 1)
        sem[masks.any(0)] = 0
        boxes = masks_to_boxes(masks)
        common = {"image": img, "height": height, "width": width, "sem_seg": sem}
        d2_batch.append(
            {
                **common,
                "instances": D2Instances(
                    (height, width),
                    gt_boxes=D2Boxes(boxes),
                    gt_classes=torch.from_numpy(s.classes),
                    gt_masks=D2BitMasks(masks),
                ),
            }
        )
        batch.append(
            {
                **common,
                "instances": Instances(
                    (height, width),
                    gt_boxes=Boxes(boxes),
                    gt_classes=torch.tensor([things[c] for c in s.classes]),
                    gt_masks=BitMasks(masks),
                ),
            }
        )

    thing_of = dict(enumerate(things))
    stuff_of = {i + 1: c for i, c in enumerate(space.panoptic_fpn_stuff_ids)}

    def check(d2_out, out, mismatch: Mismatch) -> dict[str, Any]:
        d2_out, out = d2_out[0], out[0]
        logit_diff = compare_logits("Panoptic FPN", d2_out["sem_seg"], out["sem_seg"], mismatch)
        count = compare_instances(
            "Panoptic FPN", d2_out["instances"], out["instances"], thing_of, mismatch
        )
        d2_ids, d2_segments = d2_out["panoptic_seg"]
        ids, segments = out["panoptic_seg"]
        # Detectron2 marks void 0, we mark it -1; both number segments 1..N in the same order.
        agree = compare_maps("Panoptic FPN", d2_ids.long(), ids.clamp(min=0), mismatch)
        d2_categories = [
            (thing_of if s["isthing"] else stuff_of)[s["category_id"]] for s in d2_segments
        ]
        if d2_categories != [s["category_id"] for s in segments]:
            mismatch.append("Panoptic FPN: segment categories differ")
        return {
            "instances": count,
            "segments": len(segments),
            "pixel_agreement": agree,
            "logit_diff": logit_diff,
        }

    return Case(
        name="Panoptic FPN R50",
        d2_model=d2_model,
        model=model,
        d2_optimizer=d2_build_optimizer(d2_cfg, d2_model),
        optimizer=build_optimizer(cfg, model),
        inputs=inputs,
        d2_train_batch=d2_batch,
        train_batch=batch,
        check=check,
    )


def _deeplab_targets(s: Scene, thing_ids: list[int], stuff_ids: list[int], sigma: float):
    """Panoptic-DeepLab targets of a scene: semantic, center heatmap and offsets, weights."""
    height, width = s.stuff.shape
    sem = np.asarray(stuff_ids)[s.stuff]
    center = np.zeros((height, width), np.float32)
    offset = np.zeros((2, height, width), np.float32)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    weights = np.ones((height, width), np.float32)
    for mask, cls in zip(s.masks, s.classes):
        sem[mask] = thing_ids[cls]
        cy, cx = yy[mask].mean(), xx[mask].mean()
        center = np.maximum(center, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)))
        offset[0][mask] = cy - yy[mask]
        offset[1][mask] = cx - xx[mask]
        if mask.sum() < 4096:
            weights[mask] = 3.0
    things = s.masks.any(0).astype(np.float32)
    return {
        "sem_seg": torch.from_numpy(sem.astype(np.int64)),
        "center": torch.from_numpy(center),
        "offset": torch.from_numpy(offset),
        "sem_seg_weights": torch.from_numpy(weights),
        "center_weights": torch.ones(height, width),
        "offset_weights": torch.from_numpy(things),
    }


def panoptic_deeplab_case(height: int, width: int, batch_size: int, folder: str) -> Case:
    """Panoptic-DeepLab R-52 on a 1024x512 photo (sizes as given)."""
    from detectron2.modeling import build_model as d2_build_model

    project = detectron2_root() / "projects" / "Panoptic-DeepLab"
    norms = ["MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]
    norms += ["MODEL.INS_EMBED_HEAD.NORM", "BN"]
    d2_cfg = _d2_cfg(
        project / "configs/Cityscapes-PanopticSegmentation/"
        "panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml",
        True,
        norms,
    )
    torch.manual_seed(0)
    d2_model = d2_build_model(d2_cfg)
    image = photo(height, width, "RGB")
    inputs = [{"image": image, "height": height, "width": width}]
    calibrate_norms(d2_model, lambda: d2_model(inputs))
    with torch.no_grad():
        # A center heatmap with a few dozen peaks above the threshold (a random head's is
        # ~0 everywhere: no instance, nothing to group).
        head = d2_model.ins_embed_head
        head.center_predictor.weight.normal_(0, 0.05)
        head.center_predictor.bias.fill_(-0.25)
        head.offset_predictor.weight.normal_(0, 0.5)
    spec = importlib.util.spec_from_file_location("d2_pdl_train_net", project / "train_net.py")
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    path = save_detectron2_checkpoint(d2_model, folder)
    cfg, model = _ours(
        "configs/cityscapes/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml",
        norms,
    )
    load_into_ours(model, path)
    space = model.label_space
    thing_ids = list(space.thing_ids)
    stuff_ids = [c for c in range(space.num_classes) if c not in set(thing_ids)]

    d2_batch, batch = [], []
    for i in range(batch_size):
        img = image if i % 2 == 0 else image.flip(-1)
        targets = _deeplab_targets(
            scene(height, width, len(stuff_ids), len(thing_ids), seed=i),
            thing_ids,
            stuff_ids,
            cfg.INPUT.GAUSSIAN_SIGMA,
        )
        common = {"image": img, "height": height, "width": width}
        # Detectron2's target generator gives center and offset weights as (1, H, W) (its
        # losses broadcast them against (N, C, H, W) predictions); ours take (H, W).
        d2_weights = {k: targets[k][None] for k in ("center_weights", "offset_weights")}
        d2_batch.append({**common, **targets, **d2_weights})
        batch.append({**common, **targets, "center": targets["center"][None]})

    def check(d2_out, out, mismatch: Mismatch) -> dict[str, Any]:
        d2_out, out = d2_out[0], out[0]
        name = "Panoptic-DeepLab"
        logit_diff = compare_logits(name, d2_out["sem_seg"], out["sem_seg"], mismatch)
        agree = compare_maps(name, d2_out["panoptic_seg"][0], out["panoptic_seg"][0], mismatch)
        identity = {c: c for c in range(space.num_classes)}
        count = compare_instances(name, d2_out["instances"], out["instances"], identity, mismatch)
        return {"instances": count, "pixel_agreement": agree, "logit_diff": logit_diff}

    return Case(
        name="Panoptic-DeepLab R-52",
        d2_model=d2_model,
        model=model,
        d2_optimizer=train_net.Trainer.build_optimizer(d2_cfg, d2_model),
        optimizer=build_optimizer(cfg, model),
        inputs=inputs,
        d2_train_batch=d2_batch,
        train_batch=batch,
        check=check,
    )


# ------------------------------------------------------------------------------ main
def run_inference(case: Case, rounds: int, mismatch: Mismatch) -> dict[str, Any]:
    case.d2_model.eval()
    case.model.eval()
    with torch.no_grad():
        details = case.check(case.d2_model(case.inputs), case.model(case.inputs), mismatch)
        times = interleaved_times(
            {
                "detectron2": lambda: case.d2_model(case.inputs),
                "panoptic2": lambda: case.model(case.inputs),
            },
            rounds=rounds,
        )
    return {"times": times, **details}


def run_training(case: Case, rounds: int, mismatch: Mismatch) -> dict[str, Any]:
    from detectron2.utils.events import EventStorage as D2EventStorage

    d2_step, step = timed_trainers(
        case.d2_model,
        case.d2_optimizer,
        case.d2_train_batch,
        case.model,
        case.optimizer,
        case.train_batch,
    )
    # The models record metrics (RPN statistics) in the storage of their library.
    with D2EventStorage(0), EventStorage(0):
        d2_losses, losses = first_losses(
            case.d2_model, case.d2_train_batch, case.model, case.train_batch
        )
        times = interleaved_times({"detectron2": d2_step, "panoptic2": step}, rounds=rounds)
    compare_losses(case.name, d2_losses, losses, mismatch)
    return {"times": times, "first_losses": {"detectron2": d2_losses, "panoptic2": losses}}


def run_case(case: Case, args: argparse.Namespace, mismatch: Mismatch) -> dict[str, dict]:
    """The figures ``--tasks`` asks for, each printed as soon as measured."""
    jobs = {
        "inference s/image": lambda: run_inference(case, args.rounds, mismatch),
        "train s/iter": lambda: run_training(case, args.train_rounds, mismatch),
    }
    runs = {}
    for what, job in jobs.items():
        if what.split()[0] not in args.tasks:
            continue
        run = runs[what] = job()
        d2 = TimingSummary.of(run["times"]["detectron2"]).median
        ours = TimingSummary.of(run["times"]["panoptic2"]).median
        print(f"  {what}: Detectron2 {d2:.4f}, panoptic2 {ours:.4f} (medians)", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectron2-root", default="", help="Detectron2 source tree (built)")
    parser.add_argument(
        "--models", nargs="+", choices=("fpn", "deeplab"), default=["fpn", "deeplab"]
    )
    parser.add_argument(
        "--tasks", nargs="+", choices=("inference", "train"), default=["inference", "train"]
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed inference calls each")
    parser.add_argument("--train-rounds", type=int, default=3, help="timed training steps each")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--fpn-size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument(
        "--deeplab-size", type=int, nargs=2, default=[512, 1024], metavar=("H", "W")
    )
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    import_detectron2(args.detectron2_root)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    builders = {
        "fpn": (panoptic_fpn_case, args.fpn_size),
        "deeplab": (panoptic_deeplab_case, args.deeplab_size),
    }
    rows, record, mismatch = [], {}, Mismatch()
    with tempfile.TemporaryDirectory() as folder:
        for key in args.models:
            build, (height, width) = builders[key]
            case = build(height, width, args.train_batch, folder)
            print(f"{case.name}: {height}x{width}, train batch {args.train_batch}")
            for what, run in run_case(case, args, mismatch).items():
                d2 = TimingSummary.of(run["times"]["detectron2"]).median
                ours = TimingSummary.of(run["times"]["panoptic2"]).median
                rows.append([case.name, what, d2, ours, ours / d2, d2 / ours])
                record[f"{case.name} {what}"] = {
                    **{k: v for k, v in run.items() if k != "times"},
                    "detectron2_median_s": d2,
                    "panoptic2_median_s": ours,
                    "times": run["times"],
                }
            del case
    headers = ["model", "figure", "Detectron2 s", "panoptic2 s", "time ratio", "speed-up"]
    print(
        f"medians, threads {torch.get_num_threads()}, inference rounds {args.rounds}, "
        f"training rounds {args.train_rounds}"
    )
    print(tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".4f"))
    for name, entry in record.items():
        extra = {k: v for k, v in entry.items() if k not in ("times",)}
        print(f"{name}: {json.dumps(extra, default=float)}")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2, default=float))
    if mismatch:
        print("OUTPUTS DIFFER:\n  " + "\n  ".join(mismatch))
        raise SystemExit(1)
    print("Outputs agree.")


if __name__ == "__main__":
    main()
