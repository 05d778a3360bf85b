"""Augmentations keep image and labels aligned, never invent label values, pad with ignore."""

import numpy as np
import pytest

from panoptic2.data.transforms import (
    AugInput,
    ColorJitter,
    CropTransform,
    PadToDivisibility,
    RandomCrop,
    RandomCrop_CategoryAreaConstraint,
    RandomFlip,
    RandomScale,
    ResizeShortestEdge,
    apply_augmentations,
)

IGNORE = 255
DIV = 1000


def _pattern(h=61, w=83):
    """An image whose colour encodes each pixel's label: label = 10 * (y // 12) + (x // 12).

    Blocks of 12 px stay >= 6 px at scale 0.5, so bilinear resizing keeps block interiors'
    colours exact.
    """
    ys, xs = np.mgrid[0:h, 0:w]
    sem = (10 * (ys // 12) + xs // 12).astype(np.int64)
    image = np.stack([sem * 3, sem * 3, np.full_like(sem, 7)], axis=-1).astype(np.uint8)
    panoptic = (sem * DIV + 1).astype(np.int32)
    return image, sem, panoptic


def _check_aligned(aug, sem_values):
    sem, pan, image = aug.sem_seg, aug.panoptic_seg, aug.image
    assert set(np.unique(sem)) <= sem_values | {IGNORE}
    assert set(np.unique(pan)) <= {s * DIV + 1 for s in sem_values} | {IGNORE * DIV}
    valid = sem != IGNORE
    # Pixels whose 5x5 neighbourhood has one label (bilinear upscaling by <= 2.5 blends
    # pixels up to 2 away): the image colour must encode exactly that label.
    same = np.ones_like(valid)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            same &= np.roll(sem, (dy, dx), axis=(0, 1)) == sem
    same[[0, 1, -2, -1]] = False
    same[:, [0, 1, -2, -1]] = False
    inner = valid & same
    assert inner.sum() > 20
    assert np.array_equal(image[inner, 0].astype(np.int64), sem[inner] * 3)
    assert np.array_equal(pan[valid] // DIV, sem[valid])


@pytest.mark.parametrize(
    "augs",
    [
        [RandomFlip(prob=1.0)],
        [RandomCrop((20, 30))],
        [RandomScale(0.5, 2.0)],
        [ResizeShortestEdge([64, 80], 200, "choice"), RandomCrop((40, 40)), RandomFlip()],
        [RandomScale(1.5, 2.5), RandomCrop_CategoryAreaConstraint((30, 30), 0.5, IGNORE)],
    ],
)
def test_labels_subset_and_aligned(augs):
    image, sem, pan = _pattern()
    for seed in range(8):
        np.random.seed(seed)
        aug = AugInput(
            image,
            sem_seg=sem,
            panoptic_seg=pan,
            sem_seg_pad_value=IGNORE,
            panoptic_pad_value=IGNORE * DIV,
        )
        apply_augmentations(augs, aug) if seed % 2 else aug.apply_augmentations(augs)
        assert aug.image.shape[:2] == aug.sem_seg.shape == aug.panoptic_seg.shape
        _check_aligned(aug, set(np.unique(sem)))


def test_flip_matches_numpy():
    image, sem, pan = _pattern()
    aug = AugInput(image, sem_seg=sem, panoptic_seg=pan)
    aug.apply_augmentations([RandomFlip(prob=1.0)])
    assert np.array_equal(aug.image, image[:, ::-1])
    assert np.array_equal(aug.sem_seg, sem[:, ::-1])


def test_crop_beyond_image_pads_with_ignore():
    image, sem, pan = _pattern(10, 12)
    aug = AugInput(
        image,
        sem_seg=sem,
        panoptic_seg=pan,
        masks=np.ones((1, 10, 12), bool),
        boxes=np.array([[0, 0, 12, 10]], dtype=np.float32),
        sem_seg_pad_value=IGNORE,
        panoptic_pad_value=IGNORE * DIV,
    )
    aug.apply_augmentations([RandomCrop((16, 20), image_pad_value=(1, 2, 3))])
    assert aug.image.shape == (16, 20, 3)
    # Padding is at the bottom/right and the window must cover all of it: the image fits.
    assert np.array_equal(aug.sem_seg[:10, :12], sem) and (aug.sem_seg[10:] == IGNORE).all()
    assert (aug.sem_seg[:, 12:] == IGNORE).all() and (
        aug.panoptic_seg[:, 12:] == IGNORE * DIV
    ).all()
    assert (aug.image[12, 15] == [1, 2, 3]).all()
    assert aug.masks.sum() == 120 and not aug.masks[0, 10:].any()
    assert np.allclose(aug.boxes, [[0, 0, 12, 10]])


def test_crop_partially_beyond_one_side():
    image, sem, pan = _pattern(10, 60)
    aug = AugInput(image, sem_seg=sem, sem_seg_pad_value=IGNORE)
    tfm = aug.apply_augmentations([RandomCrop((16, 20), rng=np.random.default_rng(1))])
    (x0,) = [t.x0 for t in tfm.transforms if isinstance(t, CropTransform)]
    assert np.array_equal(aug.sem_seg[:10], sem[:, x0 : x0 + 20])
    assert (aug.sem_seg[10:] == IGNORE).all()


def test_category_area_constraint():
    # Class 2 fills columns 40..63: a 24-wide window satisfies the 60 % limit only for
    # x0 in 26..30, so a plain random crop violates it most of the time.
    sem = np.ones((64, 64), dtype=np.int64)
    sem[:, 40:] = 2
    sem[:4] = IGNORE
    image = np.zeros((64, 64, 3), np.uint8)

    def fraction(tfm):
        win = sem[tfm.y0 : tfm.y0 + 24, tfm.x0 : tfm.x0 + 24]
        labels, counts = np.unique(win[win != IGNORE], return_counts=True)
        return counts.max() / counts.sum() if len(labels) > 1 else 1.0

    aug = RandomCrop_CategoryAreaConstraint(
        (24, 24), 0.6, IGNORE, max_tries=100, rng=np.random.default_rng(0)
    )
    assert all(fraction(aug.get_transform(image, sem)) <= 0.6 for _ in range(20))
    plain = RandomCrop((24, 24), rng=np.random.default_rng(0))
    assert sum(fraction(plain.get_transform(image)) > 0.6 for _ in range(20)) > 10


def test_deterministic_under_seed():
    image, sem, pan = _pattern()
    augs = [RandomScale(0.5, 2.0), RandomCrop((30, 30)), RandomFlip(), ColorJitter(0.3, 0.3, 0.3)]

    def run(seed):
        np.random.seed(seed)
        aug = AugInput(image, sem_seg=sem)
        aug.apply_augmentations(augs)
        return aug.image, aug.sem_seg

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, c))
    # An explicit generator does not touch the global RNG.
    state = np.random.get_state()[1].copy()
    RandomFlip(rng=np.random.default_rng(0)).get_transform(image)
    assert np.array_equal(np.random.get_state()[1], state)


def test_resize_shortest_edge_shape_and_nearest_labels():
    image, sem, pan = _pattern(30, 60)
    aug = AugInput(image, sem_seg=sem)
    aug.apply_augmentations([ResizeShortestEdge(45, max_size=80)])
    # 30x60 -> short 45 gives 45x90 > 80 -> scaled to 40x80.
    assert aug.image.shape == (40, 80, 3) and aug.sem_seg.shape == (40, 80)
    rows = ((np.arange(40) + 0.5) * 30 / 40).astype(int)
    cols = ((np.arange(80) + 0.5) * 60 / 80).astype(int)
    assert np.array_equal(aug.sem_seg, sem[rows][:, cols])


def test_color_jitter_changes_image_only():
    image, sem, _ = _pattern()
    aug = AugInput(image, sem_seg=sem)
    aug.apply_augmentations([ColorJitter(0.5, 0.5, 0.5, rng=np.random.default_rng(0))])
    assert aug.image.dtype == np.uint8 and not np.array_equal(aug.image, image)
    assert np.array_equal(aug.sem_seg, sem)


def test_pad_to_divisibility():
    image, sem, pan = _pattern(37, 53)
    aug = AugInput(image, sem_seg=sem, sem_seg_pad_value=IGNORE)
    aug.apply_augmentations([PadToDivisibility(16)])
    assert aug.image.shape == (48, 64, 3)
    assert np.array_equal(aug.sem_seg[:37, :53], sem) and (aug.sem_seg[37:] == IGNORE).all()
