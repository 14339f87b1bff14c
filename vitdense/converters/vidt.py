"""Official ViDT / ViDT+ checkpoints (naver-ai/vidt) -> vitdense.

Backbone part (this section): the official detectors keep their Swin with
RAM under ``backbone.`` in ``{'model': state_dict}`` (``methods/
swin_w_ram.py``, identical on ``main`` 5207d04 and ``vidt-plus`` a8c48b5;
keys ``backbone.layers.*``, ``backbone.det_token``,
``backbone.det_pos_embed``, ``...blocks.*.det_pos_linear.*``). They, plain
ImageNet Swin checkpoints (microsoft/Swin-Transformer layout, e.g. the
``swin_nano_patch4_window7_224.pth`` that ViDT starts from) and vitdense's own
``SwinRAM`` files are mapped to :class:`~vitdense.models.backbones.swin_ram.
SwinRAM` keys by :func:`convert_vidt_backbone`; any other layout is refused
with :class:`~vitdense.converters.io.CheckpointLayoutError`.

Detector part (the last section): :func:`convert_vidt` maps a whole official
ViDT checkpoint onto :class:`~vitdense.models.detectors.ViDT`, the backbone
through :func:`convert_vidt_backbone` and the rest through
:func:`convert_vidt_detector`.

For the detector converter: call ``convert_vidt_backbone(checkpoint)`` on the
whole official checkpoint (it keeps only the ``backbone.`` part) and prefix
the result with ``backbone.``; :func:`infer_swin_ram_settings` gives the
``SwinRAM`` arguments read from the weights (``cross_indices`` leaves no
trace in them: official default ``(3,)``).
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch

from vitdense.converters.io import (CheckpointLayoutError,
                                    backbone_state_dict, check_layout)
from vitdense.converters.relation_detr import _DECODER_LAYER_RENAMES
from vitdense.converters.swin import SWIN_LAYOUTS, infer_swin_arch
from vitdense.models.backbones.swin_ram import (SwinRAM, convert_swin_ram,
                                                load_swin_ram_state_dict)

__all__ = [
    'VIDT_BACKBONE_LAYOUTS', 'convert_vidt_backbone',
    'infer_swin_ram_settings', 'convert_swin_ram_checkpoint',
    'convert_vidt_detector', 'convert_vidt', 'convert_epff'
]

#: the official ViDT backbone, vitdense's SwinRAM, and plain Swin layouts
VIDT_BACKBONE_LAYOUTS = {
    'official ViDT Swin-RAM': (
        'det_token', 'det_pos_embed', 'patch_embed.proj.weight',
        'layers.0.blocks.0.det_pos_linear.weight'),
    'vitdense SwinRAM': (
        'det_token', 'det_pos_embed', 'patch_embed.projection.weight',
        'stages.0.blocks.0.det_pos_linear.weight'),
    **SWIN_LAYOUTS,
}


def convert_vidt_backbone(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The backbone of an official ViDT/ViDT+ checkpoint (whole detector or
    backbone only), a plain Swin checkpoint or a SwinRAM file -> SwinRAM
    state dict without prefix (a plain Swin gives no [DET] keys).

    Raises:
        CheckpointLayoutError: the checkpoint has none of
            :data:`VIDT_BACKBONE_LAYOUTS` (e.g. a CoaT-RAM ViDT), naming
            the expected and found keys.
    """
    state_dict = backbone_state_dict(checkpoint)
    check_layout(state_dict, VIDT_BACKBONE_LAYOUTS)
    return convert_swin_ram(state_dict)


def infer_swin_ram_settings(state_dict: Dict[str, torch.Tensor]) -> dict:
    """``SwinRAM`` arguments read from a :func:`convert_vidt_backbone` state
    dict: Swin's ``embed_dims``, ``depths``, ``num_heads``, ``window_size``
    and, when present, ``det_token_num``, ``pos_dims``, ``reduced_dims``."""
    settings = infer_swin_arch(state_dict)
    if 'det_token' in state_dict:
        last = len(settings['depths']) - 1
        settings.update(
            det_token_num=state_dict['det_token'].shape[1],
            pos_dims=state_dict['det_pos_embed'].shape[2],
            reduced_dims=state_dict[
                f'stages.{last}.downsample.reduction.weight'].shape[0])
    return settings


