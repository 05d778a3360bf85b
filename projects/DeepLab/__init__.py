"""DeepLabV3 / DeepLabV3+ semantic segmentation, as a panoptic2 plugin (see README.md)."""
