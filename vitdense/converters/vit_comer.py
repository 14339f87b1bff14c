"""Official ViT-CoMer and plain ViT checkpoints -> vitdense's ``ViTCoMer``.

Official code: https://github.com/Traffic-X/ViT-CoMer (b57f386). Both
official checkpoint families (detection and segmentation) keep their key
layout; plain ViT / DeiT / DINOv2 / BEiT checkpoints initialise the ViT part
with position-embedding interpolation (official: no resizing, DINOv2 14->16
weights download-only, BEiT variant missing).
"""
import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from vitdense.converters.io import backbone_state_dict, check_layout
from vitdense.models.backbones._builder import (keep_own,
                                                load_state_dict_strictly)
from vitdense.models.backbones.vit_comer import ViTCoMer

__all__ = [
    'convert_vit_comer', 'infer_vit_comer_settings',
    'convert_vit_to_vit_comer', 'checkpoint_filter_fn',
    'load_vit_comer_state_dict', 'convert_vit_comer_checkpoint'
]

#: keys of every official ViT-CoMer checkpoint (ViT, CNN pyramid, levels)
VIT_COMER_KEYS = ('pos_embed', 'level_embed', 'blocks.0.attn.qkv.weight',
                  'spm.stem.0.weight')
#: keys of every plain ViT / DeiT / DINOv2 / BEiT checkpoint
VIT_KEYS = ('patch_embed.proj.weight', 'blocks.0.attn.qkv.weight')


