"""Swin Transformer in vitdense: mmdet's model with strict loading.

Paper: "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows" (ICCV 2021, arXiv:2103.14030).
Official code: https://github.com/microsoft/Swin-Transformer (f82860b).

The network is mmdet 3.x's :class:`mmdet.models.backbones.SwinTransformer`
(already any-input-size: it pads inside); vitdense does not re-implement it.
What this file adds:

* ``arch`` variants ``'t'``, ``'s'``, ``'b'``, ``'l'`` (explicit arguments
  still override);
* ``train()``/``eval()`` return the module (mmdet's ``train`` returns None);
* strict pretrained loading: official classification checkpoints
  (``layers.*``), detection checkpoints (``backbone.*``) and mmdet-layout
  files are recognised and converted with mmdet's ``swin_converter``; a load
  that leaves any weight unmatched raises instead of warning (mmdet keeps only
  ``backbone.``-prefixed keys and loads the rest non-strictly, so a wrong
  prefix or ``convert_weights`` silently trains from scratch, mmdet #6960).

It is registered in the vitdense registry as ``SwinTransformer``.  mmdet and
mmseg keep their own class under that name, so configs use
``type='vitdense.SwinTransformer'``, which resolves to this class from the
mmdet, mmseg and vitdense scopes alike.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from mmdet.models.backbones.swin import SwinTransformer as _MMDetSwin
from mmdet.models.backbones.swin import swin_converter
from mmengine.runner.checkpoint import CheckpointLoader

from vitdense.registry import MODELS

__all__ = ['SwinTransformer', 'convert_swin', 'load_swin_state_dict']


@MODELS.register_module(name='SwinTransformer')
class SwinTransformer(_MMDetSwin):
    """mmdet's Swin Transformer with ``arch`` variants and strict loading.

    Args:
        arch (str | dict, optional): ``'t'``, ``'s'``, ``'b'``, ``'l'`` or a
            dict of ``embed_dims``, ``depths``, ``num_heads``; explicit
            keyword arguments override it.
        **kwargs: the arguments of
            :class:`mmdet.models.backbones.SwinTransformer`.
            ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts
            official and mmdet-layout checkpoints (``convert_weights`` is not
            needed) and raises on any mismatch.
    """
    arch_zoo = {
        't': dict(embed_dims=96, depths=(2, 2, 6, 2),
                  num_heads=(3, 6, 12, 24)),
        's': dict(embed_dims=96, depths=(2, 2, 18, 2),
                  num_heads=(3, 6, 12, 24)),
        'b': dict(embed_dims=128, depths=(2, 2, 18, 2),
                  num_heads=(4, 8, 16, 32)),
        'l': dict(embed_dims=192, depths=(2, 2, 18, 2),
                  num_heads=(6, 12, 24, 48)),
    }

    def __init__(self, arch: Optional[Union[str, dict]] = None, **kwargs):
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise KeyError(f'arch {arch!r} not in {set(self.arch_zoo)}')
            arch = self.arch_zoo[arch.lower()]
        kwargs = {**(arch or {}), **kwargs}
        super().__init__(**kwargs)

    def train(self, mode: bool = True) -> 'SwinTransformer':
        super().train(mode)  # mmdet's returns None, breaking model.eval()
        return self

    def init_weights(self) -> None:
        if self.init_cfg is None or self.init_cfg.get('type') != 'Pretrained':
            super().init_weights()
            return
        ckpt = CheckpointLoader.load_checkpoint(
            self.init_cfg['checkpoint'], map_location='cpu')
        load_swin_state_dict(self, convert_swin(ckpt))


def convert_swin(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Any Swin checkpoint -> mmdet-layout backbone state dict (no prefix).

    Accepts official classification checkpoints (``{'model': ...}``, keys
    ``layers.*``; converted with mmdet's ``swin_converter``, which also
    re-orders the PatchMerging weights), official detection/segmentation
    checkpoints and mmdet/mmseg/vitdense files (``backbone.`` prefix), with
    or without a ``module.`` prefix.  Classification-only entries (``head``,
    final ``norm``, ``attn_mask`` buffers) are dropped.
    """
    state_dict = checkpoint
    for key in ('state_dict', 'model'):
        if key in state_dict and isinstance(state_dict[key], dict):
            state_dict = state_dict[key]
    state_dict = OrderedDict(
        (k[7:] if k.startswith('module.') else k, v)
        for k, v in state_dict.items())
    if any(k.startswith('backbone.') for k in state_dict):
        state_dict = OrderedDict((k[9:], v) for k, v in state_dict.items()
                                 if k.startswith('backbone.'))
    if any(k.startswith('layers.') for k in state_dict):  # official layout
        state_dict = OrderedDict(
            (k[9:], v) for k, v in swin_converter(state_dict).items())
    return OrderedDict(
        (k, v) for k, v in state_dict.items()
        if not (k.startswith(('norm.', 'head.')) or k.endswith('attn_mask')))


def load_swin_state_dict(model: _MMDetSwin,
                         state_dict: Dict[str, torch.Tensor]) -> None:
    """Load a :func:`convert_swin` state dict strictly.

    Relative-position tables are bicubic-resized when the window differs (as
    mmdet does).  The only keys allowed to be missing are the per-output norms
    ``norm{i}`` (official classification checkpoints have none); any other
    missing or unexpected key, or a shape mismatch, raises ``RuntimeError``.
    """
    own = model.state_dict()
    state_dict = dict(state_dict)
    for k, v in state_dict.items():
        if 'relative_position_bias_table' in k and k in own \
                and v.shape != own[k].shape and v.shape[1] == own[k].shape[1]:
            s1, s2 = int(v.shape[0]**0.5), int(own[k].shape[0]**0.5)
            v = F.interpolate(
                v.permute(1, 0).reshape(1, -1, s1, s1), size=(s2, s2),
                mode='bicubic')
            state_dict[k] = v.view(-1, s2 * s2).permute(1, 0).contiguous()
        elif k.endswith('relative_position_index') and k in own:
            state_dict[k] = own[k]  # a buffer derived from the window size
    bad = [(k, tuple(v.shape), tuple(own[k].shape))
           for k, v in state_dict.items()
           if k in own and v.shape != own[k].shape]
    if bad:
        raise RuntimeError(f'Swin checkpoint shape mismatch: {bad[:5]}')
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not re.match(r'norm\d+\.', k)]
    if missing or unexpected or not state_dict:
        raise RuntimeError(
            'Swin checkpoint does not match the model: '
            f'{len(missing)} missing (e.g. {missing[:5]}), '
            f'{len(unexpected)} unexpected (e.g. {unexpected[:5]}), '
            f'{len(state_dict)} keys given')

