import numpy as np
import pytest
import torch

from panoptic2.structures import BitMasks, Boxes, masks_to_boxes


def _reference_boxes(masks: np.ndarray) -> np.ndarray:
    """Slow per-mask loop: XYXY with exclusive x1/y1, zeros for an empty mask."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def _random_masks(rng, n, h, w):
    masks = rng.random((n, h, w)) < rng.uniform(0.0, 0.2)
    masks &= rng.random((n, 1, 1)) < 0.7  # about a third of the masks empty
    return masks


def test_one_pixel_and_empty_masks():
    masks = torch.zeros(3, 4, 5, dtype=torch.bool)
    masks[0, 0, 0] = True
    masks[2, 1:3, 2:5] = True
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[0, 0, 1, 1], [0, 0, 0, 0], [2, 1, 5, 3]]


def test_matches_reference_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, h, w = rng.integers(1, 8), rng.integers(1, 30), rng.integers(1, 30)
        masks = _random_masks(rng, n, h, w)
        expected = _reference_boxes(masks)
        got = masks_to_boxes(torch.from_numpy(masks))
        np.testing.assert_array_equal(got.numpy(), expected)


def test_random_masks_include_empty_ones():
    # Guards the test above: the generator does produce empty masks.
    rng = np.random.default_rng(0)
    masks = _random_masks(rng, 40, 10, 10)
    assert not masks.reshape(40, -1).any(1).all()


def test_numpy_in_numpy_out_and_integer_dtypes():
    rng = np.random.default_rng(1)
    masks = _random_masks(rng, 6, 12, 9)
    boxes = masks_to_boxes(masks)
    assert isinstance(boxes, np.ndarray) and boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, _reference_boxes(masks))
    # Non-contiguous numpy (a transposed view) and integer dtypes: nonzero is inside.
    np.testing.assert_array_equal(
        masks_to_boxes(masks.transpose(0, 2, 1).astype(np.uint8) * 3),
        _reference_boxes(masks.transpose(0, 2, 1)),
    )
    ids = torch.from_numpy(masks.astype(np.int64) * 7)
    np.testing.assert_array_equal(masks_to_boxes(ids).numpy(), _reference_boxes(masks))


def test_degenerate_shapes_and_errors():
    assert masks_to_boxes(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)
    assert masks_to_boxes(np.zeros((0, 4, 4), dtype=bool)).shape == (0, 4)
    assert masks_to_boxes(torch.zeros(2, 0, 4, dtype=torch.bool)).tolist() == [[0] * 4] * 2
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        masks_to_boxes(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="float"):
        masks_to_boxes(torch.zeros(1, 4, 4))


def test_bitmasks_basics():
    rng = np.random.default_rng(2)
    raw = _random_masks(rng, 5, 7, 6)
    raw[0] = False
    raw[1, 3, 4] = True
    bm = BitMasks(torch.from_numpy(raw.astype(np.uint8)))
    assert bm.tensor.dtype == torch.bool
    assert bm.image_size == (7, 6)
    assert len(bm) == 5
    assert bm.nonempty().tolist() == raw.reshape(5, -1).any(1).tolist()
    assert bm.area().dtype == torch.int64
    assert bm.area().tolist() == raw.reshape(5, -1).sum(1).tolist()
    boxes = bm.get_bounding_boxes()
    assert isinstance(boxes, Boxes)
    np.testing.assert_array_equal(boxes.tensor.numpy(), _reference_boxes(raw))
    assert [m.shape for m in bm] == [(7, 6)] * 5
    assert bm.to("cpu").device == torch.device("cpu")
    assert repr(bm) == "BitMasks(num_instances=5, image_size=(7, 6))"
    with pytest.raises(ValueError, match="N, H, W"):
        BitMasks(torch.zeros(4, 4))


def test_bitmasks_indexing_and_cat():
    t = torch.rand(4, 3, 3) > 0.5
    bm = BitMasks(t)
    assert torch.equal(bm[2].tensor, t[2:3])
    assert torch.equal(bm[1:3].tensor, t[1:3])
    assert torch.equal(bm[torch.tensor([True, False, False, True])].tensor, t[[0, 3]])
    assert torch.equal(bm[torch.tensor([3, 1])].tensor, t[[3, 1]])

    cat = BitMasks.cat([bm, bm[:1]])
    assert torch.equal(cat.tensor, torch.cat([t, t[:1]]))
    with pytest.raises(ValueError, match="image sizes"):
        BitMasks.cat([bm, BitMasks(torch.zeros(1, 2, 3))])
    with pytest.raises(ValueError, match="at least one"):
        BitMasks.cat([])
