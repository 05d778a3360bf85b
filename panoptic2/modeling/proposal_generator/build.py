"""Registry of proposal generators (RPN) and builder."""

from torch import nn

from panoptic2.layers.shape_spec import ShapeSpec
from panoptic2.registry import PROPOSAL_GENERATOR_REGISTRY


def build_proposal_generator(cfg, input_shape: dict[str, ShapeSpec], name: str) -> nn.Module:
    """Builds the proposal generator registered as ``name``.

    Args:
        cfg: the config.
        input_shape: backbone feature shapes by name.
        name: the registered name (the model's config chooses it).
    """
    return PROPOSAL_GENERATOR_REGISTRY.get(name)(cfg, input_shape)
