"""Official kMaX-DeepLab (detectron2) checkpoints -> vitdense.

Official: https://github.com/bytedance/kmax-deeplab (commit f8e1d04); its
checkpoints hold ``{'model': state_dict, ...}`` with ``backbone.*`` (the
detectron2 ResNet of ``modeling/backbone/resnet.py``, or ConvNeXt) and
``sem_seg_head.pixel_decoder.*`` / ``sem_seg_head.predictor.*``. The head
keys map onto :class:`vitdense.models.dense_heads.KMaXDeepLabHead`
(``pixel_decoder.*``, ``transformer_decoder.*``) under ``head_prefix``;
ResNet keys onto mmdet's ``ResNet`` (the official R50 is detectron2's
ResNet-50 with the stride in the 3x3 conv, i.e. mmdet's ``style='pytorch'``,
and BN eps 1e-3, momentum 0.01); other backbones' keys are kept as they are.
"""
import re
from collections import OrderedDict
from typing import Mapping

from torch import Tensor

from vitdense.converters.io import check_layout

__all__ = ['convert_kmax', 'convert_kmax_backbone']

_PIXEL = 'sem_seg_head.pixel_decoder.'
_TRANSFORMER = 'sem_seg_head.predictor.'
#: the official conv bias before the pixel-embedding BN: folded into the BN
_FOLDED_BIAS = '_pixel_space_head_last_convbn.conv.bias'

#: official conv + bias modules (``ConvBN`` without norm) -> plain convs
_CONV_ONLY = {
    'qkv_transform.conv.': 'qkv.',
    '_transformer_class_head.conv.': 'class_head.',
    'final_conv.conv.': 'classifier.',
    # the aux semantic head without decoder: Sequential(ConvBN, ConvBN, conv)
    '_auxiliary_semantic_predictor.2.conv.': 'aux_semantic_head.2.',
}
#: official module names -> vitdense (``None``: the level disappears)
_MODULES = {
    # pixel decoder
    '_in_norms': 'in_norms',
    '_stages': 'stages',
    '_blocks': None,
    '_conv1_bn_act': 'conv1',
    '_conv2_bn_act': 'conv2',
    '_conv3_bn': 'conv3',
    '_shortcut': 'shortcut',
    '_attention': 'attention',
    '_height_axis': 'height_axis',
    '_width_axis': 'width_axis',
    '_batch_norm_qkv': 'qkv_norm',
    '_batch_norm_similarity': 'similarity_norm',
    '_batch_norm_retrieved_output': 'output_norm',
    '_query_rpe': 'query_rpe',
    '_key_rpe': 'key_rpe',
    '_value_rpe': 'value_rpe',
    '_embeddings': 'embeddings',
    '_resized_fuses': 'fuses',
    '_conv_bn_low': 'low_proj',
    '_conv_bn_high': 'high_proj',
    # kMaX layers
    '_kmax_transformer_layers': 'layers',
    '_query_conv1_bn_act': 'query_conv1',
    '_pixel_conv1_bn_act': 'pixel_conv1',
    '_query_qkv_conv_bn': 'query_qkv',
    '_pixel_v_conv_bn': 'pixel_v',
    '_query_self_attention': 'self_attn',
    '_batch_norm_retrieved_value': 'value_norm',
    '_query_conv3_bn': 'query_conv3',
    '_query_ffn_conv1_bn_act': 'ffn.0',
    '_query_ffn_conv2_bn': 'ffn.1',
    '_kmeans_query_batch_norm_retrieved_value': 'kmeans_value_norm',
    '_kmeans_query_conv3_bn': 'kmeans_conv3',
    '_predcitor': 'predictor',
    # predictor
    '_pixel_space_head_conv0bnact': 'pixel_dw',
    '_pixel_space_head_conv1bnact': 'pixel_conv1',
    '_pixel_space_head_last_convbn': 'pixel_conv2',
    '_transformer_mask_head': 'mask_head',
    '_pixel_space_mask_batch_norm': 'mask_norm',
    '_cluster_centers': 'cluster_centers',
    '_class_embedding_projection': 'class_proj',
    '_mask_embedding_projection': 'mask_proj',
    # aux semantic head
    '_auxiliary_semantic_predictor': 'aux_semantic_head',
    '_aspp': None,
    '_aspp_conv0': 'aspp.0',
    '_aspp_conv1': 'aspp.1',
    '_aspp_conv2': 'aspp.2',
    '_aspp_conv3': 'aspp.3',
    '_aspp_pool': 'image_pool.1',
    '_proj_conv_bn_act': 'aspp_project',
    '_low_level_projection_os8': 'proj_os8',
    '_low_level_fusion_os8_conv0_bn_act': 'fuse_os8.0',
    '_low_level_fusion_os8_conv1_bn_act': 'fuse_os8.1',
    '_low_level_projection_os4': 'proj_os4',
    '_low_level_fusion_os4_conv0_bn_act': 'fuse_os4.0',
    '_low_level_fusion_os4_conv1_bn_act': 'fuse_os4.1',
    'conv_block_0': 'head.0',
    'conv_block_1': 'head.1',
    # ConvBN's ``norm`` is ConvModule's ``bn``
    'norm': 'bn',
}


