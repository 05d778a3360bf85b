"""Panoptic-DeepLab targets: hand-checked disk instance, weights, and vectorised == reference."""

import numpy as np
import pytest

from panoptic2.data.mappers.panoptic_deeplab_targets import PanopticDeepLabTargetGenerator
from panoptic2.testing.references import panoptic_deeplab_targets_reference

DIV, IGNORE, THINGS = 1000, 255, [11, 12, 13]


def _disk_map():
    """Stuff 3 background, a disk of thing 11 (instance 1), crowd 12 block, void strip."""
    h, w = 64, 80
    pan = np.full((h, w), 3 * DIV, dtype=np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    disk = (yy - 30) ** 2 + (xx - 20) ** 2 <= 10**2
    pan[disk] = 11 * DIV + 1
    pan[40:50, 50:70] = 12 * DIV  # crowd: thing class, instance 0
    pan[:, 78:] = IGNORE * DIV
    return pan, disk


def test_disk_center_offsets_and_weights():
    pan, disk = _disk_map()
    gen = PanopticDeepLabTargetGenerator(IGNORE, THINGS, DIV, sigma=2, small_instance_area=400)
    t = gen(pan)
    # The disk is symmetric about (30, 20): the heatmap peak (1.0) lands there.
    assert t["center"].shape == (1, 64, 80) and t["center"].dtype == np.float32
    assert np.unravel_index(t["center"][0].argmax(), (64, 80)) == (30, 20)
    assert t["center"][0, 30, 20] == 1.0
    assert t["center"][0, 30, 22] == pytest.approx(np.exp(-4 / 8))
    assert t["center"][0, 30, 20 + 8] == 0  # outside the 3 sigma + 1 window
    # Offsets point from every disk pixel to the centroid; zero elsewhere.
    ys, xs = np.nonzero(disk)
    assert np.allclose(ys + t["offset"][0][disk], 30) and np.allclose(xs + t["offset"][1][disk], 20)
    assert not t["offset"][:, ~disk].any()
    # Weights: crowd and void 0 for centre/offset; stuff 0 for offset only.
    assert (t["center_weights"][40:50, 50:70] == 0).all() and (
        t["offset_weights"][40:50, 50:70] == 0
    ).all()
    assert (t["center_weights"][:, 78:] == 0).all() and (t["sem_seg_weights"][:, 78:] == 0).all()
    assert t["center_weights"][0, 0] == 1 and t["offset_weights"][0, 0] == 0
    assert (t["center_weights"][disk] == 1).all() and (t["offset_weights"][disk] == 1).all()
    # Disk area 317 < 400: small-instance weight; crowd keeps weight 1 and its class.
    assert disk.sum() < 400 and (t["sem_seg_weights"][disk] == 3).all()
    assert (t["sem_seg_weights"][40:50, 50:70] == 1).all()
    assert (t["sem_seg"][40:50, 50:70] == 12).all() and (t["sem_seg"][:, 78:] == IGNORE).all()
    assert t["sem_seg"].dtype == np.int64 and t["offset"].dtype == np.float32


def test_options():
    pan, disk = _disk_map()
    t = PanopticDeepLabTargetGenerator(
        IGNORE,
        THINGS,
        DIV,
        small_instance_area=100,
        ignore_stuff_in_offset=False,
        ignore_crowd_in_semantic=True,
    )(pan)
    assert (t["sem_seg_weights"][disk] == 1).all()  # not small any more
    assert t["offset_weights"][0, 0] == 1
    assert (t["sem_seg"][40:50, 50:70] == IGNORE).all()
    assert (t["sem_seg_weights"][40:50, 50:70] == 0).all()


def _random_map(rng, h, w, n, div, ignore, stuff, things):
    pan = np.full((h, w), stuff[0] * div, dtype=np.int64)
    pan[:, w // 2 :] = stuff[-1] * div
    yy, xx = np.mgrid[0:h, 0:w]
    counters = {}
    for i in range(n):
        cy, cx, r = rng.uniform(-5, h + 5), rng.uniform(-5, w + 5), rng.uniform(1, 15)
        cls = int(rng.choice(things))
        inside = (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.5, 2)) ** 2 <= r * r
        if i % 7 == 6:
            pan[inside] = cls * div  # crowd
        else:
            counters[cls] = counters.get(cls, 0) + 1
            pan[inside] = cls * div + counters[cls]
    pan[rng.random((h, w)) < 0.02] = ignore * div
    return pan


@pytest.mark.parametrize(
    "div,ignore,stuff,things", [(1000, 255, [0, 5], [11, 12, 13]), (256, 0, [81, 90], [1, 2, 3])]
)
@pytest.mark.parametrize("sigma", [8, 3.5])
def test_vectorised_equals_reference(div, ignore, stuff, things, sigma):
    rng = np.random.default_rng(int(sigma * 10) + div)
    for opts in ({}, {"ignore_stuff_in_offset": False, "ignore_crowd_in_semantic": True}):
        kwargs = dict(
            ignore_label=ignore,
            thing_ids=things,
            label_divisor=div,
            sigma=sigma,
            small_instance_area=150,
            **opts,
        )
        gen = PanopticDeepLabTargetGenerator(**kwargs)
        for _ in range(3):
            pan = _random_map(rng, 70, 90, 40, div, ignore, stuff, things)
            fast = gen(pan.astype(np.int32))
            ref = panoptic_deeplab_targets_reference(pan, **kwargs)
            assert fast.keys() == ref.keys()
            for key in ref:
                assert fast[key].dtype == ref[key].dtype, key
                assert np.array_equal(fast[key], ref[key]), key
            assert fast["center"].max() == 1.0


def test_sparse_ids_use_compaction_path():
    pan = np.full((8, 8), 3 * 2**20, dtype=np.int64)
    pan[2:5, 2:5] = 7 * 2**20 + 9
    kwargs = dict(ignore_label=255, thing_ids=[7], label_divisor=2**20, sigma=1)
    fast = PanopticDeepLabTargetGenerator(**kwargs)(pan)
    ref = panoptic_deeplab_targets_reference(pan, **kwargs)
    assert all(np.array_equal(fast[k], ref[k]) for k in ref)
    assert fast["center"][0, 3, 3] == 1.0


def test_rejects_bad_maps():
    gen = PanopticDeepLabTargetGenerator(255, [1], 1000)
    with pytest.raises(ValueError, match="integer"):
        gen(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="negative"):
        gen(-np.ones((4, 4), np.int32))
