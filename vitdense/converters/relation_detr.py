"""Official and HF transformers Relation-DETR checkpoints -> vitdense.

Official: https://github.com/xiuqhou/Relation-DETR; HF transformers:
``RelationDetrForObjectDetection`` (huggingface/transformers PR #34900).
The results load with ``strict=True`` into
:class:`vitdense.models.detectors.relation_detr.RelationDETR`.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from vitdense.converters.io import CheckpointLayoutError

__all__ = [
    'COCO80_CATEGORY_IDS', 'convert_relation_detr',
    'convert_relation_detr_official', 'detect_relation_detr_layout',
    'convert_relation_detr_hf'
]

#: COCO category ids of mmdet's 80 classes, in mmdet's order.
COCO80_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
    65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88,
    89, 90)


# ----------------------------------------------------------------------------
# official checkpoint -> vitdense
# ----------------------------------------------------------------------------
_DECODER_LAYER_RENAMES = (
    ('self_attn.in_proj_', 'self_attn.attn.in_proj_'),
    ('self_attn.out_proj.', 'self_attn.attn.out_proj.'),
    ('norm2.', 'norms.0.'),
    ('norm1.', 'norms.1.'),
    ('norm3.', 'norms.2.'),
    ('linear1.', 'ffn.layers.0.0.'),
    ('linear2.', 'ffn.layers.1.'),
)
_ENCODER_LAYER_RENAMES = (
    ('norm1.', 'norms.0.'),
    ('norm2.', 'norms.1.'),
    ('linear1.', 'ffn.layers.0.0.'),
    ('linear2.', 'ffn.layers.1.'),
)
# official (transformer.)name -> vitdense name for whole-module renames
_TRANSFORMER_RENAMES = (
    ('level_embeds', 'level_embed'),
    ('enc_output.', 'memory_trans_fc.'),
    ('enc_output_norm.', 'memory_trans_norm.'),
    ('tgt_embed.', 'query_embedding.'),
    ('hybrid_tgt_embed.', 'hybrid_query_embedding.'),
    ('hybrid_class_head.', 'bbox_head.hybrid_cls_branch.'),
    ('encoder.memory_fusion.', 'encoder.memory_fusion.'),
    ('decoder.ref_point_head.', 'decoder.ref_point_head.'),
    ('decoder.query_scale.', 'decoder.query_scale.'),
    ('decoder.norm.', 'decoder.norm.'),
    ('decoder.position_relation_embedding.',
     'decoder.position_relation_embedding.'),
)


def _mlp_to_sequential(rest: str) -> str:
    """``layers.{j}.x`` of the official MLP -> ``{2j}.x`` of mmdet's
    Linear/ReLU Sequential."""
    m = re.fullmatch(r'layers\.(\d+)\.(.+)', rest)
    return f'{2 * int(m.group(1))}.{m.group(2)}'


def convert_relation_detr_official(
        state_dict: Dict[str, Tensor],
        class_index: Optional[Tensor] = None) -> 'OrderedDict[str, Tensor]':
    """Map an official Relation-DETR state dict onto :class:`RelationDETR`.

    Covers the transformer, heads, denoising embedding, ``ChannelMapper`` neck
    and the ResNet backbone (whose official keys already match mmdet's
    ``ResNet``); keys of other backbones are passed through under
    ``backbone.``.

    Args:
        state_dict: official ``model.state_dict()`` (``_classes_`` buffers
            are dropped).
        class_index: optional 1-D index into the class dimension (e.g. the 80
            COCO category ids of the official 91-way heads) applied to every
            class head and the denoising label embedding.

    Returns:
        OrderedDict loadable with ``strict=True``.
    """
    heads = [
        int(m.group(1)) for k in state_dict
        if (m := re.match(r'transformer\.decoder\.class_head\.(\d+)\.', k))
    ]
    if not heads:
        raise CheckpointLayoutError(
            'not an official Relation-DETR checkpoint: expected the keys '
            "'transformer.decoder.class_head.<i>.*'; found "
            f'{len(state_dict)} keys, e.g. {sorted(state_dict)[:5]}')
    num_layers = 1 + max(heads)
    neck_kernel = {
        int(m.group(1)): v.shape[-1]
        for k, v in state_dict.items()
        if (m := re.fullmatch(r'neck\.convs\.(\d+)\.0\.weight', k))
    }
    num_lateral = sum(1 for ks in neck_kernel.values() if ks == 1)

    out = OrderedDict()
    for key, value in state_dict.items():
        new = None
        is_class = False
        if key.endswith('_classes_'):
            continue
        if key.startswith('backbone.'):
            new = key
        elif m := re.fullmatch(r'neck\.convs\.(\d+)\.([01])\.(.+)', key):
            i, part, rest = int(m.group(1)), m.group(2), m.group(3)
            name = 'conv' if part == '0' else 'gn'
            new = (f'neck.convs.{i}.{name}.{rest}' if i < num_lateral else
                   f'neck.extra_convs.{i - num_lateral}.{name}.{rest}')
        elif key == 'denoising_generator.label_encoder.weight':
            new, is_class = 'dn_query_generator.label_embedding.weight', True
        elif key.startswith('transformer.'):
            name = key[len('transformer.'):]
            if m := re.fullmatch(r'encoder\.layers\.(\d+)\.(.+)', name):
                rest = m.group(2)
                for old, rep in _ENCODER_LAYER_RENAMES:
                    if rest.startswith(old):
                        rest = rep + rest[len(old):]
                        break
                new = f'encoder.layers.{m.group(1)}.{rest}'
            elif m := re.fullmatch(r'decoder\.layers\.(\d+)\.(.+)', name):
                rest = m.group(2)
                for old, rep in _DECODER_LAYER_RENAMES:
                    if rest.startswith(old):
                        rest = rep + rest[len(old):]
                        break
                new = f'decoder.layers.{m.group(1)}.{rest}'
            elif m := re.fullmatch(r'decoder\.class_head\.(\d+)\.(.+)', name):
                new, is_class = f'bbox_head.cls_branches.{m.group(1)}.' \
                                f'{m.group(2)}', True
            elif m := re.fullmatch(r'decoder\.bbox_head\.(\d+)\.(.+)', name):
                new = f'bbox_head.reg_branches.{m.group(1)}.' + \
                      _mlp_to_sequential(m.group(2))
            elif name.startswith('encoder_class_head.'):
                new, is_class = f'bbox_head.cls_branches.{num_layers}.' + \
                                name[len('encoder_class_head.'):], True
            elif name.startswith('encoder_bbox_head.'):
                new = f'bbox_head.reg_branches.{num_layers}.' + \
                      _mlp_to_sequential(name[len('encoder_bbox_head.'):])
            elif name.startswith('hybrid_bbox_head.'):
                new = 'bbox_head.hybrid_reg_branch.' + \
                      _mlp_to_sequential(name[len('hybrid_bbox_head.'):])
            else:
                for old, rep in _TRANSFORMER_RENAMES:
                    if name == old or name.startswith(old):
                        new = rep + name[len(old):]
                        is_class = old == 'hybrid_class_head.'
                        break
        if new is None:
            raise KeyError(f'unexpected key in official checkpoint: {key}')
        if is_class and class_index is not None:
            value = value[class_index.to(value.device)]
        out[new] = value
    return out


# ----------------------------------------------------------------------------
# HF transformers checkpoint -> official -> vitdense
# ----------------------------------------------------------------------------
# ``RelationDetrForObjectDetection`` of the HF transformers port
# (huggingface/transformers PR #34900: models/relation_detr/
# modeling_relation_detr.py @74a14c3, convert_relation_detr_weights_to_hf.py
# @9ed57d2; checkpoint hf.co/xiuqhou/relation-detr-resnet50). Each pattern
# must match a whole key; the template gives the official key. Earlier
# revisions of the port named ``encoder_output(_norm)`` ``enc_output(_norm)``.
_W = r'\.(?P<param>weight|bias)'
_MSDA = r'(sampling_offsets|attention_weights|value_proj|output_proj)'
_HF_TO_OFFICIAL = (
    (r'model\.encoder\.layers\.(\d+)\.self_attn\.' + _MSDA + _W,
     r'transformer.encoder.layers.\1.self_attn.\2.\g<param>'),
    (r'model\.encoder\.layers\.(\d+)\.self_attn_layer_norm' + _W,
     r'transformer.encoder.layers.\1.norm1.\g<param>'),
    (r'model\.encoder\.layers\.(\d+)\.final_layer_norm' + _W,
     r'transformer.encoder.layers.\1.norm2.\g<param>'),
    (r'model\.(encoder|decoder)\.layers\.(\d+)\.fc([12])' + _W,
     r'transformer.\1.layers.\2.linear\3.\g<param>'),
    (r'model\.encoder\.memory_fusion\.([023])' + _W,
     r'transformer.encoder.memory_fusion.\1.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.encoder_attn\.' + _MSDA + _W,
     r'transformer.decoder.layers.\1.cross_attn.\2.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm' + _W,
     r'transformer.decoder.layers.\1.norm1.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.self_attn_layer_norm' + _W,
     r'transformer.decoder.layers.\1.norm2.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.final_layer_norm' + _W,
     r'transformer.decoder.layers.\1.norm3.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.self_attn\.out_proj' + _W,
     r'transformer.decoder.layers.\1.self_attn.out_proj.\g<param>'),
    (r'model\.decoder\.(class_head\.\d+|bbox_head\.\d+\.layers\.\d+|'
     r'ref_point_head\.layers\.\d+|query_scale\.layers\.\d+|norm|'
     r'position_relation_embedding\.pos_proj\.0)' + _W,
     r'transformer.decoder.\1.\g<param>'),
    (r'model\.(encoder_class_head|hybrid_class_head)' + _W,
     r'transformer.\1.\g<param>'),
    (r'model\.(encoder_bbox_head|hybrid_bbox_head)\.layers\.(\d+)' + _W,
     r'transformer.\1.layers.\2.\g<param>'),
    (r'model\.(?:encoder_output|enc_output)' + _W,
     r'transformer.enc_output.\g<param>'),
    (r'model\.(?:encoder_output_norm|enc_output_norm)' + _W,
     r'transformer.enc_output_norm.\g<param>'),
    (r'model\.target_embed\.weight', 'transformer.tgt_embed.weight'),
    (r'model\.hybrid_target_embed\.weight',
     'transformer.hybrid_tgt_embed.weight'),
    (r'model\.level_embed', 'transformer.level_embeds'),
    (r'model\.neck\.convs\.(\d+)\.([01])' + _W,
     r'neck.convs.\1.\2.\g<param>'),
    (r'denoising_generator\.label_encoder\.weight',
     'denoising_generator.label_encoder.weight'),
    # timm ResNet (the port's default ``use_timm_backbone=True``): the names
    # of the official ResNet, which are mmdet's ``ResNet`` names
    (r'model\.backbone\.model\._backbone\.(conv1|bn1|layer\d+\.\d+\.'
     r'(?:conv\d|bn\d|downsample\.[01]))\.'
     r'(weight|bias|running_mean|running_var|num_batches_tracked)',
     r'backbone.\1.\2'),
)
# transformers' own ``ResNetBackbone`` (``use_timm_backbone=False``):
# (pattern, function of the match giving the official/mmdet ResNet key)
_BN = r'\.(weight|bias|running_mean|running_var|num_batches_tracked)'
_HF_RESNET_TO_OFFICIAL = (
    (r'model\.backbone\.model\.embedder\.embedder\.convolution\.weight',
     lambda m: 'backbone.conv1.weight'),
    (r'model\.backbone\.model\.embedder\.embedder\.normalization' + _BN,
     lambda m: f'backbone.bn1.{m[1]}'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.'
     r'(\d+)\.convolution\.weight',
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}'
     '.weight'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.'
     r'(\d+)\.normalization' + _BN,
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}.'
     f'{m[4]}'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.'
     r'shortcut\.convolution\.weight',
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.downsample.0.weight'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.'
     r'shortcut\.normalization' + _BN,
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.downsample.1.{m[3]}'),
)
# the port splits ``nn.MultiheadAttention.in_proj_*`` into q/k/v projections
_HF_QKV = r'model\.decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj' + _W


def detect_relation_detr_layout(state_dict: Dict[str, Tensor]) -> str:
    """``'official'`` (xiuqhou/Relation-DETR, keys ``transformer.*``) or
    ``'hf'`` (HF transformers, keys ``model.encoder.*``/``model.decoder.*``)
    from the characteristic keys of a Relation-DETR state dict."""
    official = any(k.startswith('transformer.') for k in state_dict)
    hf = any(
        k.startswith(('model.encoder.', 'model.decoder.')) for k in state_dict)
    if official == hf:
        found = 'both' if official else 'neither'
        raise CheckpointLayoutError(
            'not a Relation-DETR checkpoint, or cannot tell its layout: '
            f"{found} of official ('transformer.*') and HF transformers "
            "('model.encoder.*', 'model.decoder.*') keys found, e.g. "
            f'{sorted(state_dict)[:5]}')
    return 'official' if official else 'hf'


def convert_relation_detr_hf(
        state_dict: Dict[str, Tensor],
        class_index: Optional[Tensor] = None) -> 'OrderedDict[str, Tensor]':
    """Map an HF transformers ``RelationDetrForObjectDetection`` state dict
    onto :class:`RelationDETR`.

    The HF keys are renamed to the official layout (decoder self-attention
    ``q/k/v_proj`` concatenated back into ``in_proj_*``) and then converted by
    :func:`convert_relation_detr_official`. A ResNet backbone is mapped to
    mmdet's ``ResNet`` names, from timm (``model.backbone.model._backbone``)
    or from transformers' ``ResNetBackbone`` (``embedder``/``encoder.stages``;
    its ``downsample_in_bottleneck`` stride placement is a config matter, not
    a key one). Any other key, e.g. of a Swin or FocalNet backbone, raises.

    Args:
        state_dict: HF ``model.state_dict()``, e.g. from ``model.safetensors``
            or ``pytorch_model.bin``.
        class_index: as in :func:`convert_relation_detr_official` (the HF
            COCO checkpoints keep the official 91-way heads).

    Returns:
        OrderedDict loadable with ``strict=True``.
    """
    official = OrderedDict()
    qkv: Dict[Tuple[str, str], Dict[str, Tensor]] = {}
    unmapped = []
    for key, value in state_dict.items():
        if m := re.fullmatch(_HF_QKV, key):
            qkv.setdefault((m[1], m['param']), {})[m[2]] = value
            continue
        new = None
        for pattern, template in _HF_TO_OFFICIAL:
            if m := re.fullmatch(pattern, key):
                new = m.expand(template)
                break
        else:
            for pattern, rename in _HF_RESNET_TO_OFFICIAL:
                if m := re.fullmatch(pattern, key):
                    new = rename(m)
                    break
        if new is None:
            unmapped.append(key)
        else:
            official[new] = value
    if unmapped:
        raise KeyError(
            f'{len(unmapped)} key(s) of the HF checkpoint have no vitdense '
            f'counterpart (only ResNet backbones are mapped): {unmapped}')
    for (layer, param), parts in sorted(qkv.items()):
        missing = [p for p in 'qkv' if p not in parts]
        if missing:
            raise KeyError(f'decoder layer {layer} self-attention lacks '
                           f'{[f"{p}_proj.{param}" for p in missing]}')
        official[f'transformer.decoder.layers.{layer}.self_attn.'
                 f'in_proj_{param}'] = torch.cat([parts[p] for p in 'qkv'])
    return convert_relation_detr_official(official, class_index)


def convert_relation_detr(checkpoint: dict,
                          layout: str = 'auto',
                          class_index: Optional[Tensor] = None
                          ) -> 'OrderedDict[str, Tensor]':
    """A Relation-DETR checkpoint (bare or in ``{'model': ...}`` /
    ``{'state_dict': ...}``) in the ``layout`` ``'official'`` or ``'hf'``
    (``'auto'``: told from the keys) -> :class:`RelationDETR` state dict;
    ``class_index`` as in :func:`convert_relation_detr_official`."""
    for key in ('model', 'state_dict'):
        if isinstance(checkpoint, dict) and key in checkpoint:
            checkpoint = checkpoint[key]
    if layout == 'auto':
        layout = detect_relation_detr_layout(checkpoint)
    if layout == 'official':
        return convert_relation_detr_official(checkpoint, class_index)
    if layout == 'hf':
        return convert_relation_detr_hf(checkpoint, class_index)
    raise ValueError(f'layout must be auto, official or hf, got {layout!r}')