def _rename_head_key(key: str) -> str:
    """An official ``sem_seg_head.*`` key -> the KMaXDeepLabHead key."""
    if key.startswith(_PIXEL):
        key = 'pixel_decoder.' + key[len(_PIXEL):]
    else:
        key = 'transformer_decoder.' + key[len(_TRANSFORMER):]
    for old, new in _CONV_ONLY.items():
        key = key.replace(old, new)
    parts = [_MODULES.get(part, part) for part in key.split('.')]
    return '.'.join(part for part in parts if part is not None)


def convert_kmax_backbone(key: str) -> str:
    """A detectron2 ResNet key (without ``backbone.``) -> mmdet ``ResNet``;
    any other key unchanged."""
    if m := re.fullmatch(r'stem\.conv1\.(norm\.)?(.+)', key):
        return ('bn1.' if m.group(1) else 'conv1.') + m.group(2)
    if m := re.fullmatch(r'res(\d)\.(\d+)\.(conv\d|shortcut)\.(norm\.)?(.+)',
                         key):
        stage, block, conv, norm, rest = m.groups()
        if conv == 'shortcut':
            name = 'downsample.1' if norm else 'downsample.0'
        else:
            name = f'bn{conv[-1]}' if norm else conv
        return f'layer{int(stage) - 1}.{block}.{name}.{rest}'
    return key


def convert_kmax(checkpoint: Mapping,
                 head_prefix: str = 'panoptic_head.'
                 ) -> 'OrderedDict[str, Tensor]':
    """Map an official kMaX-DeepLab checkpoint (``{'model': ...}`` or a bare
    state dict) onto vitdense.

    Head keys go under ``head_prefix`` (``''`` for a bare
    :class:`KMaXDeepLabHead`), backbone keys under ``backbone.`` (ResNet
    renamed to mmdet's), ``criterion.*`` buffers are dropped. The official
    conv bias before the pixel-embedding BN is folded into that BN's
    running mean (BN(x + b) with mean m is BN(x) with mean m - b).

    Raises:
        CheckpointLayoutError: the kMaX head keys are missing.
    """
    state_dict = checkpoint.get('model', checkpoint)
    check_layout(
        state_dict, {
            'kMaX-DeepLab': [
                _TRANSFORMER + '_cluster_centers.weight',
                _PIXEL + '_in_norms.0.weight'
            ]
        })
    state_dict = dict(state_dict)
    for key in [k for k in state_dict if k.endswith(_FOLDED_BIAS)]:
        bias = state_dict.pop(key)
        mean = key.replace('conv.bias', 'norm.running_mean')
        state_dict[mean] = state_dict[mean] - bias
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('backbone.'):
            out['backbone.' + convert_kmax_backbone(key[9:])] = value
        elif key.startswith((_PIXEL, _TRANSFORMER)):
            out[head_prefix + _rename_head_key(key)] = value
    return out
