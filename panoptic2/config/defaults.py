"""The default configuration: every key a config file or command line may set.

A key that is not declared here (or by a project through :func:`add_config_extension`,
bottom of this file) is an error when a file or an override names it, so a typo can never be
silently ignored. Keep the values typed as the code expects them: overrides are type-checked
against these defaults. :func:`get_cfg` returns a fresh copy of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .config import CfgNode as CN
from .config import ConfigError, _describe, _flatten

__all__ = ["add_config_extension", "get_cfg"]

logger = logging.getLogger(__name__)

_C = CN()
_C.VERSION = 1

# Modules imported in every process (main and spawned workers) before anything is built;
# they register datasets, models, evaluators. See README "Plugins".
_C.PLUGINS = []

# ---------------------------------------------------------------------------------------
# Datasets and loading
# ---------------------------------------------------------------------------------------
_C.DATASETS = CN()
# Names registered in DatasetCatalog; always lists, even with a single dataset.
_C.DATASETS.TRAIN = []
_C.DATASETS.TEST = []

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 2
# "TrainingSampler" or "RepeatFactorTrainingSampler".
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.ASPECT_RATIO_GROUPING = False
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False

# ---------------------------------------------------------------------------------------
# Input: format, mapper, resizing, augmentation and Panoptic-DeepLab targets
# (panoptic2.data.transforms / .mappers)
# ---------------------------------------------------------------------------------------
_C.INPUT = CN()
# Channel order the model expects: "RGB" or "BGR".
_C.INPUT.FORMAT = "RGB"
# Name in DATA_MAPPER_REGISTRY of the mapper that turns dataset dicts into model inputs, e.g.
# "DetectionMapper" (boxes and masks: Faster / Mask R-CNN), "PanopticFPNMapper",
# "PanopticDeepLabMapper", "SemanticSegmentationMapper"; "" passes the dicts through
# unchanged (toy and pre-mapped datasets).
_C.INPUT.DATASET_MAPPER_NAME = ""
_C.INPUT.MIN_SIZE_TRAIN = [512]
# How ResizeShortestEdge uses MIN_SIZE_TRAIN: "choice" (one of the list) or "range" ([min, max]).
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 1024
_C.INPUT.MIN_SIZE_TEST = 512
_C.INPUT.MAX_SIZE_TEST = 1024
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = False
_C.INPUT.CROP.SIZE = [512, 512]
# Largest fraction of a crop one semantic category may cover (1.0 disables the constraint).
_C.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
# DeepLab2 scale augmentation: factor in [min, max] ([1.0, 1.0] disables); with a step > 0
# the factor is one of min, min + step, ..., max.
_C.INPUT.RANDOM_SCALE = [1.0, 1.0]
_C.INPUT.RANDOM_SCALE_STEP = 0.0
# "horizontal", "vertical" or "none".
_C.INPUT.RANDOM_FLIP = "horizontal"
# Brightness, contrast, saturation strengths s: factors in [1 - s, 1 + s]; 0 disables each.
_C.INPUT.COLOR_JITTER = [0.0, 0.0, 0.0]
# Pad training images and labels so both sides are multiples of this (<= 0 disables).
_C.INPUT.SIZE_DIVISIBILITY = -1
# Panoptic-DeepLab targets: Gaussian sigma of the center heatmap, small-instance weighting of
# the semantic loss, and which pixels the center/offset losses ignore.
_C.INPUT.GAUSSIAN_SIGMA = 8.0
_C.INPUT.SMALL_INSTANCE_AREA = 4096
_C.INPUT.SMALL_INSTANCE_WEIGHT = 3.0
_C.INPUT.IGNORE_STUFF_IN_OFFSET = True
_C.INPUT.IGNORE_CROWD_IN_SEMANTIC = False

# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "PanopticDeepLab"
# "cpu", "cuda", "cuda:1", "xla"; "auto" picks CUDA when available, else CPU.
_C.MODEL.DEVICE = "auto"
# Path or URL of weights to initialise from (ignored when resuming).
_C.MODEL.WEIGHTS = ""
# Accept weights that leave part of the model at its initialisation: a whole-model
# checkpoint (see panoptic2.checkpoint.Checkpointer) that does not fill every tensor, e.g.
# fine-tuning with another number of classes, loads with a warning instead of an error; and
# --eval-only evaluates even when no weights, or under 90% of the model's elements, loaded.
_C.MODEL.ALLOW_PARTIAL_WEIGHTS = False
# Per-channel mean/std in the 0-255 range, in the order of INPUT.FORMAT.
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
# torch.compile the model in place for training and inference (eager devices only): the parts
# each meta-architecture names in `compiled_parts`, each as one graph (panoptic2.modeling.compile).
_C.MODEL.COMPILE = False
# torch.compile's mode: "default", "reduce-overhead", "max-autotune" or
# "max-autotune-no-cudagraphs".
_C.MODEL.COMPILE_MODE = "default"
# torch.compile's backend: "inductor"; "aot_eager" or "eager" to tell a compiler fault from a
# tracing one.
_C.MODEL.COMPILE_BACKEND = "inductor"
# Inductor's freezing for inference-only processes (eval-only, predict, benchmark eval): it
# may treat the weights as constants of the compiled graph (conv + norm folded, weights
# prepacked; ~1.5x faster inference on CPU), so a trainer refuses it.
_C.MODEL.COMPILE_FREEZE = False

# ---------------------------------------------------------------------------------------
# Backbones: ResNet / ResNet-Beta, MobileNetV3, Wide-ResNet-41 / SWideRNet (modeling/backbone)
# ---------------------------------------------------------------------------------------
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# Number of leading stages whose weights are frozen (0 = train all).
_C.MODEL.BACKBONE.FREEZE_AT = 0

# Detectron2 names and semantics (plus its DeepLab project's STEM_TYPE / RES4_DILATION /
# RES5_MULTI_GRID). Output stride 32: dilations 1, 1; 16: RES5_DILATION 2; 8: 2 and 4.
_C.MODEL.RESNETS = CN()
# 18, 34, 50, 101 or 152.
_C.MODEL.RESNETS.DEPTH = 50
# Among "stem", "res2", "res3", "res4", "res5".
_C.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.RESNETS.NORM = "BN"
# "basic" (7x7 conv) or "deeplab" (ResNet-Beta: three 3x3 convs; use STEM_OUT_CHANNELS 128).
_C.MODEL.RESNETS.STEM_TYPE = "basic"
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.NUM_GROUPS = 1
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
# False: stride in the 3x3 conv (torchvision weights); True: in the 1x1 (MSRA / Detectron2).
_C.MODEL.RESNETS.STRIDE_IN_1X1 = False
_C.MODEL.RESNETS.RES4_DILATION = 1
_C.MODEL.RESNETS.RES5_DILATION = 1
# Per-block factors of res5's atrous rate, one per res5 block (DeepLabV3 uses [1, 2, 4]).
_C.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]

_C.MODEL.MOBILENET = CN()
# "large" or "small" (MobileNetV3).
_C.MODEL.MOBILENET.VARIANT = "large"
# 32, or 16 (the last stage dilated).
_C.MODEL.MOBILENET.OUTPUT_STRIDE = 32
# Among "res2" (stride 4), "res3" (8), "res4" (16), "res5" (32 or 16).
_C.MODEL.MOBILENET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.MOBILENET.NORM = "BN"
_C.MODEL.MOBILENET.WIDTH_MULTIPLIER = 1.0

# Defaults are Wide-ResNet-41; SWideRNet-SAC-(1, 1, x): LAYER_MULTIPLIER x, USE_SAC_BEYOND_STRIDE 32.
_C.MODEL.SWIDERNET = CN()
_C.MODEL.SWIDERNET.STEM_WIDTH_MULTIPLIER = 1.0
_C.MODEL.SWIDERNET.WIDTH_MULTIPLIER = 1.0
_C.MODEL.SWIDERNET.LAYER_MULTIPLIER = 1.0
# Switchable atrous convolution in stages whose original output stride is >= this (0: none).
_C.MODEL.SWIDERNET.USE_SAC_BEYOND_STRIDE = 0
# 32, 16 or 8 (DeepLab2's Panoptic-DeepLab configs use 16).
_C.MODEL.SWIDERNET.OUTPUT_STRIDE = 16
# Among "stem" (stride 2), "res1" (2), "res2" (4), "res3" (8), "res4" (16), "res5" (32).
_C.MODEL.SWIDERNET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.SWIDERNET.NORM = "BN"
# Drop path (stochastic depth) keep probability in stages beyond stride 4; 1.0 disables it.
_C.MODEL.SWIDERNET.DROP_PATH_KEEP_PROB = 1.0
# "constant" or "linear" (from 1.0 at the stem to DROP_PATH_KEEP_PROB at res5), as DeepLab2.
_C.MODEL.SWIDERNET.DROP_PATH_SCHEDULE = "constant"

# ---------------------------------------------------------------------------------------
# Panoptic FPN: ResNet-FPN backbone (modeling/backbone/fpn.py).
# Detectron2 names and semantics; defaults are Detectron2's Base-RCNN-FPN values.
# ---------------------------------------------------------------------------------------
_C.MODEL.FPN = CN()
# Bottom-up features fused by the FPN, fine to coarse; outputs are p2..p5 (+ p6 max-pooled).
_C.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.FPN.OUT_CHANNELS = 256
# Norm of the lateral and output convs: "" (none, convs with bias), "GN", "BN", ...
_C.MODEL.FPN.NORM = ""
# How the top-down path merges with a lateral: only "sum" (torchvision's FPN).
_C.MODEL.FPN.FUSE_TYPE = "sum"

# ---------------------------------------------------------------------------------------
# Panoptic-DeepLab heads and post-processing (modeling/heads/panoptic_deeplab.py,
# modeling/meta_arch/panoptic_deeplab.py); Detectron2's Panoptic-DeepLab project names.
# ---------------------------------------------------------------------------------------
_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "PanopticDeepLabSemSegHead"
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 19
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
# "BN", "SyncBN", "GN", "FrozenBN" or "" (no norm).
_C.MODEL.SEM_SEG_HEAD.NORM = "BN"
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0
# Decoder inputs from shallow to deep; the last goes through the ASPP.
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res5"]
# 1x1 projection channels of each IN_FEATURES entry but the last.
_C.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [32, 64]
_C.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256
# Atrous rates for output stride 16 (use [3, 6, 9] at output stride 32).
_C.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
_C.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.1
# Channels of the decoder's fusion stages.
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256
# Stride of the decoder output (of IN_FEATURES[0]).
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.HEAD_CHANNELS = 256
# "hard_pixel_mining" (mean of the LOSS_TOP_K fraction of hardest valid pixels) or
# "cross_entropy".
_C.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"
_C.MODEL.SEM_SEG_HEAD.LOSS_TOP_K = 0.2
_C.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = False
# False: the classifier has no output for IGNORE_VALUE (when it is one of the NUM_CLASSES
# classes, e.g. COCO's void 0) and that class gets a constant, very low logit; Detectron2's
# COCO models (133 outputs for our 134 classes) need it.
_C.MODEL.SEM_SEG_HEAD.PREDICT_IGNORE_CLASS = True

_C.MODEL.INS_EMBED_HEAD = CN()
_C.MODEL.INS_EMBED_HEAD.NAME = "PanopticDeepLabInsEmbedHead"
_C.MODEL.INS_EMBED_HEAD.NORM = "BN"
_C.MODEL.INS_EMBED_HEAD.CENTER_LOSS_WEIGHT = 200.0
_C.MODEL.INS_EMBED_HEAD.OFFSET_LOSS_WEIGHT = 0.01
_C.MODEL.INS_EMBED_HEAD.IN_FEATURES = ["res2", "res3", "res5"]
_C.MODEL.INS_EMBED_HEAD.PROJECT_CHANNELS = [16, 32]
_C.MODEL.INS_EMBED_HEAD.ASPP_CHANNELS = 256
_C.MODEL.INS_EMBED_HEAD.ASPP_DILATIONS = [6, 12, 18]
_C.MODEL.INS_EMBED_HEAD.ASPP_DROPOUT = 0.1
_C.MODEL.INS_EMBED_HEAD.CONVS_DIM = 128
_C.MODEL.INS_EMBED_HEAD.COMMON_STRIDE = 4
_C.MODEL.INS_EMBED_HEAD.HEAD_CHANNELS = 32
_C.MODEL.INS_EMBED_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = False
# The center tower's convs: None follows the head's depthwise-separable switch; False keeps
# two 3x3 convs even when the rest of the head is depthwise-separable (Detectron2's dsconv
# models); True makes it depthwise-separable on its own.
_C.MODEL.INS_EMBED_HEAD.CENTER_HEAD_USE_DEPTHWISE_SEPARABLE_CONV = None

_C.MODEL.PANOPTIC_DEEPLAB = CN()
# Stuff segments smaller than this (pixels, at the original image size) become void.
_C.MODEL.PANOPTIC_DEEPLAB.STUFF_AREA = 2048
_C.MODEL.PANOPTIC_DEEPLAB.CENTER_THRESHOLD = 0.1
_C.MODEL.PANOPTIC_DEEPLAB.NMS_KERNEL = 7
# At most this many centers per image (0 = no limit).
_C.MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE = 200
# Also output "instances" (masks, classes, scores, boxes) for instance AP.
_C.MODEL.PANOPTIC_DEEPLAB.PREDICT_INSTANCES = True
# Where an instance's score reads the center heatmap: "center" (the instance's own center)
# or "centroid" (its mask's centroid, as Detectron2).
_C.MODEL.PANOPTIC_DEEPLAB.INSTANCE_SCORE_RULE = "center"
# Sets USE_DEPTHWISE_SEPARABLE_CONV of both heads' decoders and towers when True.
_C.MODEL.PANOPTIC_DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV = False
# Images are padded to a multiple of this; -1 = the backbone's size_divisibility.
_C.MODEL.PANOPTIC_DEEPLAB.SIZE_DIVISIBILITY = -1
# Return raw predictions without post-processing (to time the network alone).
_C.MODEL.PANOPTIC_DEEPLAB.BENCHMARK_NETWORK_SPEED = False

# ---------------------------------------------------------------------------------------
# Panoptic FPN: anchors, RPN, ROI heads, mask head, semantic FPN head, fusion
# (modeling/anchor_generator.py, modeling/proposal_generator/rpn.py, modeling/roi_heads/,
# modeling/heads/semantic_fpn.py, modeling/meta_arch/{rcnn,panoptic_fpn}.py).
# Detectron2 names and semantics; defaults are Detectron2's (Base-RCNN-FPN).
# ---------------------------------------------------------------------------------------
_C.MODEL.PROPOSAL_GENERATOR = CN()
# Name in PROPOSAL_GENERATOR_REGISTRY.
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
# Proposals with a side <= this many input pixels (after clipping) are dropped.
_C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0.0

_C.MODEL.ANCHOR_GENERATOR = CN()
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
# Anchor sizes (sqrt of area, input pixels) per level of RPN.IN_FEATURES; one list = all levels.
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
# Height / width ratios per level; one list = all levels.
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
# Anchor centres at (cell index + OFFSET) * stride; 0.0 = cell corners, 0.5 = cell centres.
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0

_C.MODEL.RPN = CN()
# Name in RPN_HEAD_REGISTRY (modeling/proposal_generator/rpn.py).
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
_C.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
# Anchors beyond the image by more than this many pixels are ignored in training; -1 keeps all.
_C.MODEL.RPN.BOUNDARY_THRESH = -1
# IoU < 0.3: negative; [0.3, 0.7): ignored; >= 0.7: positive (plus each GT's best anchors).
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
_C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
# Anchors sampled per image for the losses, and the largest positive fraction among them.
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
# "smooth_l1" (on deltas), "giou", "diou" or "ciou" (on decoded boxes).
_C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
# (wx, wy, ww, wh) of the anchor-delta coding.
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# 0.0 = L1 loss.
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
# Boxes kept per level before NMS, and per image after NMS.
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 1000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
# Channels of the head's shared 3x3 convs; -1 = the input channels.
_C.MODEL.RPN.CONV_DIMS = [-1]

_C.MODEL.MASK_ON = False

_C.MODEL.ROI_HEADS = CN()
# Name in ROI_HEADS_REGISTRY.
_C.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
# Number of thing classes (background not counted); must match the dataset's thing_ids.
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80
_C.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
# Proposals with IoU >= 0.5 with a ground-truth box are foreground, others background.
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
_C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
# Sampled proposals per image for the losses, and the largest foreground fraction.
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
# Inference: detections scoring <= this are dropped; per-class NMS IoU threshold.
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
# Add the ground-truth boxes to the proposals in training.
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True

_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 2
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
_C.MODEL.ROI_BOX_HEAD.NORM = ""
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
# roi_align samples per bin; 0 = adaptive (ceil(roi size / output size)).
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
# "ROIAlignV2" (pixel-aligned) or "ROIAlign".
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
# (wx, wy, ww, wh) of the proposal-delta coding.
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Only "smooth_l1"; SMOOTH_L1_BETA 0.0 is the L1 loss.
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False

_C.MODEL.ROI_MASK_HEAD = CN()
_C.MODEL.ROI_MASK_HEAD.NUM_CONV = 4
_C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
_C.MODEL.ROI_MASK_HEAD.NORM = ""
# Pooled side; the predicted masks are twice this (28x28).
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False

_C.MODEL.PANOPTIC_FPN = CN()
# Weight of the ROI heads' and RPN's losses (the semantic head has its own LOSS_WEIGHT).
_C.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 1.0
_C.MODEL.PANOPTIC_FPN.COMBINE = CN()
# Fuse instances and semantics into panoptic_seg at inference.
_C.MODEL.PANOPTIC_FPN.COMBINE.ENABLED = True
# Skip an instance whose already-taken pixels exceed this fraction of its area.
_C.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.5
# Smallest stuff segment (pixels at the original size).
_C.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT = 4096
# Lowest score of an instance pasted into panoptic_seg.
_C.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5

# ---------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------
_C.SOLVER = CN()
# "SGD", "Adam" or "AdamW".
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.BASE_LR = 0.01
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.BETAS = [0.9, 0.999]
_C.SOLVER.WEIGHT_DECAY = 1e-4
# Weight decay of normalisation-layer parameters and of biases (None = WEIGHT_DECAY).
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.WEIGHT_DECAY_BIAS = None
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# Total images per iteration over all processes.
_C.SOLVER.IMS_PER_BATCH = 8
_C.SOLVER.MAX_ITER = 1000
# "WarmupPolyLR", "WarmupMultiStepLR" or "WarmupCosineLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
_C.SOLVER.POLY_LR_POWER = 0.9
_C.SOLVER.STEPS = [30000]
_C.SOLVER.GAMMA = 0.1
# LR reached at MAX_ITER by the poly and cosine schedules (an absolute value, as in
# DeepLab2's end_learning_rate).
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.WARMUP_FACTOR = 0.001
_C.SOLVER.WARMUP_ITERS = 0
# "linear" or "constant".
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Periodic checkpoints kept on disk (older ones are deleted); None keeps all.
_C.SOLVER.MAX_CHECKPOINTS_TO_KEEP = 3

_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# "value" (clip each element) or "norm" (clip the total norm).
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0

_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
# "float16" (CUDA only, with a grad scaler) or "bfloat16" (CPU, CUDA and XLA).
_C.SOLVER.AMP.DTYPE = "bfloat16"

# Training on XLA devices (MODEL.DEVICE xla; see panoptic2/engine/xla.py).
_C.SOLVER.XLA = CN()
# One process drives all XLA devices of the host; every batch is sharded over them (data
# parallel, global BatchNorm). SOLVER.IMS_PER_BATCH is the global batch.
_C.SOLVER.XLA.SPMD = False
# Iterations that may compile graphs; a compilation after them is logged as a warning.
_C.SOLVER.XLA.WARMUP_ITERS = 3

# ---------------------------------------------------------------------------------------
# Test / evaluation
# ---------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate every EVAL_PERIOD iterations during training, and at the end; 0 = only at end.
_C.TEST.EVAL_PERIOD = 0
# Metric that BestCheckpointer tracks, e.g. "panoptic_seg/PQ"; "" disables it.
_C.TEST.BEST_CHECKPOINT_METRIC = ""
# "max" or "min".
_C.TEST.BEST_CHECKPOINT_MODE = "max"
# Compute validation loss on DATASETS.TEST every this many iterations; 0 disables it.
_C.TEST.VAL_LOSS_PERIOD = 0
# Detections kept per image by box-based models.
_C.TEST.DETECTIONS_PER_IMAGE = 100
# Write each evaluator's predictions in its dataset's official format under
# OUTPUT_DIR/inference/<dataset> (COCO panoptic PNG + JSON, ...).
_C.TEST.WRITE_PREDICTIONS = False
# Evaluate only the first N images of each test dataset (0 = all); the results say so.
_C.TEST.MAX_IMAGES = 0
# Log this many ground truth | prediction overlays per test dataset to TensorBoard at each
# evaluation (0 = none).
_C.TEST.VIS_IMAGES = 0
# Write OUTPUT_DIR/inference/<dataset>/report.html at each evaluation: metric tables,
# per-image scores and the worst images (see tools/eval_report.py).
_C.TEST.REPORT = False
# Images in the report's gallery of the worst predictions.
_C.TEST.REPORT_WORST_K = 12
_C.TEST.PRECISE_BN = CN()
_C.TEST.PRECISE_BN.ENABLED = False
_C.TEST.PRECISE_BN.NUM_ITER = 200

# ---------------------------------------------------------------------------------------
# Hooks of DefaultTrainer
# ---------------------------------------------------------------------------------------
_C.HOOKS = CN()
# Names of default hooks to leave out, e.g. ["PreciseBN"].
_C.HOOKS.DISABLED = []
# Names in HOOK_REGISTRY of extra hooks; one named like a default hook replaces it.
_C.HOOKS.CUSTOM = []

# ---------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"
# Base seed; each rank uses SEED + rank. A negative seed draws one at random (logged).
_C.SEED = -1
_C.CUDNN_BENCHMARK = False
# Use deterministic algorithms (needed for bit-exact resume).
_C.DETERMINISTIC = False
# Seconds a collective waits for every rank before failing and naming the silent ranks.
_C.DIST_TIMEOUT_S = 600
# Iterations between console / metrics.json / TensorBoard writes.
_C.LOG_PERIOD = 20


# ---------------------------------------------------------------------------------------
# Extensions: keys that projects add, and the fresh copies get_cfg() hands out
# ---------------------------------------------------------------------------------------
_EXTENSIONS: list[Callable[[CN], Any]] = []
_EXTENSIONS_LOCK = threading.Lock()


def add_config_extension(fn: Callable[[CN], Any]) -> Callable[[CN], Any]:
    """Registers a function that adds a project's keys to the defaults of every later get_cfg().

    ``fn(cfg)`` receives an unfrozen config holding the defaults (and earlier extensions) and
    adds keys to it. It may only add keys: changing or removing an existing key raises, so that
    importing a plugin never changes the meaning of other configs. The function is checked on a
    copy when registered, so a broken extension fails at import, naming itself. Registering the
    same function again is a no-op. Returns ``fn``, so it also works as a decorator.

    A plugin module calls it at import, and configs name the module in ``PLUGINS``::

        # my_project/config.py
        from panoptic2.config import CfgNode as CN, add_config_extension

        @add_config_extension
        def add_my_project_config(cfg):
            cfg.MY_PROJECT = CN()
            cfg.MY_PROJECT.DEPTH = 3

        # my_config.yaml
        PLUGINS: [my_project.config]
        MY_PROJECT: {DEPTH: 5}

    Args:
        fn: Callable taking the root CfgNode; its return value is ignored.

    Returns:
        ``fn`` unchanged.

    Raises:
        TypeError: ``fn`` is not callable.
        ConfigError: ``fn`` changed or removed an existing key.
    """
    if not callable(fn):
        raise TypeError(f"add_config_extension() needs a callable, got {_describe(fn)}")
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    with _EXTENSIONS_LOCK:
        if any(f is fn for f in _EXTENSIONS):
            return fn
        before = get_cfg()
        trial = before.clone()
        fn(trial)
        after = _flatten(trial)
        for key, value in _flatten(before).items():
            if key not in after:
                raise ConfigError(f"Config extension {name} removed the existing key '{key}'")
            if after[key] != value:
                raise ConfigError(
                    f"Config extension {name} changed the existing key '{key}' from {value!r} "
                    f"to {after[key]!r}; extensions may only add keys"
                )
        _EXTENSIONS.append(fn)
    logger.debug("Registered config extension %s", name)
    return fn


def get_cfg() -> CN:
    """Returns a fresh, unfrozen copy of the defaults with every registered extension applied.

    Returns:
        A new CfgNode; changing it never affects later calls.
    """
    cfg = _C.clone()
    cfg.defrost()
    for fn in list(_EXTENSIONS):
        fn(cfg)
    return cfg
