"""Tests of panoptic2/modeling/compile.py: MODEL.COMPILE compiles each declared part as one
graph (no graph break, the post-processing ops through their fake kernels), gives eager's
losses and outputs, and keeps checkpoints interchangeable with eager models."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

import panoptic2.data.datasets  # noqa: F401  (registers shapes)
import panoptic2.data.mappers  # noqa: F401  (registers PanopticDeepLabMapper)
from panoptic2.checkpoint import Checkpointer
from panoptic2.data import DATA_MAPPER_REGISTRY, DatasetCatalog
from panoptic2.modeling import build_model, compile_model

from .meta_arch.test_panoptic_deeplab import _tiny_cfg


def _tiny_panoptic_deeplab_cfg(**model_keys):
    cfg = _tiny_cfg()
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"  # the top-k loss: data-dependent
    cfg.MODEL.PANOPTIC_DEEPLAB.CENTER_THRESHOLD = -1.0  # untrained heatmap: keep every peak
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE = [64, 96]
    for key, value in model_keys.items():
        setattr(cfg.MODEL, key, value)
    return cfg


@pytest.fixture(scope="module")
def train_batch():
    cfg = _tiny_panoptic_deeplab_cfg()
    mapper = DATA_MAPPER_REGISTRY.get("PanopticDeepLabMapper")(cfg, is_train=True)
    return [mapper(d) for d in DatasetCatalog.get("shapes_panoptic_train")[:2]]


def _image(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)}


def _train_losses(model, batch, steps):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    history = []
    for _ in range(steps):
        losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


@pytest.mark.slow
def test_panoptic_deeplab_parts_are_single_graphs_with_eager_outputs(train_batch):
    """Training and inference run with fullgraph=True parts (a graph break would raise);
    a counting backend sees exactly one graph per part and mode, and the panoptic output,
    post-processing ops included, equals eager."""
    torch.manual_seed(0)
    eager = build_model(_tiny_panoptic_deeplab_cfg())
    model = copy.deepcopy(eager)
    counter = CompileCounterWithBackend("eager")
    parts = compile_model(model, backend=counter)
    assert parts == ["backbone", "sem_seg_head", "ins_embed_head", "panoptic_maps"]

    losses, expected = model.train()(train_batch), eager.train()(train_batch)
    assert counter.frame_count == 3  # backbone and both heads with their losses
    for name in expected:
        torch.testing.assert_close(losses[name], expected[name], rtol=1e-5, atol=1e-6)

    model.eval()
    eager.eval()
    inputs = [_image(96, 128, seed=1) | {"height": 90, "width": 120}]
    with torch.no_grad():
        out, ref = model(inputs)[0], eager(inputs)[0]
    assert counter.frame_count == 3 + 4  # eval-mode network parts + the post-processing
    ids, segments = out["panoptic_seg"]
    assert torch.equal(ids, ref["panoptic_seg"][0])
    assert segments == ref["panoptic_seg"][1]
    assert any(s["isthing"] for s in segments)  # instances went through group/merge
    torch.testing.assert_close(out["sem_seg"], ref["sem_seg"])


@pytest.mark.slow
def test_inductor_training_matches_eager_for_five_iterations(train_batch):
    """MODEL.COMPILE True (inductor) trains like the eager model: the same losses for 5 SGD
    steps, within float tolerance (fused kernels reorder float sums)."""
    torch.manual_seed(0)
    eager = build_model(_tiny_panoptic_deeplab_cfg())
    torch.manual_seed(0)
    compiled = build_model(_tiny_panoptic_deeplab_cfg(COMPILE=True))
    compiled.load_state_dict(eager.state_dict())
    compiled.train()
    eager.train()
    got = _train_losses(compiled, train_batch, steps=5)
    expected = _train_losses(eager, train_batch, steps=5)
    for step, (a, b) in enumerate(zip(got, expected)):
        for name in b:
            assert a[name] == pytest.approx(b[name], rel=1e-3, abs=1e-5), (step, name, a, b)


def test_checkpoints_load_between_compiled_and_eager_models(tmp_path):
    torch.manual_seed(0)
    compiled = build_model(_tiny_panoptic_deeplab_cfg(COMPILE=True, COMPILE_BACKEND="eager"))
    torch.manual_seed(1)
    eager = build_model(_tiny_panoptic_deeplab_cfg())
    assert not any("_orig_mod" in k for k in compiled.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())

    Checkpointer(compiled, str(tmp_path)).save("compiled")
    Checkpointer(eager).load(str(tmp_path / "compiled.pth"))
    for k, v in compiled.state_dict().items():
        assert torch.equal(eager.state_dict()[k], v), k

    with torch.no_grad():
        for p in eager.parameters():
            p.add_(1.0)
    Checkpointer(eager, str(tmp_path)).save("eager")
    Checkpointer(compiled).load(str(tmp_path / "eager.pth"))
    for k, v in eager.state_dict().items():
        assert torch.equal(compiled.state_dict()[k], v), k


def test_torch_compile_wrapper_names_are_unwrapped(tmp_path):
    """A model wrapped by torch.compile(model) saves plain names, and a state dict saved
    from such a wrapper (``_orig_mod.`` names) loads into a plain model."""
    torch.manual_seed(0)
    model = build_model(_tiny_panoptic_deeplab_cfg())
    wrapped = torch.compile(model, backend="eager")
    assert all(k.startswith("_orig_mod.") for k in wrapped.state_dict())
    Checkpointer(wrapped, str(tmp_path)).save("wrapped")
    saved = torch.load(tmp_path / "wrapped.pth", weights_only=False)["model"]
    assert list(saved) == list(model.state_dict())

    torch.save({"model": wrapped.state_dict()}, tmp_path / "prefixed.pth")
    torch.manual_seed(1)
    other = build_model(_tiny_panoptic_deeplab_cfg())
    Checkpointer(other).load(str(tmp_path / "prefixed.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k


@pytest.mark.slow
def test_panoptic_fpn_backbone_and_semantic_head_are_single_graphs():
    """Panoptic FPN compiles its backbone and semantic head (one graph each, eval mode); its
    RPN and ROI heads stay eager, and the outputs equal eager's."""
    import panoptic2.modeling.meta_arch.panoptic_fpn  # noqa: F401  (registers PanopticFPN)

    from .meta_arch.test_rcnn import tiny_cfg, tiny_inputs

    torch.manual_seed(0)
    eager = build_model(tiny_cfg("PanopticFPN")).eval()
    model = copy.deepcopy(eager)
    counter = CompileCounterWithBackend("eager")
    assert compile_model(model, backend=counter) == ["backbone", "sem_seg_head"]
    inputs = tiny_inputs(train=False)
    with torch.no_grad():
        out, ref = model(inputs)[0], eager(inputs)[0]
    assert counter.frame_count == 2
    torch.testing.assert_close(out["sem_seg"], ref["sem_seg"])
    assert torch.equal(out["panoptic_seg"][0], ref["panoptic_seg"][0])
    torch.testing.assert_close(out["instances"].scores, ref["instances"].scores)


