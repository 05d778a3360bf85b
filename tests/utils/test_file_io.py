"""panoptic2.utils.file_io: atomic writes."""

import os

import pytest

from panoptic2.utils.file_io import atomic_write


def test_atomic_write_replaces_content(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    atomic_write(str(target), lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(target), fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]  # the temp file was removed
