"""Official RMT checkpoints (qhfan/RMT) -> vitdense.

The key mapping itself is :func:`vitdense.models.backbones.rmt.
checkpoint_filter_fn`, which ``RMT.init_weights`` also uses.
"""
from collections import OrderedDict

from vitdense.converters.io import backbone_state_dict, check_layout
from vitdense.models.backbones.rmt import checkpoint_filter_fn

#: keys every official RMT checkpoint has (the convolutional stem and the
#: first retention block)
RMT_KEYS = ('patch_embed.proj.0.weight',
            'layers.0.blocks.0.retention.q_proj.weight')


def convert_rmt(checkpoint: dict) -> 'OrderedDict':
    """Official classification (``{'model': ...}``), detection or
    segmentation checkpoint -> bare backbone keys that ``RMT(arch=...)``
    loads strictly; another model's checkpoint raises
    :class:`~vitdense.converters.io.CheckpointLayoutError`."""
    check_layout(backbone_state_dict(checkpoint), {'RMT': RMT_KEYS})
    return checkpoint_filter_fn(checkpoint)