def convert_swin_ram_checkpoint(
    checkpoint: dict,
    cross_indices: Sequence[int] = (3, )
) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Any accepted checkpoint -> (SwinRAM state dict without prefix, the
    ``SwinRAM`` settings read from it), checked by a strict load into that
    model (a plain Swin: every key but the [DET] parameters and the last
    patch merging, which keep their initialisation and are not returned)."""
    state_dict = convert_vidt_backbone(checkpoint)
    settings = dict(infer_swin_ram_settings(state_dict),
                    cross_indices=tuple(cross_indices))
    load_swin_ram_state_dict(SwinRAM(**settings), state_dict)
    return state_dict, settings


# ----------------------------------------------------------------------------
# detector part: official ``methods/vidt/detector.py`` ``Detector`` -> ViDT
# ----------------------------------------------------------------------------
#: official ViDT+ token-labeling layers -> TokenLabelHead
_TOKEN_LABEL_PARTS = {'enc_output': 'proj', 'enc_output_norm': 'norm',
                      'token_embed': 'classifier'}
_EPFF_PARTS = {'smoothing': 'smooth', 'resConfUnit1': 'lateral',
               'resConfUnit2': 'out'}


def convert_epff(state_dict: Dict[str, torch.Tensor]
                 ) -> 'OrderedDict[str, torch.Tensor]':
    """An official ``FPNFusionModule`` state dict (``methods/vidt/
    fpn_fusion.py``: ViDT's ``cross_scale_fusion``, ViDT+'s EPFF) ->
    :class:`~vitdense.models.necks.EPFF` keys. The coarsest block's
    smoothing conv and lateral unit, which the official forward never
    calls, are dropped."""
    blocks = {
        int(m[1])
        for k in state_dict
        if (m := re.match(r'multi_scaler\.layer_(\d+)_rn\.', k))
    }
    if not blocks:
        raise CheckpointLayoutError(
            'not an official FPNFusionModule (EPFF): expected the keys '
            "'multi_scaler.layer_<i>_rn.*'; found "
            f'{len(state_dict)} keys, e.g. {sorted(state_dict)[:5]}')
    top = max(blocks)
    out = OrderedDict()
    for key, value in state_dict.items():
        if m := re.fullmatch(r'multi_scaler\.layer_(\d+)_rn\.(.+)', key):
            out[f'reduce.{m[1]}.0.{m[2]}'] = value
        elif m := re.fullmatch(r'multi_scaler\.p_norm_(\d+)\.(.+)', key):
            out[f'reduce.{m[1]}.1.{m[2]}'] = value
        elif m := re.fullmatch(
                r'multi_scaler\.refinenet_(\d+)\.(\w+)\.(.+)', key):
            part = _EPFF_PARTS.get(m[2])
            if part is None:
                raise KeyError(f'unexpected key in official EPFF: {key}')
            if int(m[1]) != top or part == 'out':
                out[f'fuse.{m[1]}.{part}.{m[3]}'] = value
        else:
            raise KeyError(f'unexpected key in official EPFF: {key}')
    return out


def convert_vidt_detector(
        state_dict: Dict[str, torch.Tensor],
        class_index: Optional[torch.Tensor] = None
) -> 'OrderedDict[str, torch.Tensor]':
    """The non-backbone keys of an official ViDT state dict -> keys of
    :class:`~vitdense.models.detectors.ViDT` (``backbone.*`` is skipped,
    see :func:`convert_vidt`).

    ``input_proj`` becomes the ``ChannelMapper`` neck (``fusion``, the
    official ``cross_scale_fusion``/EPFF, the :class:`EPFF` neck through
    :func:`convert_epff`), ``tgt_proj``
    ``query_proj``, ``transformer.reference_points``
    ``reference_points_fc``, ``class_embed``/``bbox_embed`` the
    ``DeformableDETRHead`` branches (ViDT+'s ``iou_embed`` the
    :class:`ViDTHead` IoU branches, its ``vector_embed`` the one vector MLP
    that the official shares by all layers) and the decoder layers mmdet's
    names; ViDT+'s token-labeling ``transformer.enc_output``,
    ``enc_output_norm`` and ``token_embed`` become the
    :class:`~vitdense.models.layers.TokenLabelHead`'s ``proj``, ``norm``
    and ``classifier``.
    The decoder's alias of the box branches (``transformer.decoder.
    bbox_embed``, the official box-refinement hook) must equal
    ``bbox_embed`` and is dropped, as is ``transformer.level_embed``, which
    the official forward never reads. ``class_index`` (e.g. the 80 COCO
    category ids of the official 91-way heads) selects rows of every class
    branch.

    Raises:
        CheckpointLayoutError: no official decoder keys, or a decoder box
            branch that differs from the detector's.
        KeyError: a key with no vitdense counterpart.
    """
    if not any(
            k.startswith('transformer.decoder.layers.') for k in state_dict):
        raise CheckpointLayoutError(
            'not an official ViDT checkpoint: expected the keys '
            "'transformer.decoder.layers.<i>.*'; found "
            f'{len(state_dict)} keys, e.g. {sorted(state_dict)[:5]}')
    out = OrderedDict()
    fusion = {
        k[len('fusion.'):]: v
        for k, v in state_dict.items() if k.startswith('fusion.')
    }
    if fusion:
        out.update(
            (f'neck.{k}', v) for k, v in convert_epff(fusion).items())
    unexpected = []
    for key, value in state_dict.items():
        new, is_class = None, False
        if key.startswith(('backbone.', 'fusion.')) or \
                key == 'transformer.level_embed':
            continue
        if m := re.fullmatch(r'transformer\.decoder\.bbox_embed\.(.+)', key):
            twin = state_dict.get(f'bbox_embed.{m[1]}')
            if twin is None or not torch.equal(twin, value):
                raise CheckpointLayoutError(
                    f'{key} differs from bbox_embed.{m[1]}: the official '
                    'decoder shares the box branches of the detector')
            continue
        if m := re.fullmatch(r'vector_embed\.(\d+)\.layers\.(\d+)\.(.+)',
                             key):
            first = state_dict.get(f'vector_embed.0.layers.{m[2]}.{m[3]}')
            if first is None or not torch.equal(first, value):
                raise CheckpointLayoutError(
                    f'{key} differs from vector_embed.0.layers.{m[2]}.'
                    f'{m[3]}: the official layers share one vector MLP')
            if m[1] == '0':
                out[f'bbox_head.vector_branch.{2 * int(m[2])}.{m[3]}'] = value
            continue
        token_index = None
        if m := re.fullmatch(r'transformer\.decoder\.layers\.(\d+)\.(.+)',
                             key):
            rest = m[2]
            for old, rep in _DECODER_LAYER_RENAMES:
                if rest.startswith(old):
                    rest = rep + rest[len(old):]
                    break
            new = f'decoder.layers.{m[1]}.{rest}'
        elif m := re.fullmatch(r'transformer\.reference_points\.(.+)', key):
            new = f'reference_points_fc.{m[1]}'
        elif m := re.fullmatch(r'class_embed\.(\d+)\.(.+)', key):
            new, is_class = f'bbox_head.cls_branches.{m[1]}.{m[2]}', True
        elif m := re.fullmatch(
                r'(bbox|iou)_embed\.(\d+)\.layers\.(\d+)\.(.+)', key):
            branch = 'reg' if m[1] == 'bbox' else 'iou'
            new = (f'bbox_head.{branch}_branches.{m[2]}.{2 * int(m[3])}.'
                   f'{m[4]}')
        elif m := re.fullmatch(r'input_proj\.(\d+)\.([01])\.(.+)', key):
            part = 'conv' if m[2] == '0' else 'gn'
            new = f'neck.convs.{m[1]}.{part}.{m[3]}'
        elif m := re.fullmatch(r'tgt_proj\.([01]\..+)', key):
            new = f'query_proj.{m[1]}'
        elif re.fullmatch(r'query_pos_proj\.[01]\..+', key):
            new = key
        elif m := re.fullmatch(
                r'transformer\.(enc_output|enc_output_norm|token_embed)\.'
                r'(.+)', key):
            new = f'token_label_head.{_TOKEN_LABEL_PARTS[m[1]]}.{m[2]}'
            if m[1] == 'token_embed' and class_index is not None:
                token_index = torch.cat(
                    (class_index.new_zeros(1), class_index))
        if new is None:
            unexpected.append(key)
            continue
        if is_class and class_index is not None:
            value = value[class_index.to(value.device)]
        if token_index is not None:
            value = value[token_index.to(value.device)]
        out[new] = value
    if unexpected:
        raise KeyError(
            f'{len(unexpected)} key(s) of the official checkpoint have no '
            f'counterpart in vitdense\'s ViDT: {unexpected}')
    return out


def convert_vidt(checkpoint: dict,
                 class_index: Optional[torch.Tensor] = None
                 ) -> 'OrderedDict[str, torch.Tensor]':
    """A whole official ViDT checkpoint (bare, or in ``{'model': ...}`` /
    ``{'state_dict': ...}``) -> :class:`~vitdense.models.detectors.ViDT`
    state dict, loadable with ``strict=True``: the backbone by
    :func:`convert_vidt_backbone` under ``backbone.``, the rest by
    :func:`convert_vidt_detector` (``class_index`` as there)."""
    state_dict = checkpoint
    for key in ('model', 'state_dict'):
        if isinstance(state_dict, dict) and key in state_dict:
            state_dict = state_dict[key]
    out = convert_vidt_detector(state_dict, class_index)
    backbone = convert_vidt_backbone(state_dict)
    out.update((f'backbone.{k}', v) for k, v in backbone.items())
    return out
