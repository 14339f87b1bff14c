"""Swin Transformer in vitdense: mmdet's model with strict loading.

Paper: "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows" (ICCV 2021, arXiv:2103.14030).
Official code: https://github.com/microsoft/Swin-Transformer (f82860b).

The network is mmdet 3.x's :class:`mmdet.models.backbones.SwinTransformer`
(already any-input-size: it pads inside); vitdense does not re-implement it.
What this file adds:

* ``arch`` variants ``'t'``, ``'s'``, ``'b'``, ``'l'`` (explicit arguments
  still override);
* ``small_maps``: how a stage whose map fits in one window attends. ``'det'``
  (default): the shifted blocks shift anyway, as the official detection and
  segmentation code (Swin-Transformer-Object-Detection c7b2011,
  -Semantic-Segmentation 87e6f90) and mmdet do; the ``configs/swin`` configs
  follow that code. ``'cls'``: the official classification model's rule (no
  shift and one window of the map's size when ``min(H, W) <= window_size``,
  e.g. stage 4 of a 224x224 input with window 7);
* the shift mask in the activations' dtype (mmdet builds it in fp32, so a
  model in pure bf16 fails);
* ``train()``/``eval()`` return the module (mmdet's ``train`` returns None);
* ``with_cp`` checkpoints every block whenever autograd records (mmdet's gate
  on the input's ``requires_grad`` skips the first block behind frozen
  stages);
* a batch of 0 images gives empty maps (mmdet's reshapes fail on it);
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
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.backbones.swin import ShiftWindowMSA, SwinBlock, WindowMSA
from mmdet.models.backbones.swin import SwinTransformer as _MMDetSwin
from mmdet.models.backbones.swin import swin_converter

from vitdense.models.backbones._builder import (keep_own,
                                                load_pretrained,
                                                load_state_dict_strictly,
                                                maybe_checkpoint,
                                                resolve_arch,
                                                unwrap_checkpoint)
from vitdense.models.backbones._empty_batch import empty_batch_safe
from vitdense.registry import MODELS

__all__ = [
    'SwinTransformer', 'convert_swin', 'checkpoint_filter_fn',
    'load_swin_state_dict'
]


class _WindowMSA(WindowMSA):
    """mmdet's window attention, plus windows smaller than the table's."""

    def forward(self, x: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if mask is not None:  # mmdet's is fp32: bf16 fails at ``attn @ v``
            mask = mask.to(x.dtype)
        return super().forward(x, mask)

    def forward_window(self, x: torch.Tensor, ws: int) -> torch.Tensor:
        """Unshifted attention in ``ws x ws`` windows, ``ws`` up to the
        table's window: offset ``(dy, dx)`` reads the same table entry as in a
        full window. ``x``: (B * nW, ws * ws, C)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads,
                                      c // self.num_heads).permute(
                                          2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*nW, nH, N, N)
        wh, ww = self.window_size
        coords = torch.stack(torch.meshgrid(
            torch.arange(ws, device=x.device),
            torch.arange(ws, device=x.device), indexing='ij')).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
        index = (rel[0] + wh - 1) * (2 * ww - 1) + rel[1] + ww - 1
        bias = self.relative_position_bias_table[index]  # (N, N, nH)
        attn = self.attn_drop(self.softmax(attn + bias.permute(2, 0, 1)))
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