class _Tiny(nn.Module):
    """A model of the user's own, with no compiled_parts. (torch 2.9's Dynamo runs an
    nn.Sequential compiled whole without capturing a frame, so it is not used here.)"""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


def test_model_without_declared_parts_is_compiled_whole(caplog):
    model = _Tiny()
    expected = model(torch.ones(2, 4))
    counter = CompileCounterWithBackend("eager")
    with caplog.at_level(logging.WARNING, logger="panoptic2"):
        assert compile_model(model, backend=counter) == [""]
    assert "declares no compiled_parts" in caplog.text
    assert torch.equal(model(torch.ones(2, 4)), expected)
    assert counter.frame_count == 1
    assert list(model.state_dict()) == ["fc.weight", "fc.bias"]


def test_bad_mode_and_bad_part_are_errors():
    with pytest.raises(ValueError, match="MODEL.COMPILE_MODE must be one of"):
        compile_model(nn.Linear(2, 2), mode="fast")

    class Declares(nn.Module):
        compiled_parts = ("missing",)

    with pytest.raises(ValueError, match="names 'missing', which is neither"):
        compile_model(Declares())


class _ConvNormRelu(nn.Module):
    compiled_parts = ("body",)

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_freeze_gives_eager_outputs_in_inference():
    torch.manual_seed(0)
    model = _ConvNormRelu().eval()
    with torch.no_grad():
        model.body[1].running_mean.uniform_(-1, 1)
        model.body[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 16, 20)
    with torch.no_grad():
        expected = model(x)
        assert compile_model(model, freeze=True) == ["body"]
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    assert list(model.state_dict())[0] == "body.0.weight"


def test_freeze_needs_inductor():
    with pytest.raises(ValueError, match="MODEL.COMPILE_FREEZE is an option of the inductor"):
        compile_model(_ConvNormRelu(), backend="eager", freeze=True)
