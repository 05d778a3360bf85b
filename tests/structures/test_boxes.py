import numpy as np
import pytest
import torch

from panoptic2.structures import Boxes, BoxMode, pairwise_iou


def test_box_mode_is_a_string():
    assert BoxMode.XYWH_ABS == "XYWH_ABS"
    assert {"bbox_mode": "XYXY_ABS"}["bbox_mode"] == BoxMode.XYXY_ABS
    assert BoxMode("XYWH_ABS") is BoxMode.XYWH_ABS
    assert f"{BoxMode.XYWH_ABS}" == "XYWH_ABS"


def test_convert_list_and_tuple_keep_type_and_numbers():
    xyxy = BoxMode.convert([10, 20, 3, 4], "XYWH_ABS", BoxMode.XYXY_ABS)
    assert xyxy == [10, 20, 13, 24] and all(isinstance(v, int) for v in xyxy)
    xywh = BoxMode.convert((0.5, 1.5, 2.0, 4.0), BoxMode.XYXY_ABS, "XYWH_ABS")
    assert xywh == (0.5, 1.5, 1.5, 2.5)
    assert isinstance(xywh, tuple)


def test_convert_round_trips_numpy_and_tensor():
    rng = np.random.default_rng(0)
    xywh = rng.uniform(0, 100, size=(7, 4))
    expected = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)

    xyxy = BoxMode.convert(xywh, "XYWH_ABS", "XYXY_ABS")
    assert isinstance(xyxy, np.ndarray) and xyxy.dtype == np.float64
    np.testing.assert_allclose(xyxy, expected)
    np.testing.assert_allclose(BoxMode.convert(xyxy, "XYXY_ABS", "XYWH_ABS"), xywh)
    assert xywh[0, 2] != xyxy[0, 2]  # the input was not modified in place

    t = torch.from_numpy(xywh).float()
    t_xyxy = BoxMode.convert(t, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert isinstance(t_xyxy, torch.Tensor) and t_xyxy.dtype == torch.float32
    torch.testing.assert_close(t_xyxy, torch.from_numpy(expected).float())
    torch.testing.assert_close(BoxMode.convert(t_xyxy, "XYXY_ABS", "XYWH_ABS"), t)

    single = BoxMode.convert(torch.tensor([1, 2, 3, 4]), "XYWH_ABS", "XYXY_ABS")
    assert single.tolist() == [1, 2, 4, 6] and single.dtype == torch.int64
    assert BoxMode.convert(np.array([1, 2, 4, 6]), "XYXY_ABS", "XYWH_ABS").tolist() == [1, 2, 3, 4]


def test_convert_rejects_unknown_modes_and_shapes():
    with pytest.raises(ValueError, match="XYXY_ABS, XYWH_ABS"):
        BoxMode.convert([0, 0, 1, 1], "XYXY_REL", "XYXY_ABS")
    with pytest.raises(ValueError, match="4 numbers"):
        BoxMode.convert([0, 0, 1], "XYWH_ABS", "XYXY_ABS")
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        BoxMode.convert(np.zeros((2, 5)), "XYWH_ABS", "XYXY_ABS")


def test_boxes_construction():
    assert Boxes(torch.zeros(0)).tensor.shape == (0, 4)
    assert Boxes([]).tensor.shape == (0, 4)
    b = Boxes(torch.tensor([[0, 0, 2, 3]]))
    assert b.tensor.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(3,\)"):
        Boxes(torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        Boxes(torch.zeros(2, 5))


def test_area_centers_nonempty_scale():
    b = Boxes(torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [2.0, 2.0, 2.5, 2.5]]))
    assert b.area().tolist() == [6.0, 0.0, 0.25]
    assert b.get_centers().tolist() == [[1.0, 1.5], [1.0, 3.0], [2.25, 2.25]]
    assert b.nonempty().tolist() == [True, False, True]
    assert b.nonempty(threshold=0.5).tolist() == [True, False, False]
    b.scale(2.0, 10.0)
    assert b.tensor[0].tolist() == [0.0, 0.0, 4.0, 30.0]


def test_clip_in_place_and_rejects_nan():
    b = Boxes(torch.tensor([[-5.0, -1.0, 20.0, 8.0], [2.0, 3.0, 4.0, 5.0]]))
    b.clip((6, 10))  # (height, width)
    assert b.tensor.tolist() == [[0.0, 0.0, 10.0, 6.0], [2.0, 3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match="NaN"):
        Boxes(torch.tensor([[0.0, 0.0, float("nan"), 1.0]])).clip((4, 4))


def test_inside_box():
    b = Boxes(torch.tensor([[0.0, 0.0, 9.0, 5.0], [-1.0, 0.0, 5.0, 5.0], [0.0, 0.0, 10.0, 5.0]]))
    assert b.inside_box((6, 10)).tolist() == [True, False, False]
    assert b.inside_box((6, 10), boundary_threshold=1).tolist() == [True, True, True]


def test_indexing_len_iter_clone_cat():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    b = Boxes(t)
    assert len(b) == 3
    assert b[1].tensor.tolist() == [[4.0, 5.0, 6.0, 7.0]]
    assert b[np.int64(-1)].tensor.shape == (1, 4)
    assert b[1:].tensor.tolist() == t[1:].tolist()
    assert b[torch.tensor([True, False, True])].tensor.tolist() == t[[0, 2]].tolist()
    assert b[torch.tensor([2, 0])].tensor.tolist() == t[[2, 0]].tolist()
    assert [row.tolist() for row in b] == t.tolist()

    c = b.clone()
    c.tensor[0, 0] = 100.0
    assert b.tensor[0, 0] == 0.0
    assert b.to("cpu").device == torch.device("cpu")

    cat = Boxes.cat([b, b[:1]])
    assert cat.tensor.tolist() == t.tolist() + t[:1].tolist()
    assert Boxes.cat([]).tensor.shape == (0, 4)
    assert repr(b[:1]).startswith("Boxes(tensor(")


def test_pairwise_iou_hand_computed():
    a = Boxes(torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]]))
    b = Boxes(
        torch.tensor(
            [
                [0.0, 0.0, 2.0, 2.0],  # equal to a[0]
                [1.0, 0.0, 3.0, 2.0],  # overlaps a[0] and a[1] by 2
                [5.0, 5.0, 6.0, 6.0],  # disjoint
                [1.0, 1.0, 1.0, 1.0],  # zero area
            ]
        )
    )
    iou = pairwise_iou(a, b)
    expected = torch.tensor(
        [
            [1.0, 2.0 / 6.0, 0.0, 0.0],
            [1.0 / 7.0, 2.0 / 6.0, 0.0, 0.0],
        ]
    )
    assert iou.shape == (2, 4)
    torch.testing.assert_close(iou, expected)


def test_pairwise_iou_zero_area_pairs_are_zero_not_nan():
    point = Boxes(torch.tensor([[1.0, 1.0, 1.0, 1.0]]))
    assert pairwise_iou(point, point).tolist() == [[0.0]]
    assert pairwise_iou(point, Boxes(torch.zeros(0, 4))).shape == (1, 0)
