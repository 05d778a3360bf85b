"""Small helpers for tests and examples (toy model and dataset). Nothing here is imported
by the framework itself; ``panoptic2.testing.toy`` registers its pieces when imported."""
