"""Official Depth-Anything-V2 and DINOv2 checkpoints -> vitdense's
``DepthAnythingV2``.

Official code: https://github.com/DepthAnything/Depth-Anything-V2 (a561b84;
``depth_anything_v2_{vits,vitb,vitl}.pth``: ``pretrained.*`` DINOv2 +
``depth_head.*`` DPT keys), https://github.com/facebookresearch/dinov2
(b8931f7; hub files ``dinov2_vit*14[_reg]_pretrain.pth``: the ViT keys without
prefix).

The ViT keeps the DINOv2 names; the DPT's ``scratch`` is flattened
(``scratch.layer{i}_rn`` -> ``layer_rn.{i-1}``, ``scratch.refinenet{i}`` ->
``fusions.{i-1}`` with ``resConfUnit{j}`` -> ``res_unit{j}``,
``scratch.output_conv1`` / ``output_conv2.0`` / ``output_conv2.2`` ->
``out_conv1`` / ``out_conv2`` / ``out_conv3``). Weights the official forward
never uses (``mask_token``, ``scratch.refinenet4.resConfUnit1``) are dropped;
every other key must load.
"""
import math
import re
import warnings
from typing import Callable, Dict, Tuple

import torch

from vitdense.converters.io import backbone_state_dict, check_layout
from vitdense.models.backbones._builder import (keep_own,
                                                load_state_dict_strictly)
from vitdense.models.backbones.dinov2_dpt import DepthAnythingV2

__all__ = [
    'convert_depth_anything', 'infer_depth_anything_settings',
    'checkpoint_filter_fn', 'load_depth_anything_state_dict',
    'convert_depth_anything_checkpoint'
]

#: keys of every official Depth-Anything-V2 checkpoint
DEPTH_ANYTHING_KEYS = ('pretrained.cls_token', 'pretrained.pos_embed',
                       'pretrained.blocks.0.ls1.gamma',
                       'depth_head.projects.0.weight')
#: keys of every DINOv2 ViT (hub files and vitdense's own layout)
DINOV2_KEYS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight',
               'blocks.0.ls1.gamma')
LAYOUTS = {'Depth-Anything-V2': DEPTH_ANYTHING_KEYS, 'DINOv2': DINOV2_KEYS}

#: built and saved by the official code, never used by its forward
_UNUSED = re.compile(r'(pretrained\.)?mask_token|'
                     r'depth_head\.scratch\.refinenet4\.resConfUnit1\..*')
_Rename = Tuple[re.Pattern, Callable[[re.Match], str]]
_DPT_RENAMES: Tuple[_Rename, ...] = (
    (re.compile(r'depth_head\.scratch\.layer(\d)_rn\.'),
     lambda m: f'depth_head.layer_rn.{int(m[1]) - 1}.'),
    (re.compile(r'depth_head\.scratch\.refinenet(\d)\.resConfUnit(\d)\.'),
     lambda m: f'depth_head.fusions.{int(m[1]) - 1}.res_unit{m[2]}.'),
    (re.compile(r'depth_head\.scratch\.refinenet(\d)\.out_conv\.'),
     lambda m: f'depth_head.fusions.{int(m[1]) - 1}.out_conv.'),
    (re.compile(r'depth_head\.scratch\.output_conv1\.'),
     lambda m: 'depth_head.out_conv1.'),
    (re.compile(r'depth_head\.scratch\.output_conv2\.0\.'),
     lambda m: 'depth_head.out_conv2.'),
    (re.compile(r'depth_head\.scratch\.output_conv2\.2\.'),
     lambda m: 'depth_head.out_conv3.'),
)


def _rename_official(key: str) -> str:
    if key.startswith('pretrained.'):
        return key[len('pretrained.'):]
    for pattern, new in _DPT_RENAMES:
        m = pattern.match(key)
        if m:
            return new(m) + key[m.end():]
    return key


