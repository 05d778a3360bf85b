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