class _ShiftWindowMSA(ShiftWindowMSA):
    """mmdet's (shifted) window attention; with ``small_maps='cls'`` a map
    no larger than the window (``min(H, W) <= window_size``) gets the official
    classification rule: no shift, windows of ``min(H, W)``.

    The official classification model fixes this per block at construction
    from its input resolution; here it is decided per forward from the actual
    map, so one model serves every input size.
    """
    small_maps = 'det'

    def forward(self, query: torch.Tensor,
                hw_shape: Tuple[int, int]) -> torch.Tensor:
        h, w = hw_shape
        if self.small_maps == 'det' or min(h, w) > self.window_size:
            return super().forward(query, hw_shape)
        b, _, c = query.shape
        ws = min(h, w)
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(query.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        x = x.view(b, hp // ws, ws, wp // ws, ws, c).transpose(2, 3)
        x = self.w_msa.forward_window(x.reshape(-1, ws * ws, c), ws)
        x = x.view(b, hp // ws, wp // ws, ws, ws, c).transpose(2, 3)
        x = x.reshape(b, hp, wp, c)[:, :h, :w].reshape(b, h * w, c)
        return self.drop(x)


class _SwinBlock(SwinBlock):
    """mmdet's block, checkpointed (``with_cp``) through
    :func:`~vitdense.models.backbones._builder.maybe_checkpoint`: mmdet's
    gate on ``x.requires_grad`` turns checkpointing off for the first block
    behind frozen stages, whose input needs no gradient."""

    def forward(self, x: torch.Tensor,
                hw_shape: Tuple[int, int]) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, hw_shape,
                                enabled=self.with_cp)

    def _forward(self, x: torch.Tensor,
                 hw_shape: Tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hw_shape)
        return self.ffn(self.norm2(x), identity=x)


@MODELS.register_module(name='SwinTransformer')
class SwinTransformer(_MMDetSwin):
    """mmdet's Swin Transformer with ``arch`` variants and strict loading.

    Args:
        arch (str | dict, optional): ``'t'``, ``'s'``, ``'b'``, ``'l'`` or a
            dict of ``embed_dims``, ``depths``, ``num_heads``; explicit
            keyword arguments override it.
        small_maps (str): ``'det'`` (default): shifted blocks always shift,
            as the official detection/segmentation code and mmdet.
            ``'cls'``: the official classification model's rule: a stage
            whose map has ``min(H, W) <= window_size`` uses no shift and
            windows of ``min(H, W)`` (decided per forward from the map).
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

    def __init__(self, arch: Optional[Union[str, dict]] = None,
                 small_maps: str = 'det', **kwargs):
        arch = resolve_arch(arch, self.arch_zoo, family='Swin')
        if small_maps not in ('det', 'cls'):
            raise ValueError(
                f"small_maps must be 'det' or 'cls', got {small_maps!r}")
        kwargs = {**arch, **kwargs}
        super().__init__(**kwargs)
        for m in self.modules():  # the forwards above, same parameters
            if type(m) is ShiftWindowMSA:
                m.__class__ = _ShiftWindowMSA
                m.small_maps = small_maps
            elif type(m) is WindowMSA:
                m.__class__ = _WindowMSA
            elif type(m) is SwinBlock:
                m.__class__ = _SwinBlock

    def train(self, mode: bool = True) -> 'SwinTransformer':
        super().train(mode)  # mmdet's returns None, breaking model.eval()
        return self

    forward = empty_batch_safe(_MMDetSwin.forward)

    def init_weights(self) -> None:
        if not load_pretrained(self, checkpoint_filter_fn):
            super().init_weights()


def convert_swin(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Any Swin checkpoint -> mmdet-layout backbone state dict (no prefix).

    Accepts official classification checkpoints (``{'model': ...}``, keys
    ``layers.*``; converted with mmdet's ``swin_converter``, which also
    re-orders the PatchMerging weights), official detection/segmentation
    checkpoints and mmdet/mmseg/vitdense files (``backbone.`` prefix), with
    or without a ``module.`` prefix.  Classification-only entries (``head``,
    final ``norm``, ``attn_mask`` buffers) are dropped.
    """
    state_dict = OrderedDict(unwrap_checkpoint(checkpoint))
    if any(k.startswith('layers.') for k in state_dict):  # official layout
        state_dict = OrderedDict(
            (k[9:], v) for k, v in swin_converter(state_dict).items())
    return OrderedDict(
        (k, v) for k, v in state_dict.items()
        if not (k.startswith(('norm.', 'head.')) or k.endswith('attn_mask')))


def checkpoint_filter_fn(checkpoint: Mapping,
                         model: _MMDetSwin) -> Dict[str, torch.Tensor]:
    """Any Swin checkpoint (see :func:`convert_swin`) -> ``model``'s state
    dict, for a strict load.

    Relative-position tables are bicubic-resized when the window differs
    (as mmdet does) and the ``relative_position_index`` buffers, derived
    from the window size, are the model's. The per-output norms ``norm{i}``
    that a checkpoint lacks (official classification checkpoints have none)
    keep the model's own values; every other key must match.
    """
    own = model.state_dict()
    state_dict = dict(convert_swin(checkpoint))
    for k, v in state_dict.items():
        if 'relative_position_bias_table' in k and k in own \
                and v.shape != own[k].shape and v.shape[1] == own[k].shape[1]:
            s1, s2 = int(v.shape[0]**0.5), int(own[k].shape[0]**0.5)
            v = F.interpolate(
                v.permute(1, 0).reshape(1, -1, s1, s1), size=(s2, s2),
                mode='bicubic')
            state_dict[k] = v.view(-1, s2 * s2).permute(1, 0).contiguous()
        elif k.endswith('relative_position_index') and k in own:
            state_dict[k] = own[k]
    return keep_own(state_dict, model, lambda k: re.match(r'norm\d+\.', k))


def load_swin_state_dict(model: _MMDetSwin,
                         state_dict: Dict[str, torch.Tensor]) -> None:
    """Load a :func:`convert_swin` state dict (or any Swin checkpoint)
    through :func:`checkpoint_filter_fn`, strictly.

    Raises:
        RuntimeError: on any missing (but ``norm{i}``) or unexpected key or
            shape mismatch, naming the keys.
    """
    load_state_dict_strictly(model, checkpoint_filter_fn(state_dict, model),
                             source='Swin checkpoint')