def convert_vit_comer(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Official ViT-CoMer checkpoint (detection or segmentation, with or
    without ``backbone.``) -> :class:`ViTCoMer` state dict.

    The official key layout is kept; only the wrapping and prefixes go, plus
    ``cls_token`` (``None`` in the official model) if a file carries it.
    """
    state_dict = backbone_state_dict(checkpoint)
    return {k: v for k, v in state_dict.items() if k != 'cls_token'}


def infer_vit_comer_settings(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Guess the :class:`ViTCoMer` arguments that a converted official state
    dict was trained with (arch, flavour, mrfp_ratio, pretrain_size).

    The flavour is read from the MRFP width (0.5*C: detection); the other
    behavioural difference (which ViT features are added) leaves no trace in
    the weights, so a segmentation model with MRFP ratio 0.5 is ambiguous.
    """
    dims = state_dict['level_embed'].shape[1]
    depth = 1 + max(
        int(k.split('.')[1]) for k in state_dict if k.startswith('blocks.'))
    arch = next((name for name, a in ViTCoMer.arch_zoo.items()
                 if a['embed_dims'] == dims and a['depth'] == depth), None)
    fc1 = state_dict.get('interactions.0.mrfp.fc1.weight')
    ratio = None if fc1 is None else fc1.shape[0] / dims
    settings = dict(
        arch=arch,
        flavour='detection' if ratio == 0.5 else 'segmentation',
        pretrain_size=16 * math.isqrt(state_dict['pos_embed'].shape[1] - 1))
    if ratio is not None and ratio != 0.5:
        settings['mrfp_ratio'] = ratio
    return settings


def _resize_patch_kernel(w: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (C, 3, p, p) patch-embedding kernel to ``size`` (bicubic,
    rescaled so that the response to a constant patch is kept)."""
    if w.shape[-1] == size:
        return w
    p = w.shape[-1]
    w = F.interpolate(w.float(), size=(size, size), mode='bicubic',
                      align_corners=False)
    return w * (p * p) / (size * size)


def convert_vit_to_vit_comer(checkpoint: dict,
                             pretrain_size: int = 224,
                             patch_size: int = 16) -> Dict[str, torch.Tensor]:
    """Plain ViT / DeiT / DINOv2 / BEiT checkpoint -> the ViT part of
    :class:`ViTCoMer` (``patch_embed``, ``pos_embed``, ``blocks``).

    * position embeddings are bicubic-resized to ``pretrain_size // 16``
      (cls slot kept, or zero if the source has none; a DeiT distillation
      slot is dropped);
    * a patch kernel of another size (DINOv2: 14) is resized to 16;
    * DINOv2 ``ls1/ls2.gamma`` and BEiT ``gamma_1/2`` -> ``gamma1/2``; BEiT
      ``q_bias``/``v_bias`` -> ``qkv.bias``;
    * heads, final norms, cls/dist/mask/register tokens and BEiT relative
      position tables are dropped (the plain ViT here has none).
    """
    state_dict = backbone_state_dict(checkpoint)
    out = {}
    for k, v in state_dict.items():
        if k == 'patch_embed.proj.weight':
            out[k] = _resize_patch_kernel(v, patch_size)
        elif k == 'patch_embed.proj.bias':
            out[k] = v
        elif k.startswith('blocks.'):
            if 'relative_position' in k:
                continue
            if k.endswith('attn.q_bias'):
                v_bias = state_dict[k[:-6] + 'v_bias']
                out[k[:-6] + 'qkv.bias'] = torch.cat(
                    [v, torch.zeros_like(v), v_bias])
                continue
            if k.endswith('attn.v_bias'):
                continue
            for old, new in (('.ls1.gamma', '.gamma1'), ('.ls2.gamma',
                                                         '.gamma2'),
                             ('.gamma_1', '.gamma1'), ('.gamma_2', '.gamma2')):
                k = k.replace(old, new)
            out[k] = v
    if 'pos_embed' in state_dict:
        pos = state_dict['pos_embed']  # (1, extra + g*g, C), extra: cls/dist
        g_src = math.isqrt(pos.shape[1])
        extra = pos.shape[1] - g_src * g_src
        cls_pos = pos[:, :1] if extra else pos.new_zeros(1, 1, pos.shape[2])
        grid = pos[:, extra:].reshape(1, g_src, g_src, -1).permute(0, 3, 1, 2)
        g = pretrain_size // 16
        if g_src != g:
            grid = F.interpolate(grid.float(), size=(g, g), mode='bicubic',
                                 align_corners=False)
        out['pos_embed'] = torch.cat(
            [cls_pos, grid.flatten(2).transpose(1, 2)], 1)
    return out


_VIT_PART = ('patch_embed.', 'blocks.')
#: the output branch, built only for the levels in ``out_indices``
_OUTPUT_PARTS = ('up.', 'spm.fc1.', 'norm1.', 'norm2.', 'norm3.', 'norm4.')


def checkpoint_filter_fn(checkpoint: dict,
                         model: ViTCoMer) -> Dict[str, torch.Tensor]:
    """A ViT-CoMer or plain ViT checkpoint -> ``model``'s state dict, for a
    strict load (``ViTCoMer.init_weights`` uses it).

    * a ViT-CoMer checkpoint (official detection/segmentation or vitdense;
      recognised by ``interactions.*`` keys) keeps its layout; only the
      output-branch weights of levels ``model`` does not return
      (``out_indices``) are dropped;
    * otherwise it is taken as a plain ViT (timm ViT/DeiT, DINOv2, BEiT, or
      the output of ``tools/model_converters/vit_comer2vitdense.py --vit``)
      and converted by :func:`convert_vit_to_vit_comer`; the CNN branch,
      interactions and output branch keep ``model``'s values, and so do the
      layer scales ``gamma1/2`` (DeiT has none) and ``pos_embed`` (BEiT has
      none); every other ViT weight must be provided.
    """
    state_dict = convert_vit_comer(checkpoint)
    if any(k.startswith('interactions.') for k in state_dict):
        own = model.state_dict()
        return {
            k: v
            for k, v in state_dict.items()
            if k in own or not k.startswith(_OUTPUT_PARTS)
        }
    state_dict = convert_vit_to_vit_comer(
        state_dict, pretrain_size=16 * model.pretrain_grid)
    return keep_own(
        state_dict, model, lambda k: not k.startswith(_VIT_PART) or k.endswith(
            ('.gamma1', '.gamma2')))


def load_vit_comer_state_dict(model: ViTCoMer, checkpoint: dict) -> None:
    """Load a ViT-CoMer or plain ViT checkpoint into ``model`` through
    :func:`checkpoint_filter_fn`, without silent mismatches.

    Raises:
        RuntimeError: on any missing/unexpected key or shape mismatch,
            naming the keys.
    """
    load_state_dict_strictly(model, checkpoint_filter_fn(checkpoint, model),
                             source='ViT-CoMer checkpoint')


def convert_vit_comer_checkpoint(
        checkpoint: dict,
        vit: bool = False,
        arch: str = 's',
        pretrain_size: int = 224) -> Tuple[Dict[str, torch.Tensor], dict]:
    """An official ViT-CoMer checkpoint (or, with ``vit``, a plain ViT one
    for ``ViTCoMer(arch, pretrain_size)``) -> (state dict, the
    :class:`ViTCoMer` settings it belongs to), checked by
    :func:`load_vit_comer_state_dict` into a model built with them; another
    model's checkpoint raises
    :class:`~vitdense.converters.io.CheckpointLayoutError`."""
    if vit:
        check_layout(backbone_state_dict(checkpoint), {'ViT': VIT_KEYS})
        state_dict = convert_vit_to_vit_comer(checkpoint, pretrain_size)
        settings = dict(arch=arch, pretrain_size=pretrain_size)
    else:
        state_dict = convert_vit_comer(checkpoint)
        check_layout(state_dict, {'ViT-CoMer': VIT_COMER_KEYS})
        settings = infer_vit_comer_settings(state_dict)
        if settings['arch'] is None:
            raise ValueError('no ViTCoMer variant has embed/depth of this '
                             'checkpoint; build with an arch dict instead')
    load_vit_comer_state_dict(ViTCoMer(**settings), state_dict)
    return state_dict, settings