def convert_depth_anything(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """An official Depth-Anything-V2 checkpoint, a DINOv2 one (hub layout)
    or a vitdense one (also inside a detector: ``backbone.``) ->
    :class:`DepthAnythingV2` keys.

    Raises:
        CheckpointLayoutError: none of these layouts (the message names the
            keys expected).
    """
    state_dict = backbone_state_dict(checkpoint)
    layout = check_layout(state_dict, LAYOUTS)
    out = {}
    for key, value in state_dict.items():
        if _UNUSED.fullmatch(key):
            continue
        out[_rename_official(key) if layout == 'Depth-Anything-V2' else
            key] = value
    return out


def infer_depth_anything_settings(
        state_dict: Dict[str, torch.Tensor]) -> dict:
    """The :class:`DepthAnythingV2` arguments of a converted state dict:
    ``arch`` (None when no variant has its sizes: then build with an arch
    dict), ``img_size``, ``with_depth_head``, ``use_clstoken`` and the
    registers; with registers, ``interpolate_offset=0`` and
    ``interpolate_antialias=True`` as the official DINOv2 ``*_reg`` models
    (the weights do not record the interpolation)."""
    dims = state_dict['cls_token'].shape[-1]
    depth = 1 + max(
        int(k.split('.')[1]) for k in state_dict if k.startswith('blocks.'))
    ffn = 'swiglu' if 'blocks.0.mlp.w12.weight' in state_dict else 'mlp'
    with_depth_head = any(k.startswith('depth_head.') for k in state_dict)
    arch = None
    for name, a in DepthAnythingV2.arch_zoo.items():
        if (a['embed_dims'], a['depth'], a['ffn']) != (dims, depth, ffn):
            continue
        if with_depth_head and (
                state_dict['depth_head.out_conv1.weight'].shape[1] !=
                a['dpt_features'] or tuple(
                    state_dict[f'depth_head.projects.{i}.weight'].shape[0]
                    for i in range(4)) != a['dpt_channels']):
            continue
        arch = name
    settings = dict(
        arch=arch,
        img_size=DepthAnythingV2.patch_size *
        math.isqrt(state_dict['pos_embed'].shape[1] - 1),
        with_depth_head=with_depth_head)
    if 'depth_head.readout_projects.0.0.weight' in state_dict:
        settings['use_clstoken'] = True
    if 'register_tokens' in state_dict:
        settings.update(
            num_register_tokens=state_dict['register_tokens'].shape[1],
            interpolate_offset=0.0,
            interpolate_antialias=True)
    return settings


def checkpoint_filter_fn(checkpoint: dict,
                         model: DepthAnythingV2) -> Dict[str, torch.Tensor]:
    """A Depth-Anything-V2, DINOv2 or vitdense checkpoint -> ``model``'s
    state dict, for a strict load (``DepthAnythingV2.init_weights`` uses
    it): a checkpoint without DPT weights (DINOv2) leaves ``model``'s DPT head
    as initialised; a model without DPT head ignores the checkpoint's DPT
    weights; every ViT weight must match."""
    state_dict = convert_depth_anything(checkpoint)
    if model.depth_head is None:
        return {
            k: v
            for k, v in state_dict.items() if not k.startswith('depth_head.')
        }
    if not any(k.startswith('depth_head.') for k in state_dict):
        return keep_own(state_dict, model,
                        lambda k: k.startswith('depth_head.'))
    return state_dict


def load_depth_anything_state_dict(model: DepthAnythingV2,
                                   checkpoint: dict) -> None:
    """Load a checkpoint into ``model`` through :func:`checkpoint_filter_fn`.

    Raises:
        RuntimeError: on any missing/unexpected key or shape mismatch,
            naming the keys.
    """
    load_state_dict_strictly(model, checkpoint_filter_fn(checkpoint, model),
                             source='Depth-Anything-V2/DINOv2 checkpoint')


def convert_depth_anything_checkpoint(
        checkpoint: dict) -> Tuple[Dict[str, torch.Tensor], dict]:
    """An official Depth-Anything-V2 or DINOv2 checkpoint -> (state dict,
    the :class:`DepthAnythingV2` settings it belongs to), checked by a strict
    load into a model built with them (on the meta device: no memory, no
    initialisation).

    Raises:
        CheckpointLayoutError: not a Depth-Anything-V2/DINOv2 checkpoint.
        ValueError: no ``arch`` has the checkpoint's sizes.
    """
    state_dict = convert_depth_anything(checkpoint)
    settings = infer_depth_anything_settings(state_dict)
    if settings['arch'] is None:
        raise ValueError('no DepthAnythingV2 variant has the sizes of this '
                         'checkpoint; build with an arch dict instead')
    with torch.device('meta'):
        model = DepthAnythingV2(**settings, frozen=False)
    with warnings.catch_warnings():  # copying into meta tensors: a no-op
        warnings.filterwarnings('ignore', 'for .*: copying from a non-meta')
        load_depth_anything_state_dict(model, state_dict)
    return state_dict, settings
