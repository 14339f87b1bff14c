"""Official MonoDINO-DETR checkpoints -> vitdense.

Official: https://github.com/JihyeokKim/MonoDINO-DETR (``MonoDINODETR``
state dict, saved by its trainer under ``model_state``). The result loads
with ``strict=True`` into :class:`vitdense.models.detectors.MonoDINODETR`.

Besides renaming, the conversion

* keeps one copy of the parameters the official model registers twice
  (``backbone.0.*`` = ``backbone.backbone.*``; the decoder's ``bbox_embed``
  / ``dim_embed`` = the model's ``bbox_embed`` / ``dim_embed_3d``);
* folds each decoder layer's ``sa_{q,k}{content,pos}_proj`` into the query
  and key rows of its self-attention ``in_proj`` (the official sums the
  content and position projections of one input, ``tgt + query_pos``,
  before ``nn.MultiheadAttention``'s own projection: one linear map), in
  float64;
* drops what the official forward never uses: ``sa_v_proj`` (its output is
  overwritten by ``v = tgt``), ``label_enc``, ``query_scale_bbox``, and the
  LID bin values (a constant of the config, rebuilt by
  ``DepthPredictor``);
* maps the Depth-Anything-V2 backbone (``backbone.0.backbone.*`` =
  ``pretrained.*``, ``backbone.0.dpt_head.*`` = ``depth_head.*``) through
  :func:`vitdense.converters.depth_anything.convert_depth_anything`.

:func:`convert_monodetr` does the same for the parent MonoDETR
(https://github.com/ZrrSkywalker/MonoDETR, ``MonoDETR`` with
``use_dab: False``) onto :class:`vitdense.models.detectors.MonoDETR`: its
torchvision ResNet keys are mmdet ResNet's (``backbone.0.body.*`` ->
``backbone.*``, with the ``num_batches_tracked`` counters the official
``FrozenBatchNorm2d`` lacks), ``input_proj`` becomes the ``ChannelMapper``
neck, and the decoder's DAB heads, which it builds but never runs without
DAB, are dropped.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from vitdense.converters.depth_anything import convert_depth_anything
from vitdense.converters.io import CheckpointLayoutError, check_layout

__all__ = [
    'convert_monodino_detr', 'convert_monodetr', 'unwrap_monodino_detr'
]

#: keys every official MonoDINO-DETR (DAB, box refinement) state dict has
OFFICIAL_KEYS = ('depthaware_transformer.level_embed', 'tgt_embed.weight',
                 'refpoint_embed.weight',
                 'depth_predictor_2.depth_classifier.weight',
                 'backbone.0.backbone.patch_embed.proj.weight')

#: keys every official MonoDETR (no DAB, box refinement, ResNet) has
MONODETR_KEYS = ('depthaware_transformer.level_embed', 'query_embed.weight',
                 'depthaware_transformer.reference_points.weight',
                 'depth_predictor.depth_classifier.weight',
                 'backbone.0.body.conv1.weight')

#: official keys (regex, full match) of both models with no vitdense
#: counterpart
_DROPPED_COMMON = (
    r'depthaware_transformer\.decoder\.(bbox_embed|dim_embed)\..+',  # alias
    r'depthaware_transformer\.decoder\.layers\.\d+\.sa_v_proj\..+',  # unused
    r'depthaware_transformer\.decoder\.layers\.\d+\.sa_[qk](content|pos)'
    r'_proj\..+',  # folded into self_attn
    r'label_enc\.weight',  # unused (denoising off)
)
_DROPPED = _DROPPED_COMMON + (
    r'backbone\.backbone\..+',  # alias of backbone.0.*
    r'depthaware_transformer\.decoder\.query_scale_bbox\..+',  # unused
    r'depth_predictor_2\.depth_bin_values',  # constant of the config
)
_MONODETR_DROPPED = _DROPPED_COMMON + (
    # built but used only with DAB
    r'depthaware_transformer\.decoder\.(query_scale|ref_point_head)\..+',
    r'depth_predictor\.depth_bin_values',  # constant of the config
)

_FFN = (('linear1.', 'ffn.layers.0.0.'), ('linear2.', 'ffn.layers.1.'))
#: (official, vitdense) prefixes in a layer; the first match wins
_ENCODER_LAYER = _FFN + (
    ('norm1.', 'norms.0.'),
    ('norm2.', 'norms.1.'),
    ('self_attn.in_proj_', 'self_attn.attn.in_proj_'),  # depth encoder MHA
    ('self_attn.out_proj.', 'self_attn.attn.out_proj.'),
    ('self_attn.', 'self_attn.'),  # visual encoder MSDA
)
_DECODER_LAYER = _FFN + (
    ('cross_attn_depth.in_proj_', 'depth_cross_attn.attn.in_proj_'),
    ('cross_attn_depth.out_proj.', 'depth_cross_attn.attn.out_proj.'),
    ('norm_depth.', 'norms.0.'),
    ('self_attn.in_proj_', 'self_attn.attn.in_proj_'),
    ('self_attn.out_proj.', 'self_attn.attn.out_proj.'),
    ('norm2.', 'norms.1.'),
    ('cross_attn.', 'cross_attn.'),
    ('norm1.', 'norms.2.'),
    ('norm3.', 'norms.3.'),
)
#: (official prefix, vitdense prefix) of whole modules of both models
_MODULES_COMMON = (
    ('depthaware_transformer.level_embed', 'level_embed'),
    ('class_embed.', 'cls_branches.'),
    ('bbox_embed.', 'reg_branches.'),
    ('dim_embed_3d.', 'dim_branches.'),
    ('angle_embed.', 'angle_branches.'),
    ('depth_embed.', 'depth_branches.'),
)
_MODULES = _MODULES_COMMON + (
    ('input_proj.', 'feature_fusion.levels.'),
    ('depth_predictor_2.depth_input_proj.', 'depth_predictor.input_proj.'),
    ('depth_predictor_2.depth_head.', 'depth_predictor.depth_head.'),
    ('depth_predictor_2.depth_classifier.',
     'depth_predictor.depth_classifier.'),
    ('depth_predictor_2.depth_pos_embed.',
     'depth_predictor.depth_pos_embed.'),
    ('depthaware_transformer.decoder.query_scale.', 'decoder.query_scale.'),
    ('depthaware_transformer.decoder.ref_point_head.',
     'decoder.ref_point_head.'),
    ('tgt_embed.', 'query_embedding.'),
    ('refpoint_embed.', 'anchor_embedding.'),
)
_MONODETR_MODULES = _MODULES_COMMON + (
    ('depth_predictor.downsample.', 'depth_predictor.input_proj.downsample.'),
    ('depth_predictor.proj.', 'depth_predictor.input_proj.proj.'),
    ('depth_predictor.upsample.', 'depth_predictor.input_proj.upsample.'),
    ('depth_predictor.depth_head.', 'depth_predictor.depth_head.'),
    ('depth_predictor.depth_classifier.', 'depth_predictor.depth_classifier.'),
    ('depth_predictor.depth_pos_embed.', 'depth_predictor.depth_pos_embed.'),
    ('depthaware_transformer.reference_points.', 'reference_points.'),
    ('query_embed.', 'query_embedding.'),
)
_TRANSFORMER_LAYERS = (
    (r'depthaware_transformer\.encoder\.layers\.(\d+)\.(.+)',
     'encoder.layers.', _ENCODER_LAYER),
    (r'depthaware_transformer\.decoder\.layers\.(\d+)\.(.+)',
     'decoder.layers.', _DECODER_LAYER),
)
_LAYERS = ((r'depth_predictor_2\.depth_encoder\.layers\.(\d+)\.(.+)',
            'depth_predictor.depth_encoder.layers.', _ENCODER_LAYER),
           ) + _TRANSFORMER_LAYERS
_MONODETR_LAYERS = ((r'depth_predictor\.depth_encoder\.layers\.(\d+)\.(.+)',
                     'depth_predictor.depth_encoder.layers.', _ENCODER_LAYER),
                    ) + _TRANSFORMER_LAYERS


def unwrap_monodino_detr(checkpoint: Mapping) -> Dict[str, Tensor]:
    """The state dict of an official checkpoint file: its trainer saves
    ``{'model_state': ..., 'optimizer_state': ..., 'epoch': ...}``; a bare
    state dict or ``{'state_dict'/'model': ...}`` is accepted too;
    ``module.`` (DataParallel) is removed."""
    for key in ('model_state', 'state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in checkpoint.items()}


def _rename(key: str, layers: Sequence[tuple],
            modules: Sequence[Tuple[str, str]]) -> Optional[str]:
    """vitdense name of a non-backbone official key; None if unknown."""
    for pattern, prefix, renames in layers:
        m = re.fullmatch(pattern, key)
        if m:
            for old, new in renames:
                if m.group(2).startswith(old):
                    return f'{prefix}{m.group(1)}.{new}' \
                           f'{m.group(2)[len(old):]}'
            return None
    for old, new in modules:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def _fold_self_attention(state_dict: Mapping[str, Tensor],
                         out: Dict[str, Tensor]) -> None:
    """``in_proj`` rows of q and k <- ``W (W_content + W_pos)``, biases
    ``W (b_content + b_pos) + b``, for every decoder layer (float64)."""
    layers = sorted({
        int(m.group(1))
        for k in state_dict
        if (m := re.match(r'depthaware_transformer\.decoder\.layers\.(\d+)\.',
                          k))
    })
    for i in layers:
        src = f'depthaware_transformer.decoder.layers.{i}.'
        dst = f'decoder.layers.{i}.self_attn.attn.'
        weight = out[dst + 'in_proj_weight'].double().clone()
        bias = out[dst + 'in_proj_bias'].double().clone()
        dims = weight.shape[1]
        for row, name in ((0, 'q'), (1, 'k')):
            proj_w = sum(state_dict[f'{src}sa_{name}{part}_proj.weight']
                         .double() for part in ('content', 'pos'))
            proj_b = sum(state_dict[f'{src}sa_{name}{part}_proj.bias']
                         .double() for part in ('content', 'pos'))
            rows = slice(row * dims, (row + 1) * dims)
            bias[rows] = weight[rows] @ proj_b + bias[rows]
            weight[rows] = weight[rows] @ proj_w
        dtype = out[dst + 'in_proj_weight'].dtype
        out[dst + 'in_proj_weight'] = weight.to(dtype)
        out[dst + 'in_proj_bias'] = bias.to(dtype)


def _convert_backbone(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """``backbone.0.{backbone,dpt_head}.*`` -> the vitdense backbone's keys
    (through the Depth-Anything-V2 converter), prefixed ``backbone.``."""
    official = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r'backbone\.0\.(backbone|dpt_head)\.(.+)', key)
        if m:
            part = 'pretrained' if m.group(1) == 'backbone' else 'depth_head'
            official[f'{part}.{m.group(2)}'] = value
    return {
        f'backbone.{k}': v
        for k, v in convert_depth_anything(official).items()
    }


def _convert(state_dict: Mapping[str, Tensor], converted: Dict[str, Tensor],
             skipped: Tuple[str, ...], dropped: Sequence[str],
             layers: Sequence[tuple], modules: Sequence[Tuple[str, str]],
             model: str) -> 'OrderedDict[str, Tensor]':
    """The feature extractor's ``converted`` keys, then every other official
    key renamed (those starting with ``skipped``, which ``converted``
    covers, and those matching ``dropped`` left out), then the decoder's
    self-attention folded; unknown keys are refused, naming ``model``."""
    out = OrderedDict(converted)
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(skipped) or any(
                re.fullmatch(p, key) for p in dropped):
            continue
        new = _rename(key, layers, modules)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointLayoutError(
            f'keys of no {model} module: {unknown[:10]}')
    _fold_self_attention(state_dict, out)
    return out


def convert_monodino_detr(checkpoint: Mapping) -> 'OrderedDict[str, Tensor]':
    """Map an official MonoDINO-DETR checkpoint onto ``MonoDINODETR``.

    Args:
        checkpoint: the official state dict (or a file's dict, see
            :func:`unwrap_monodino_detr`).

    Returns:
        OrderedDict loadable with ``strict=True``.

    Raises:
        CheckpointLayoutError: not the official layout, or a key this
            converter does not know (named).
    """
    state_dict = unwrap_monodino_detr(checkpoint)
    check_layout(state_dict, {'MonoDINO-DETR': OFFICIAL_KEYS})
    return _convert(
        state_dict, _convert_backbone(state_dict), ('backbone.0.', ),
        _DROPPED, _LAYERS, _MODULES,
        'MonoDINO-DETR (DAB, box refinement, Depth-Anything-V2 backbone)')


def _convert_resnet_and_input_proj(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """MonoDETR's ``backbone.0.body.*`` (torchvision ResNet, the names of
    mmdet's ResNet) -> ``backbone.*`` with a zero ``num_batches_tracked``
    per BN (the official ``FrozenBatchNorm2d`` has none); ``input_proj.i``
    -> the ChannelMapper's ``neck.convs.i`` (1x1 convs, one per backbone
    map) or ``neck.extra_convs.j`` (the 3x3 stride-2 levels after them)."""
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r'backbone\.0\.body\.(.+)', key)
        if m:
            out[f'backbone.{m.group(1)}'] = value
            if key.endswith('.running_var'):
                out[f'backbone.{m.group(1)[:-len("running_var")]}'
                    'num_batches_tracked'] = torch.tensor(0)
    levels = sorted({
        int(m.group(1))
        for k in state_dict if (m := re.match(r'input_proj\.(\d+)\.', k))
    })
    num_maps = sum(state_dict[f'input_proj.{i}.0.weight'].shape[-1] == 1
                   for i in levels)
    for key, value in state_dict.items():
        m = re.fullmatch(r'input_proj\.(\d+)\.([01])\.(.+)', key)
        if m:
            i = int(m.group(1))
            module = f'convs.{i}' if i < num_maps else \
                f'extra_convs.{i - num_maps}'
            part = 'conv' if m.group(2) == '0' else 'gn'
            out[f'neck.{module}.{part}.{m.group(3)}'] = value
    return out


def convert_monodetr(checkpoint: Mapping) -> 'OrderedDict[str, Tensor]':
    """Map an official MonoDETR checkpoint (``configs/monodetr.yaml``: no
    DAB, box refinement, ResNet backbone) onto ``MonoDETR``; argument,
    result and errors as :func:`convert_monodino_detr` (the MonoDETR
    trainer saves the same ``model_state`` layout)."""
    state_dict = unwrap_monodino_detr(checkpoint)
    check_layout(state_dict, {'MonoDETR': MONODETR_KEYS})
    return _convert(
        state_dict, _convert_resnet_and_input_proj(state_dict),
        ('backbone.0.body.', 'input_proj.'), _MONODETR_DROPPED,
        _MONODETR_LAYERS, _MONODETR_MODULES,
        'MonoDETR (no DAB, box refinement, ResNet backbone)')
