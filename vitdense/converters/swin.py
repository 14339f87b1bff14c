"""Official Swin checkpoints (microsoft/Swin-Transformer) -> vitdense.

The key mapping itself is :func:`vitdense.models.backbones.swin.
convert_swin` (mmdet's ``swin_converter``), which ``SwinTransformer.
init_weights`` also uses; here the variant is read from the weights and the
result is checked by a strict load.
"""
import re
from typing import Dict, Tuple

import torch

from vitdense.converters.io import backbone_state_dict, check_layout
from vitdense.models.backbones.swin import (SwinTransformer, convert_swin,
                                            load_swin_state_dict)

#: the official classification layout and mmdet's/mmseg's (and vitdense's)
SWIN_LAYOUTS = {
    'official Swin': (
        'patch_embed.proj.weight',
        'layers.0.blocks.0.attn.relative_position_bias_table'),
    'mmdet Swin': (
        'patch_embed.projection.weight',
        'stages.0.blocks.0.attn.w_msa.relative_position_bias_table'),
}


def infer_swin_arch(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Read embed_dims, depths, num_heads and window_size from weights."""
    if 'patch_embed.projection.weight' not in state_dict:
        raise RuntimeError('not a Swin checkpoint: no patch embedding '
                           '(wrong prefix?)')
    depths, heads = [], []
    for k, v in state_dict.items():
        m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.'
                     r'relative_position_bias_table', k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            while len(depths) <= i:
                depths.append(0)
                heads.append(0)
            depths[i] = max(depths[i], j + 1)
            heads[i] = v.shape[1]
            window = (int(v.shape[0]**0.5) + 1) // 2
    return dict(
        embed_dims=state_dict['patch_embed.projection.weight'].shape[0],
        depths=tuple(depths), num_heads=tuple(heads), window_size=window)


def convert_swin_checkpoint(
        checkpoint: dict) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Official or mmdet-layout Swin checkpoint -> (mmdet-layout state dict
    without prefix, the ``SwinTransformer`` settings read from it), checked
    by a strict load into that model; another model's checkpoint raises
    :class:`~vitdense.converters.io.CheckpointLayoutError`."""
    check_layout(backbone_state_dict(checkpoint), SWIN_LAYOUTS)
    state_dict = convert_swin(checkpoint)
    arch = infer_swin_arch(state_dict)
    load_swin_state_dict(SwinTransformer(**arch), state_dict)
    return state_dict, arch
