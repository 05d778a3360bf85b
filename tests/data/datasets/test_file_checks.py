"""Tests of panoptic2/data/datasets/file_checks.py: listings, JSON reading, uniqueness."""

from __future__ import annotations

import gc
import os
from typing import TypedDict

import pytest

from panoptic2.data.datasets import file_checks
from panoptic2.data.datasets.file_checks import (
    check_unique,
    gc_paused,
    read_json,
    unlisted_files,
)


def test_unlisted_files_are_the_names_that_are_not_files(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "folder.jpg" / "b.jpg").write_bytes(b"")
    os.symlink(tmp_path / "a.jpg", tmp_path / "link.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "broken.jpg")
    names = ["a.jpg", "link.jpg", "folder.jpg", "broken.jpg", "none.jpg", "folder.jpg/b.jpg"]
    # Links to files count; folders, broken links and names with a folder part do not.
    assert unlisted_files(str(tmp_path), names) == set(names[2:])
    assert unlisted_files(str(tmp_path), []) == set()


def test_gc_paused_restores_the_collector_state():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
    with pytest.raises(KeyError), gc_paused():
        raise KeyError("x")
    assert gc.isenabled()


class _Item(TypedDict):
    id: int


class _File(TypedDict):
    items: list[_Item]


@pytest.fixture(params=["msgspec", "json"])
def parser(request, monkeypatch):
    if request.param == "json":
        monkeypatch.setattr(file_checks, "_msgspec", None)
    elif not file_checks.SCHEMA_CHECKS:
        pytest.skip("msgspec is not installed")
    return request.param


def test_read_json_parses_and_names_bad_files(tmp_path, parser):
    path = tmp_path / "a.json"
    path.write_text('{"items": [{"id": 1, "extra": [1.5, "x"]}], "other": null}')
    assert read_json(str(path), "list", "here") == {
        "items": [{"id": 1, "extra": [1.5, "x"]}],
        "other": None,
    }
    if parser == "msgspec":  # checked and trimmed to the schema
        assert read_json(str(path), "list", "here", schema=_File) == {"items": [{"id": 1}]}
        path.write_text('{"items": [{"id": "1"}]}')
        with pytest.raises(ValueError, match=r"a\.json' of here is malformed.*items\[0\]\.id"):
            read_json(str(path), "list", "here", schema=_File)
    path.write_text('{"items": [')
    with pytest.raises(ValueError, match=r"list '.*a\.json' of here is not valid JSON"):
        read_json(str(path), "list", "here")
    with pytest.raises(FileNotFoundError, match=r"missing\.json' of here does not exist"):
        read_json(str(tmp_path / "missing.json"), "list", "here")
    assert gc.isenabled()


def test_check_unique_names_both_entries():
    items = [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}, {"id": 1, "n": "c"}]
    check_unique(items[:2], lambda i: i["id"], "Id", "the list", lambda i: i["n"])
    with pytest.raises(
        ValueError, match=r"Id 1 appears twice in the list: entry 0 \(a\) and entry 2 \(c\)"
    ):
        check_unique(items, lambda i: i["id"], "Id", "the list", lambda i: i["n"])
    # Unhashable keys are compared by their repr.
    with pytest.raises(ValueError, match=r"Box '\[1, 2\]' appears twice"):
        check_unique([[1, 2], [3], [1, 2]], lambda b: b, "Box", "boxes", str)
    check_unique(iter([[1], [2]]), lambda b: b, "Box", "boxes", str)  # any iterable
