"""Helpers for tests, benchmarks and examples; the framework itself never imports them.

* :mod:`.toy`: a toy plugin (dataset, model, evaluator, config keys) that trains in seconds;
  importing it registers its pieces.
* :mod:`.synthetic`: synthetic Panoptic-DeepLab network outputs for post-processing tests.
* :mod:`.references`: plain reference implementations the fast code is compared with.
* :mod:`.processes`: running code in a fresh interpreter (what a module imports).
"""
