"""Plugin projects built on panoptic2's public API; each one is importable from the repo root."""
