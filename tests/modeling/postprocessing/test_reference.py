"""Hand-computed cases for panoptic2/modeling/postprocessing/reference.py."""

import torch

from panoptic2.modeling.postprocessing.reference import (
    group_pixels_reference,
    merge_semantic_and_instance_reference,
)


def test_group_pixels_nearest_center_and_tie_to_first():
    centers = torch.tensor([[0, 0], [0, 4]])
    offsets = torch.zeros(2, 1, 5)
    offsets[1, 0, 4] = -3.0  # (0, 4) points at x = 1: nearer to center 0
    mask = torch.tensor([[True, True, True, False, True]])
    ins = group_pixels_reference(centers, offsets, mask)
    # x = 2 is equidistant (2 and 2): the first center wins; x = 3 is not grouped.
    assert ins.tolist() == [[1, 1, 1, 0, 1]]


def test_group_pixels_without_centers_is_zero():
    ins = group_pixels_reference(
        torch.zeros(0, 2, dtype=torch.long),
        torch.zeros(2, 3, 4),
        torch.ones(3, 4, dtype=torch.bool),
    )
    assert ins.shape == (3, 4) and not ins.any()


def test_group_pixels_resolves_one_ulp_offset_difference():
    centers = torch.tensor([[1, 0], [2, 0]])
    offsets = torch.zeros(2, 1, 1)
    offsets[0, 0, 0] = 1.5 + 2**-23  # one float32 ulp past the midpoint of y = 1 and y = 2
    ins = group_pixels_reference(centers, offsets, torch.ones(1, 1, dtype=torch.bool))
    assert ins.item() == 2


def test_merge_majority_tie_goes_to_smaller_class():
    sem = torch.tensor([[5, 5, 3, 3]])
    ins = torch.tensor([[1, 1, 1, 1]])
    pan = merge_semantic_and_instance_reference(
        sem, ins, torch.ones_like(sem, dtype=torch.bool), [3, 5], 100, 0, -1
    )
    assert pan.tolist() == [[301, 301, 301, 301]]


def test_merge_numbers_each_class_in_center_order_and_skips_empty_instances():
    sem = torch.tensor([[7, 7, 8, 9, 7, 7]])
    ins = torch.tensor([[1, 1, 2, 3, 4, 4]])
    # Instance 3 lies on a pixel outside the thing mask: it has no thing pixels.
    mask = torch.tensor([[True, True, True, False, True, True]])
    pan = merge_semantic_and_instance_reference(sem, ins, mask, [7, 8], 10, 1, 0)
    # Class 7: instances 1 and 4 -> 71, 72; class 8: instance 2 -> 81; pixel 3 is stuff 9.
    assert pan.tolist() == [[71, 71, 81, 90, 72, 72]]


def test_merge_stuff_area_limit_and_void():
    sem = torch.tensor([[0, 0, 0, 1, 1, 2, 2]])
    ins = torch.zeros_like(sem)
    mask = sem == 2  # thing class 2 but no instance: void
    pan = merge_semantic_and_instance_reference(sem, ins, mask, [2], 1000, 3, 255)
    # Class 0 has exactly 3 pixels (kept, >=), class 1 only 2 (void).
    assert pan.tolist() == [[0, 0, 0, 255, 255, 255, 255]]


def test_merge_stuff_area_counts_only_pixels_outside_instances():
    sem = torch.tensor([[4, 4, 4, 4]])
    ins = torch.tensor([[0, 0, 1, 1]])
    mask = torch.ones_like(sem, dtype=torch.bool)
    # Class 4 (stuff) wins the vote of instance 1; only 2 pixels remain as stuff (< 3).
    pan = merge_semantic_and_instance_reference(sem, ins, mask, [], 100, 3, -1)
    assert pan.tolist() == [[-1, -1, 401, 401]]
