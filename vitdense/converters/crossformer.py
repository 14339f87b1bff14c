"""Official CrossFormer(++) checkpoints (cheerss/CrossFormer) -> vitdense.

The key mapping itself is :func:`vitdense.models.backbones.crossformer.
checkpoint_filter_fn`, which ``CrossFormer.init_weights`` also uses.
"""
from collections import OrderedDict

from vitdense.converters.io import backbone_state_dict, check_layout
from vitdense.models.backbones.crossformer import checkpoint_filter_fn

#: keys every official CrossFormer and CrossFormer++ checkpoint has (the
#: multi-scale patch embedding and the dynamic position bias)
CROSSFORMER_KEYS = ('patch_embed.projs.0.weight',
                    'layers.0.blocks.0.attn.pos.pos_proj.weight')


def convert_crossformer(checkpoint: dict) -> 'OrderedDict':
    """Official classification (``{'model': ...}``), detection or
    segmentation checkpoint -> bare backbone keys that ``CrossFormer(arch=
    ...)`` loads strictly; another model's checkpoint raises
    :class:`~vitdense.converters.io.CheckpointLayoutError`."""
    check_layout(backbone_state_dict(checkpoint),
                 {'CrossFormer': CROSSFORMER_KEYS})
    return checkpoint_filter_fn(checkpoint)
