"""Registry of proposal generators (RPN) and builder."""

from fvcore.common.registry import Registry
from torch import nn

from panoptic2.layers.shape_spec import ShapeSpec

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = """
Proposal generators for box-based models, called as ``obj(cfg, input_shape)``.
"""


def build_proposal_generator(cfg, input_shape: dict[str, ShapeSpec], name: str) -> nn.Module:
    """Builds the proposal generator registered as ``name``.

    Args:
        cfg: the config.
        input_shape: backbone feature shapes by name.
        name: the registered name (the model's config chooses it).
    """
    return PROPOSAL_GENERATOR_REGISTRY.get(name)(cfg, input_shape)
