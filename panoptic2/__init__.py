"""panoptic2: panoptic and semantic segmentation in PyTorch.

Importing the package is cheap and touches neither the disk nor the compiled extension;
subpackages are imported where they are used (``panoptic2.config``, ``panoptic2.data``,
``panoptic2.engine``, ...).
"""

__version__ = "0.1.0"
