"""Tests of panoptic2/ops/segments.py: the NumPy-facing segment-map ops and their module.

The pair counting's kernel-vs-fallback cases on PQ inputs stay in
tests/evaluation/test_panoptic_quality.py and the PNG decoding against encoders in
tests/utils/test_panoptic_png.py; these check the wrappers themselves, and that neither
they nor the compiled module need torch.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from panoptic2.ops import count_segment_pairs, png_unfilter_to_ids, segments
from panoptic2.testing.processes import run_fresh_python

needs_kernels = pytest.mark.skipif(
    not segments.has_kernels(),
    reason="panoptic2._segment_maps is not built (python setup.py build_ext --inplace)",
)


def _pairs_dict(gt_values, pred_values, counts) -> dict[tuple[int, int], int]:
    if counts is None:
        counts = np.ones(len(gt_values), dtype=np.int64)
    got: dict[tuple[int, int], int] = {}
    for pair, count in zip(zip(gt_values.tolist(), pred_values.tolist()), counts.tolist()):
        got[pair] = got.get(pair, 0) + count
    return got


def _maps() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = np.repeat(rng.integers(0, 5, size=(12, 3)), 10, axis=1).astype(np.uint32)
    pred = np.repeat(rng.integers(0, 4, size=(12, 5)), 6, axis=1).astype(np.int64)
    gt[0, 0] = 2**32 - 1
    return gt, pred


def test_the_module_is_built_in_ci():
    if os.environ.get("PANOPTIC2_REQUIRE_EXT") == "1":
        assert segments.has_kernels(), segments.kernels_status()
    assert segments.kernels_status().startswith("OK" if segments.has_kernels() else "not")


@needs_kernels
def test_count_segment_pairs_kernel_and_fallback_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    gt, pred = _maps()
    kernel = count_segment_pairs(gt, pred)
    assert kernel[2] is not None and kernel[0].max() == 2**32 - 1  # uint32 ids come back intact
    assert len(set(zip(kernel[0].tolist(), kernel[1].tolist()))) == len(kernel[0])
    # Strided and non-native inputs are copied to a kernel type first.
    small = gt.astype(np.int64) % 1000
    strided = count_segment_pairs(small.astype(np.int16), pred[:, ::-1][:, ::-1])
    assert _pairs_dict(*strided) == _pairs_dict(*count_segment_pairs(small, pred))
    monkeypatch.setattr(segments, "has_kernels", lambda: False)
    fallback = count_segment_pairs(gt, pred)
    assert _pairs_dict(*kernel) == _pairs_dict(*fallback)
    assert sum(_pairs_dict(*kernel).values()) == gt.size


def test_count_segment_pairs_fallback_is_chosen_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(segments, "has_kernels", lambda: False)

    def no_kernel(*args):
        raise AssertionError("the kernel ran although has_kernels() is False")

    module = segments._load()[0]
    if module is not None:
        monkeypatch.setattr(module, "count_segment_pairs", no_kernel)
    gt = np.array([[1, 1, 2], [2, 2, 2]], dtype=np.uint32)
    pred = np.array([[5, 5, 5], [5, 6, 6]], dtype=np.int64)
    monkeypatch.setattr(segments, "_MAX_RUN_FRACTION", 1.0)
    gt_values, pred_values, counts = count_segment_pairs(gt, pred)
    assert (gt_values.tolist(), pred_values.tolist(), counts.tolist()) == (
        [1, 2, 2],
        [5, 5, 6],
        [2, 2, 2],
    )


def test_count_segment_pairs_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        count_segment_pairs(np.zeros((2, 3), np.int64), np.zeros((3, 2), np.int64))


@needs_kernels
def test_png_unfilter_to_ids_returns_uint32_ids_and_value_errors() -> None:
    pixels = np.array([[[1, 0, 0], [0, 1, 0]], [[0, 0, 1], [255, 255, 255]]], dtype=np.uint8)
    rows = np.concatenate([np.zeros((2, 1), dtype=np.uint8), pixels.reshape(2, 6)], axis=1)
    raw = rows.tobytes()
    ids = png_unfilter_to_ids(raw, 2, 2, 3)
    assert ids.dtype == np.uint32 and ids.shape == (2, 2)
    assert ids.tolist() == [[1, 256], [65536, 2**24 - 1]]
    bad = bytearray(raw)
    bad[7] = 9  # row 1's filter byte
    with pytest.raises(ValueError, match="invalid filter type 9 on row 1"):
        png_unfilter_to_ids(bytes(bad), 2, 2, 3)
    with pytest.raises(ValueError, match="needs 14"):
        png_unfilter_to_ids(raw[:-1], 2, 2, 3)
    with pytest.raises(ValueError, match="channels must be 3"):
        png_unfilter_to_ids(raw, 2, 2, 2)
    assert zlib.decompress(zlib.compress(raw)) == raw  # the input is what a PNG inflates to


def test_png_unfilter_to_ids_needs_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "_loaded", (None, "ImportError: not built (test)"))
    with pytest.raises(RuntimeError, match="required here but not available"):
        png_unfilter_to_ids(bytes(7), 1, 2, 3)
    assert not segments.has_kernels()


def test_segment_ops_do_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from panoptic2.ops import segments\n"
        "segments.count_segment_pairs(np.zeros((3, 4), np.int32), np.ones((3, 4), np.int64))\n"
        "if segments.has_kernels():\n"
        "    segments.png_unfilter_to_ids(bytes(7), 1, 2, 3)\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = run_fresh_python(code)
    assert proc.returncode == 0, proc.stderr
