import pytest
import torch

from panoptic2.structures import ImageList
from panoptic2.structures.image_list import batch_layout


def test_from_tensors_matches_hand_built_padding():
    a = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    b = torch.full((2, 4, 2), 7.0)
    images = ImageList.from_tensors([a, b], size_divisibility=4, pad_value=-1.0)

    expected = torch.full((2, 2, 4, 8), -1.0)  # max (4, 5) rounded up to (4, 8)
    expected[0, :, :3, :5] = a
    expected[1, :, :4, :2] = b
    assert torch.equal(images.tensor, expected)
    assert images.image_sizes == [(3, 5), (4, 2)]
    assert len(images) == 2
    assert torch.equal(images[0], a)
    assert torch.equal(images[1], b)


@pytest.mark.parametrize("size_divisibility", [0, 1, -3])
def test_no_rounding_below_two(size_divisibility):
    images = ImageList.from_tensors([torch.ones(3, 5), torch.ones(4, 2)], size_divisibility)
    assert images.tensor.shape == (2, 4, 5)
    assert images.tensor[0, 3].tolist() == [0, 0, 0, 0, 0]  # default pad_value 0


def test_three_dim_batch_keeps_dtype_and_pad_value():
    targets = [torch.zeros(2, 3, dtype=torch.uint8), torch.ones(3, 1, dtype=torch.uint8)]
    images = ImageList.from_tensors(targets, size_divisibility=2, pad_value=255)
    assert images.tensor.dtype == torch.uint8
    assert images.tensor.tolist() == [
        [[0, 0, 0, 255], [0, 0, 0, 255], [255, 255, 255, 255], [255, 255, 255, 255]],
        [[1, 255, 255, 255], [1, 255, 255, 255], [1, 255, 255, 255], [255, 255, 255, 255]],
    ]
    assert images[1].shape == (3, 1)


def pad_and_stack(tensors, size_divisibility=0, pad_value=0.0):
    """Frozen copy of ``pad_and_stack`` (panoptic2/modeling/meta_arch/panoptic_deeplab.py),
    which ImageList replaced: kept here as the reference ImageList must match bit for bit."""
    height = max(t.shape[-2] for t in tensors)
    width = max(t.shape[-1] for t in tensors)
    if size_divisibility > 0:
        height = -(-height // size_divisibility) * size_divisibility
        width = -(-width // size_divisibility) * size_divisibility
    out = tensors[0].new_full((len(tensors), *tensors[0].shape[:-2], height, width), pad_value)
    for i, t in enumerate(tensors):
        out[i, ..., : t.shape[-2], : t.shape[-1]].copy_(t)
    return out


def pad_images(tensors, size_divisibility=0, pad_value=0.0):
    """Frozen copy of ``pad_images`` (projects/DeepLab/deeplab/semantic_seg.py), likewise."""
    sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    if size_divisibility > 1:
        h = -(-h // size_divisibility) * size_divisibility
        w = -(-w // size_divisibility) * size_divisibility
    batch = tensors[0].new_full((len(tensors), *tensors[0].shape[:-2], h, w), pad_value)
    for out, t in zip(batch, tensors):
        out[..., : t.shape[-2], : t.shape[-1]].copy_(t)
    return batch, sizes


def _random_batch(gen, dtype):
    channels = int(torch.randint(1, 4, (1,), generator=gen))
    out = []
    for _ in range(int(torch.randint(1, 5, (1,), generator=gen))):
        h, w = torch.randint(1, 40, (2,), generator=gen).tolist()
        out.append((torch.rand(channels, h, w, generator=gen) * 100).to(dtype))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8])
def test_matches_replaced_helpers_on_random_sizes(dtype):
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        tensors = _random_batch(gen, dtype)
        divisibility = [0, 1, 4, 7, 32][trial % 5]
        images = ImageList.from_tensors(tensors, divisibility, pad_value=3)
        old = pad_and_stack(tensors, divisibility, pad_value=3)
        assert images.tensor.dtype == old.dtype
        assert torch.equal(images.tensor, old)
        batch, sizes = pad_images(tensors, divisibility, pad_value=3)
        assert torch.equal(images.tensor, batch)
        assert images.image_sizes == sizes


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least one"):
        ImageList.from_tensors([])
    with pytest.raises(ValueError, match=r"\(3, 4, 4\), \(1, 4, 4\)"):
        ImageList.from_tensors([torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)])
    with pytest.raises(ValueError, match="dtype"):
        ImageList.from_tensors([torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.int64)])
    with pytest.raises(ValueError, match="image sizes"):
        ImageList(torch.zeros(2, 3, 4, 4), [(4, 4)])


def test_to_returns_new_image_list_and_device():
    images = ImageList.from_tensors([torch.ones(1, 2, 3)])
    moved = images.to("cpu", dtype=torch.float64)
    assert moved is not images
    assert moved.tensor.dtype == torch.float64
    assert moved.image_sizes == images.image_sizes
    assert moved.device == torch.device("cpu")
    assert images.tensor.dtype == torch.float32


def test_accepts_a_generator_of_tensors():
    images = ImageList.from_tensors(torch.ones(1, 2, 2) for _ in range(3))
    assert images.tensor.shape == (3, 1, 2, 2)


def test_batch_layout_applies_inside_its_block_only():
    seen = []

    def layout(batch):
        seen.append(tuple(batch.shape))
        return batch * 2

    tensors = [torch.ones(3, 4, 5), torch.ones(3, 2, 6)]
    with batch_layout(layout):
        inside = ImageList.from_tensors(tensors, pad_value=1.0)
        targets = ImageList.from_tensors([torch.ones(4, 5)], size_divisibility=4)
    outside = ImageList.from_tensors(tensors, pad_value=1.0)
    assert seen == [(2, 3, 4, 6), (1, 4, 8)]
    assert torch.equal(inside.tensor, outside.tensor * 2)
    assert inside.image_sizes == outside.image_sizes == [(4, 5), (2, 6)]
    assert targets.tensor.shape == (1, 4, 8)


def test_batch_layout_is_restored_after_an_error():
    def failing(batch):
        raise RuntimeError("layout failed")

    with pytest.raises(RuntimeError, match="layout failed"), batch_layout(failing):
        ImageList.from_tensors([torch.zeros(1, 2, 2)])
    assert ImageList.from_tensors([torch.zeros(1, 2, 2)]).tensor.shape == (1, 1, 2, 2)
