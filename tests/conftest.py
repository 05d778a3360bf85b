"""Fixtures shared by the whole test suite."""

import logging

import pytest


@pytest.fixture(autouse=True)
def _panoptic2_logs_reach_caplog():
    """Lets pytest's ``caplog`` see panoptic2's log records in every test.

    ``setup_logger()`` (run by the trainer tests, as by every real run) stops the
    ``panoptic2`` logger from propagating to the root logger, where ``caplog`` listens;
    without this, tests asserting on log messages would pass or fail depending on which
    tests ran before them.
    """
    logger = logging.getLogger("panoptic2")
    propagate = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = propagate


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty download cache (``$PANOPTIC2_CACHE``) with every download failing as offline.

    Returns:
        The cache directory: files placed there are served without network access.
    """
    from urllib import error as urllib_error

    from panoptic2.utils import url_handlers

    def offline(*args, **kwargs):
        raise urllib_error.URLError("network is unreachable")

    monkeypatch.setattr(url_handlers.request, "urlopen", offline)
    monkeypatch.setenv("PANOPTIC2_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def log(caplog):
    """``caplog`` recording panoptic2's records from INFO up."""
    caplog.set_level(logging.INFO, logger="panoptic2")
    return caplog
