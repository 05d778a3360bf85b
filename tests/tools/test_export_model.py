"""Tests of tools/export_model.py: the exported Panoptic-DeepLab (post-processing included),
DeepLabV3+ and Panoptic FPN network equal the eager model on image sizes not seen at export,
in each format, loaded in a process that has none of panoptic2's model code."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from panoptic2.checkpoint import Checkpointer
from panoptic2.config import load_config
from panoptic2.data import DatasetCatalog
from panoptic2.export import build_export_adapter, export_adapter, load_artifact
from panoptic2.modeling import build_model
from panoptic2.registry import EXPORT_ADAPTER_REGISTRY

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "export_model.py"
PANOPTIC_DEEPLAB = REPO / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml"
DEEPLAB = REPO / "projects" / "DeepLab" / "configs" / "shapes" / "deeplabv3plus_R18_os16_voc.yaml"
PANOPTIC_FPN = REPO / "configs" / "shapes" / "panoptic_fpn_R18_1x.yaml"
# The untrained heatmap keeps every peak, so that grouping and merging see instances.
PANOPTIC_DEEPLAB_OPTS = ["MODEL.PANOPTIC_DEEPLAB.CENTER_THRESHOLD", "-1.0"]

# Float outputs of the artifacts may differ from eager by float rounding only (ONNX runtime
# kernels sum in another order: ~1e-6 measured); integer outputs (panoptic ids, centers,
# class ids) must be equal.
FLOAT_ATOL = 1e-4

# Runs artifacts given on the command line on saved inputs, in a fresh process that imports
# no panoptic2 model code: .pt2 needs the ops (panoptic2.ops: library + fake kernels), .pt
# only the shared library, .onnx only onnxruntime.
RUNNER = r"""
import sys
import torch

so_path, inputs_path, out_path, *artifacts = sys.argv[1:]
images = torch.load(inputs_path)
results = {}
for path in artifacts:
    if path.endswith(".pt2"):
        from panoptic2.ops import extension

        extension.require_ops()
        program = torch.export.load(path).module()
        run = lambda x: tuple(program(x))
    elif path.endswith(".pt"):
        torch.ops.load_library(so_path)
        program = torch.jit.load(path)
        run = lambda x: tuple(program(x))
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        run = lambda x: tuple(torch.from_numpy(o) for o in session.run(None, {"image": x.numpy()}))
    with torch.no_grad():
        results[path] = [run(x) for x in images]
