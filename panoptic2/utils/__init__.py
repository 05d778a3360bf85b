"""Utilities: distributed communication, logging, events, RNG, files, plugins, env report.

Import the submodules directly (``from panoptic2.utils import comm``); nothing is
imported eagerly here so that every submodule stays importable on its own.
"""
