"""Tests of panoptic2.utils.logger."""

import io
import logging
import sys

import pytest

from panoptic2.utils.logger import log_every_n, log_first_n, setup_logger


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _stream_handlers(logger):
    return [h for h in logger.handlers if getattr(h, "stream", None) is sys.stdout]


def test_rank0_logs_to_console_and_log_txt(tmp_path):
    logger = setup_logger(str(tmp_path / "out"), distributed_rank=0, name="p2test_rank0")
    assert len(_stream_handlers(logger)) == 1
    assert len(logger.handlers) == 2
    logging.getLogger("p2test_rank0.child").info("hello from rank 0")
    text = (tmp_path / "out" / "log.txt").read_text()
    assert "hello from rank 0" in text
    assert "p2test_rank0.child INFO" in text
    assert not (tmp_path / "out" / "log.txt.rank1").exists()


def test_other_ranks_write_own_file_and_no_console(tmp_path):
    logger = setup_logger(str(tmp_path), distributed_rank=1, name="p2test_rank1")
    assert _stream_handlers(logger) == []
    assert len(logger.handlers) == 1
    logger.warning("hello from rank 1")
    assert "hello from rank 1" in (tmp_path / "log.txt.rank1").read_text()
    assert not (tmp_path / "log.txt").exists()


def test_output_as_file_name(tmp_path):
    logger = setup_logger(str(tmp_path / "sub" / "train.log"), distributed_rank=2, name="p2test_f")
    logger.info("to a file")
    assert "to a file" in (tmp_path / "sub" / "train.log.rank2").read_text()


def test_setup_twice_does_not_duplicate_handlers(tmp_path):
    first = setup_logger(str(tmp_path), name="p2test_twice")
    num_handlers = len(first.handlers)
    second = setup_logger(str(tmp_path), name="p2test_twice")
    assert second is first
    assert len(second.handlers) == num_handlers == 2
    second.info("once")
    assert (tmp_path / "log.txt").read_text().count("once") == 1


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_console_colors_level_names_only_on_a_tty(monkeypatch, tmp_path):
    tty = _FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    logger = setup_logger(str(tmp_path), name="p2test_color", abbrev_name="pc")
    logging.getLogger("p2test_color.sub").warning("careful")
    console = tty.getvalue()
    assert "\033[33mWARNING\033[0m" in console
    assert "pc.sub" in console and "p2test_color.sub" not in console
    # The file gets the plain record: no escape codes, full name.
    text = (tmp_path / "log.txt").read_text()
    assert "\033[" not in text and "p2test_color.sub WARNING: careful" in text

    plain = _FakeTTY()
    monkeypatch.setattr(sys, "stdout", plain)
    setup_logger(name="p2test_nocolor", color=False).warning("plain")
    assert "\033[" not in plain.getvalue() and "WARNING" in plain.getvalue()
    assert logger.propagate is False


def test_log_first_n_and_every_n():
    records = _Records()
    logger = logging.getLogger("p2test_first_n")
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        for i in range(5):
            log_first_n(logging.INFO, f"first {i}", n=2, name="p2test_first_n")
        assert records.messages == ["first 0", "first 1"]

        records.messages.clear()
        # key="message": the same text from two call sites counts together.
        log_first_n(logging.INFO, "same", name="p2test_first_n", key="message")
        log_first_n(logging.INFO, "same", name="p2test_first_n", key="message")
        assert records.messages == ["same"]

        records.messages.clear()
        for i in range(7):
            log_every_n(logging.INFO, f"every {i}", n=3, name="p2test_first_n")
        assert records.messages == ["every 0", "every 3", "every 6"]
        with pytest.raises(ValueError, match="caller"):
            log_first_n(logging.INFO, "x", key="bogus")
    finally:
        logger.removeHandler(records)


def test_log_first_n_uses_calling_module_logger():
    records = _Records()
    logging.getLogger(__name__).addHandler(records)
    logging.getLogger(__name__).setLevel(logging.DEBUG)
    try:
        log_first_n(logging.WARNING, "from the caller")
    finally:
        logging.getLogger(__name__).removeHandler(records)
    assert records.messages == ["from the caller"]