loaded = sorted(m for m in sys.modules if m.startswith(("panoptic2.", "projects")))
assert not [m for m in loaded if not m.startswith(("panoptic2.ops", "panoptic2._C"))], loaded
torch.save(results, out_path)
"""


def _tool():
    spec = importlib.util.spec_from_file_location("export_model", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample_image(tmp_path_factory):
    """A shapes image (128 x 160) written where the tool can read it."""
    path = tmp_path_factory.mktemp("export_sample") / "sample.png"
    record = DatasetCatalog.get("shapes_panoptic_val")[0]
    cv2.imwrite(str(path), cv2.imread(record["file_name"]))
    return path


def _weights(config: Path, out: Path, opts: list[str]) -> Path:
    """A checkpoint of the config's model at a fixed random init (with its label space)."""
    cfg = load_config(str(config), ["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    Checkpointer(build_model(cfg), str(out)).save("model")
    return out / "model.pth"


def _export_all(tmp_path, config, formats, sample_image, opts=()):
    """Runs the tool once per format; returns the artifacts and the eager adapter."""
    weights = _weights(config, tmp_path, list(opts))
    tool = _tool()
    artifacts = {}
    for fmt in formats:
        out = tmp_path / fmt
        argv = ["--config-file", str(config), "--format", fmt, "--output", str(out)]
        argv += ["--sample-image", str(sample_image), *opts, "MODEL.WEIGHTS", str(weights)]
        report = tool.main(tool.parse_args(argv))
        # The tool checks the artifact against eager on two sizes it did not trace.
        assert len(report) == 2
        info = json.loads((out / "export_info.json").read_text())
        assert info["format"] == fmt and info["outputs"] and info["label_space"]
        artifacts[fmt] = out / info["artifact"]
    cfg = load_config(str(config), ["MODEL.DEVICE", "cpu", *opts, "MODEL.WEIGHTS", str(weights)])
    model = tool.build_eager_model(cfg, allow_partial_weights=False)
    return artifacts, model, cfg.MODEL.META_ARCHITECTURE


def _run_elsewhere(tmp_path, artifacts, images):
    from panoptic2.ops import extension

    so_path = extension._load().path
    inputs, outputs = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(images, inputs)
    cmd = [sys.executable, "-c", RUNNER, so_path, str(inputs), str(outputs)]
    cmd += [str(p) for p in artifacts]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(outputs)


def _compare(expected, produced, names, where):
    assert len(produced) == len(expected) == len(names), where
    diffs = {}
    for name, a, b in zip(names, expected, produced):
        assert a.shape == b.shape and a.dtype == b.dtype, (where, name, a.shape, b.shape)
        if a.is_floating_point():
            diffs[name] = float((a - b).abs().max())
            assert diffs[name] <= FLOAT_ATOL, (where, name, diffs[name])
        else:
            assert torch.equal(a, b), (where, name)
    return diffs


def _check_unseen_sizes(tmp_path, artifacts, model, meta_arch, sizes):
    """Each artifact equals the eager adapter at ``sizes`` (none traced at export)."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(1, 3, h, w, generator=g) * 255 for h, w in sizes]
    results = _run_elsewhere(tmp_path, artifacts.values(), images)
    has_postprocess = bool(EXPORT_ADAPTER_REGISTRY.get(meta_arch).postprocess_output_names)
    for fmt, path in artifacts.items():
        postprocess = has_postprocess and fmt != "onnx"
        if fmt == "torchscript":
            postprocess = (
                postprocess and EXPORT_ADAPTER_REGISTRY.get(meta_arch).postprocess_traceable
            )
        adapter = build_export_adapter(model, meta_arch, postprocess=postprocess)
        for image, produced in zip(images, results[str(path)]):
            with torch.no_grad():
                expected = adapter(image)
            _compare(expected, produced, adapter.output_names, (fmt, tuple(image.shape)))
    return results


@pytest.mark.slow
def test_panoptic_deeplab_with_post_processing_in_every_format(tmp_path, sample_image):
    """model.pt2 holds the post-processing (custom ops included); TorchScript and ONNX the
    network. The panoptic map equals eager's on two sizes not traced (224x160, 160x288)."""
    artifacts, model, meta_arch = _export_all(
        tmp_path, PANOPTIC_DEEPLAB, ["export", "torchscript", "onnx"], sample_image,
        PANOPTIC_DEEPLAB_OPTS,
    )  # fmt: skip
    results = _check_unseen_sizes(tmp_path, artifacts, model, meta_arch, [(224, 160), (160, 288)])
    panoptic = results[str(artifacts["export"])][0][3]
    labels = set(torch.unique(panoptic).tolist())
    assert any(label % model.label_space.label_divisor for label in labels if label >= 0), labels

    # The exported panoptic map is the model's own output (its list-of-dicts inference).
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 192, 256), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        exported = load_artifact(str(artifacts["export"]))(image[None].float())[3][0]
        ids, segments = model([{"image": image}])[0]["panoptic_seg"]
    assert torch.equal(exported, ids)
    assert any(s["isthing"] for s in segments)


@pytest.mark.slow
def test_deeplab_v3_plus_in_every_format(tmp_path, sample_image):
    import projects.DeepLab.deeplab  # noqa: F401  (registers SemanticSegmentor's adapter)

    artifacts, model, meta_arch = _export_all(
        tmp_path, DEEPLAB, ["export", "torchscript", "onnx"], sample_image
    )
    _check_unseen_sizes(tmp_path, artifacts, model, meta_arch, [(96, 224), (192, 128)])


@pytest.mark.slow
def test_panoptic_fpn_network(tmp_path, sample_image):
    """Panoptic FPN exports its dense network (semantic logits, RPN outputs per level)."""
    artifacts, model, meta_arch = _export_all(tmp_path, PANOPTIC_FPN, ["export"], sample_image)
    _check_unseen_sizes(tmp_path, artifacts, model, meta_arch, [(192, 128), (64, 320)])


def test_weights_are_required(tmp_path, sample_image):
    tool = _tool()
    argv = ["--config-file", str(PANOPTIC_DEEPLAB), "--output", str(tmp_path), "--sample-image"]
    with pytest.raises(Exception, match="allow-partial-weights"):
        tool.main(tool.parse_args([*argv, str(sample_image)]))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_post_processing_a_trace_cannot_hold_is_refused(fmt):
    """A trace would fix Panoptic-DeepLab's number of centers; ONNX has no custom ops."""
    cfg = load_config(str(PANOPTIC_DEEPLAB), ["MODEL.DEVICE", "cpu"])
    adapter = build_export_adapter(build_model(cfg).eval(), "PanopticDeepLab", postprocess=True)
    with pytest.raises(ValueError, match="network part only"):
        export_adapter(adapter, torch.zeros(1, 3, 64, 64), fmt)
