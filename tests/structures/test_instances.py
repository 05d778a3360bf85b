import copy
import pickle

import numpy as np
import pytest
import torch

from panoptic2.structures import BitMasks, Boxes, Instances


def _make(n: int = 3, offset: float = 0.0) -> Instances:
    inst = Instances((10, 20))
    inst.scores = torch.arange(n, dtype=torch.float32) + offset
    inst.pred_boxes = Boxes(torch.arange(4 * n, dtype=torch.float32).reshape(n, 4) + offset)
    inst.names = [f"obj{i + offset:g}" for i in range(n)]
    return inst


def test_fields_as_attributes_and_methods():
    inst = Instances((10, 20), scores=torch.tensor([0.5, 0.7]))
    inst.set("labels", torch.tensor([1, 2]))
    inst.names = ["a", "b"]
    assert inst.image_size == (10, 20)
    assert len(inst) == 2
    assert inst.get("labels").tolist() == [1, 2]
    assert inst.has("names") and not inst.has("missing")
    assert list(inst.get_fields()) == ["scores", "labels", "names"]
    inst.remove("labels")
    assert not inst.has("labels")
    assert list(inst.get_fields()) == ["scores", "names"]


def test_unknown_attribute_names_the_fields():
    inst = _make()
    with pytest.raises(AttributeError, match=r"'nope'.*\['scores', 'pred_boxes', 'names'\]"):
        _ = inst.nope


def test_length_mismatch_names_field_and_lengths():
    inst = _make(3)
    with pytest.raises(ValueError, match=r"'labels' has length 2 .* 3 instances"):
        inst.labels = torch.tensor([1, 2])
    assert not inst.has("labels")
    with pytest.raises(ValueError, match="field name"):
        inst.set("image_size", [1, 2, 3])


def test_len_of_empty_instances_raises():
    inst = Instances((4, 4))
    with pytest.raises(NotImplementedError):
        len(inst)
    assert "num_instances=0" in repr(inst)


def test_not_iterable():
    with pytest.raises(NotImplementedError):
        list(_make())


def test_int_index_keeps_length_one():
    inst = _make(3)
    one = inst[1]
    assert len(one) == 1
    assert one.scores.tolist() == [1.0]
    assert one.pred_boxes.tensor.tolist() == [[4.0, 5.0, 6.0, 7.0]]
    assert one.names == ["obj1"]
    assert inst[-1].names == ["obj2"]
    assert inst[np.int64(0)].names == ["obj0"]
    assert inst[torch.tensor(2)].names == ["obj2"]
    assert one.image_size == (10, 20)
    with pytest.raises(IndexError):
        inst[3]
    with pytest.raises(IndexError):
        inst[-4]


def test_slice_bool_and_long_indexing():
    inst = _make(4)
    sliced = inst[1:3]
    assert sliced.scores.tolist() == [1.0, 2.0] and sliced.names == ["obj1", "obj2"]

    keep = inst.scores > 1.5
    kept = inst[keep]
    assert kept.scores.tolist() == [2.0, 3.0]
    assert kept.names == ["obj2", "obj3"]
    assert kept.pred_boxes.tensor.tolist() == inst.pred_boxes.tensor[2:].tolist()

    order = torch.tensor([3, 0, 0])
    picked = inst[order]
    assert picked.scores.tolist() == [3.0, 0.0, 0.0]
    assert picked.names == ["obj3", "obj0", "obj0"]
    assert len(picked.pred_boxes) == 3

    assert inst[[2, 1]].names == ["obj2", "obj1"]
    assert len(inst[torch.zeros(4, dtype=torch.bool)]) == 0
    assert len(inst[[]]) == 0
    with pytest.raises(IndexError, match="bool mask"):
        inst[torch.tensor([True, False])]


def test_indexing_numpy_and_bitmask_fields():
    inst = Instances((2, 2), ids=np.array([5, 6, 7]), masks=BitMasks(torch.ones(3, 2, 2)))
    picked = inst[torch.tensor([True, False, True])]
    assert picked.ids.tolist() == [5, 7]
    assert len(picked.masks) == 2


def test_cat_concatenates_each_type():
    a, b = _make(2), _make(3, offset=10.0)
    cat = Instances.cat([a, b])
    assert len(cat) == 5
    assert cat.scores.tolist() == [0.0, 1.0, 10.0, 11.0, 12.0]
    assert cat.names == ["obj0", "obj1", "obj10", "obj11", "obj12"]
    assert isinstance(cat.pred_boxes, Boxes)
    assert cat.pred_boxes.tensor.tolist() == (
        a.pred_boxes.tensor.tolist() + b.pred_boxes.tensor.tolist()
    )
    assert list(cat.get_fields()) == ["scores", "pred_boxes", "names"]


def test_cat_errors():
    with pytest.raises(ValueError, match="at least one"):
        Instances.cat([])
    other_size = Instances((1, 1), scores=torch.zeros(1))
    with pytest.raises(ValueError, match="image sizes"):
        Instances.cat([Instances((10, 20), scores=torch.zeros(1)), other_size])
    with pytest.raises(ValueError, match="fields differ"):
        Instances.cat([_make(), Instances((10, 20), scores=torch.zeros(1))])
    with pytest.raises(ValueError, match="cannot concatenate field 'ids'"):
        Instances.cat([Instances((1, 1), ids=(1,)), Instances((1, 1), ids=(2,))])


def test_to_moves_fields_and_returns_new_instances():
    inst = _make()
    moved = inst.to(torch.device("cpu"))
    assert moved is not inst
    assert moved.scores.device == torch.device("cpu")
    assert moved.pred_boxes.device == torch.device("cpu")
    assert moved.names == inst.names
    dtype_moved = Instances((1, 1), scores=torch.zeros(2)).to(torch.float64)
    assert dtype_moved.scores.dtype == torch.float64


def test_pickle_and_deepcopy_round_trip():
    inst = _make()
    for clone in (pickle.loads(pickle.dumps(inst)), copy.deepcopy(inst)):
        assert clone.image_size == (10, 20)
        assert list(clone.get_fields()) == ["scores", "pred_boxes", "names"]
        assert torch.equal(clone.scores, inst.scores)
        assert torch.equal(clone.pred_boxes.tensor, inst.pred_boxes.tensor)
        assert clone.names == inst.names
        clone.scores = torch.zeros(3)  # still an Instances that accepts fields
        assert inst.scores.tolist() == [0.0, 1.0, 2.0]


def test_repr_lists_size_and_fields():
    assert repr(_make()) == (
        "Instances(num_instances=3, image_height=10, image_width=20, "
        "fields=['scores', 'pred_boxes', 'names'])"
    )
