import logging
import pickle

import numpy as np
import pytest

from panoptic2.data.catalog import DatasetCatalog, Metadata, MetadataCatalog, _DatasetCatalog


@pytest.fixture
def catalog():
    # A private instance, so clear() and friends cannot disturb built-in registrations.
    return _DatasetCatalog()


def _three_dicts():
    return [{"image_id": i} for i in range(3)]


def test_register_get_calls_function_each_time(catalog):
    calls = []

    def load():
        calls.append(1)
        return _three_dicts()

    catalog.register("toy_train", load)
    assert catalog.get("toy_train") == _three_dicts()
    assert catalog.get("toy_train") == _three_dicts()
    assert len(calls) == 2
    assert "toy_train" in catalog
    assert catalog.list() == ["toy_train"]


def test_unknown_name_lists_registered_and_suggests(catalog):
    catalog.register("cityscapes_fine_train", _three_dicts)
    catalog.register("coco_2017_val_panoptic", _three_dicts)
    with pytest.raises(KeyError) as exc:
        catalog.get("coco_2017_val_panoptc")
    msg = str(exc.value)
    assert msg.startswith("Dataset 'coco_2017_val_panoptc' is not registered")
    assert "cityscapes_fine_train" in msg and "coco_2017_val_panoptic" in msg
    assert "Did you mean 'coco_2017_val_panoptic'?" in msg


def test_unknown_name_without_close_match_has_no_suggestion(catalog):
    catalog.register("abc", _three_dicts)
    with pytest.raises(KeyError) as exc:
        catalog.get("zzzzzzzz")
    assert "Did you mean" not in str(exc.value)


def test_duplicate_registration_is_an_error(catalog):
    catalog.register("toy", _three_dicts)
    with pytest.raises(ValueError, match=r"already registered.*remove\('toy'\)"):
        catalog.register("toy", _three_dicts)
    catalog.remove("toy")
    catalog.register("toy", lambda: [{"image_id": 9}])
    assert catalog.get("toy") == [{"image_id": 9}]


def test_non_list_return_names_dataset_and_function(catalog):
    def load_as_tuple():
        return tuple(_three_dicts())

    catalog.register("tuple_ds", load_as_tuple)
    with pytest.raises(TypeError) as exc:
        catalog.get("tuple_ds")
    assert "'tuple_ds'" in str(exc.value)
    assert "load_as_tuple" in str(exc.value)
    assert "tuple" in str(exc.value)


def test_register_validates_arguments(catalog):
    with pytest.raises(TypeError, match="callable"):
        catalog.register("x", [1, 2])
    with pytest.raises(TypeError, match="non-empty str"):
        catalog.register("", _three_dicts)


def test_remove_and_clear(catalog):
    catalog.register("a", _three_dicts)
    catalog.register("b", _three_dicts)
    catalog.remove("a")
    assert catalog.list() == ["b"]
    with pytest.raises(KeyError, match="'a' is not registered"):
        catalog.remove("a")
    catalog.clear()
    assert catalog.list() == []


def test_global_catalog_roundtrip():
    name = "_test_catalog_global_roundtrip"
    DatasetCatalog.register(name, _three_dicts)
    try:
        assert name in DatasetCatalog.list()
        assert DatasetCatalog.get(name) == _three_dicts()
    finally:
        DatasetCatalog.remove(name)
    assert name not in DatasetCatalog.list()


def test_metadata_set_get_update_and_debug_log(caplog):
    meta = Metadata(name="toy", thing_classes=["a", "b"])
    assert meta.set(label_divisor=1000) is meta
    assert meta.thing_classes == ["a", "b"]
    assert meta.label_divisor == 1000
    with caplog.at_level(logging.DEBUG, logger="panoptic2.data.catalog"):
        meta.set(label_divisor=256)
    assert meta.label_divisor == 256
    assert "'label_divisor' changed from 1000 to 256" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="panoptic2.data.catalog"):
        meta.set(label_divisor=256)  # same value: nothing to report
        meta.colors = np.zeros((2, 3))
        meta.colors = np.ones((2, 3))  # arrays: no ambiguous-truth-value crash
    assert "label_divisor" not in caplog.text
    np.testing.assert_array_equal(meta.colors, np.ones((2, 3)))
    assert meta.get("ignore_label") is None
    assert meta.get("ignore_label", 255) == 255
    assert meta.get("label_divisor") == 256
    d = meta.as_dict()
    assert d["name"] == "toy" and d["thing_classes"] == ["a", "b"]
    d["thing_classes"] = "changed"
    assert meta.thing_classes == ["a", "b"]


def test_metadata_unknown_attribute_lists_fields():
    meta = Metadata(name="my_ds", stuff_classes=["sky"])
    with pytest.raises(AttributeError) as exc:
        _ = meta.thing_classes
    msg = str(exc.value)
    assert "'my_ds'" in msg and "'thing_classes'" in msg
    assert "stuff_classes" in msg and "name" in msg
    assert not hasattr(meta, "ignore_label")


def test_metadata_pickles():
    meta = Metadata(name="p", ignore_label=255)
    back = pickle.loads(pickle.dumps(meta))
    assert back.as_dict() == {"name": "p", "ignore_label": 255}


def test_metadata_catalog_creates_and_shares():
    name = "_test_catalog_meta"
    try:
        meta = MetadataCatalog.get(name).set(evaluator_type="sem_seg")
        assert MetadataCatalog.get(name) is meta
        assert MetadataCatalog.get(name).evaluator_type == "sem_seg"
        assert MetadataCatalog.get(name).name == name
        assert name in MetadataCatalog.list()
    finally:
        MetadataCatalog.remove(name)
    assert MetadataCatalog.get(name).get("evaluator_type") is None
    MetadataCatalog.remove(name)


def test_metadata_lazy_fields_computed_once_on_first_read():
    calls = []

    def compute():
        calls.append(1)
        return {"thing_classes": ["a", "b"], "num_classes": 3, "label_divisor": 7}

    meta = Metadata(name="lazy", num_classes=9)
    meta.set_lazy(["thing_classes", "num_classes", "label_divisor"], compute)
    assert "thing_classes" in meta and "other" not in meta and not calls  # `in` does not compute
    assert "lazy=" in repr(meta) and not calls
    assert meta.get("ignore_label") is None and not calls  # a field it does not provide
    assert meta.thing_classes == ["a", "b"] and len(calls) == 1
    assert meta.num_classes == 9  # set explicitly: wins over the computed value
    assert meta.as_dict() == {
        "name": "lazy",
        "num_classes": 9,
        "thing_classes": ["a", "b"],
        "label_divisor": 7,
    }
    assert len(calls) == 1 and "lazy=" not in repr(meta)


def test_metadata_lazy_errors_propagate_and_retry_and_pickling_resolves():
    state = {"fail": True}

    def compute():
        if state["fail"]:
            raise FileNotFoundError("categories.json of dataset 'x'")
        return {"classes": ["c"]}

    meta = Metadata(name="x").set_lazy(["classes"], compute)
    with pytest.raises(FileNotFoundError, match="categories.json"):
        _ = meta.classes
    with pytest.raises(FileNotFoundError):
        meta.as_dict()
    state["fail"] = False
    back = pickle.loads(pickle.dumps(meta))  # the closure is not pickled, its values are
    assert back.classes == ["c"] and back.as_dict() == {"name": "x", "classes": ["c"]}
    bad = Metadata(name="y").set_lazy(["a", "b"], lambda: {"a": 1})
    with pytest.raises(KeyError, match=r"'y'.*\['b'\]"):
        bad.get("a")
