"""Swin Transformer with the Reconfigured Attention Module (RAM) of ViDT.

Paper: "ViDT: An Efficient and Effective Fully Transformer-based Object
Detector" (ICLR 2022, arXiv:2110.03921) and its extension ViDT+ (arXiv
2204.07962), which uses the same backbone. Official code:
https://github.com/naver-ai/vidt, ``methods/swin_w_ram.py`` (identical on
branch ``main`` 5207d04 and ``vidt-plus`` a8c48b5).

Learnable [DET] tokens ride along with the [PATCH] tokens through every Swin
stage. Each block's attention (RAM, paper Sec. 3.1) is computed with the
block's own QKV and output projections for both kinds of tokens:

* [PATCH] x [PATCH]: Swin's (shifted) window attention with relative
  position bias, unchanged (mmdet's ``ShiftWindowMSA``, reused as is);
  [PATCH] tokens never attend to [DET] tokens, so the patch features are
  those of the plain Swin with the same weights;
* [DET] x [DET]: global self-attention in every stage, the [DET] tokens
  carrying their positional embedding (one learnable ``det_pos_embed`` of
  ``pos_dims`` channels, projected per block by ``det_pos_linear``);
* [DET] x [PATCH]: in the stages of ``cross_indices`` (official default: the
  last) the [DET] queries attend to the keys/values of all un-shifted,
  un-padded [PATCH] tokens plus sine positional encodings, concatenated with
  their own; padded pixels get -100 in the logits.

Patch merging keeps the [DET] tokens at one scale: each is repeated four
times along channels and goes through the same norm + reduction as the
merged patches. The last stage also has a patch merging, to ``reduced_dims``
(256) channels: its output is the fourth map of the official detector.

What differs from the official code: the state dict is mmdet's Swin layout
(``stages.*``, ``w_msa``, ``ffn``, unfold-ordered patch merging; converter:
:mod:`vitdense.converters.vidt`) plus ``det_token``, ``det_pos_embed`` and
``stages.*.blocks.*.det_pos_linear``; the official's unused parameters
(``norm1..3`` and patch merging ``expansion``/``norm2``, marked "not used" /
"not implemented yet" there) are not built; the padding mask is optional;
``frozen_stages`` follows mmdet's Swin.  Any input size, as the official
(padded inside, cropped back).

Forward interface (fixed; the ViDT detector relies on it)::

    maps, det_tokens, det_pos = SwinRAM(...)(x, mask=None)

* ``x``: (B, 3, H, W) images;
* ``mask``: optional (B, H, W) bool, True on padded pixels (the official
  ``NestedTensor.mask``); None: no padding;
* ``maps``: tuple of (B, C_i, ceil(H / s_i), ceil(W / s_i)) for
  ``out_indices``. Level i < 4 (``len(depths)``): stage i's output before its
  patch merging and without any norm, stride s_i = 4 * 2**i, channels
  ``embed_dims * 2**i``; level 4: the last stage's patch merging, stride 64,
  ``reduced_dims`` channels. Default ``out_indices=(1, 2, 3, 4)``: the
  official backbone's four maps (strides 8, 16, 32, 64);
* ``det_tokens``: (B, det_token_num, embed_dims * 8), the [DET] tokens after
  the last stage (before its patch merging); the official returns them as
  (B, C, N);
* ``det_pos``: (B, det_token_num, pos_dims), the learnable [DET] positional
  embedding (official: the same parameter as (1, pos_dims, N)).
"""
import re
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.backbones.swin import SwinTransformer as _MMDetSwin
from mmdet.models.layers import PatchMerging, SinePositionalEncoding
from mmengine.model.weight_init import trunc_normal_
from torch import nn

from vitdense.models.backbones._builder import (keep_own, load_pretrained,
                                                load_state_dict_strictly,
                                                maybe_checkpoint,
                                                resolve_arch)
from vitdense.models.backbones._empty_batch import empty_batch_safe
from vitdense.models.backbones.swin import (SwinTransformer, _SwinBlock,
                                            convert_swin)
from vitdense.models.backbones.swin import \
    checkpoint_filter_fn as swin_filter_fn
from vitdense.registry import MODELS

__all__ = [
    'SwinRAM', 'RAM_ONLY_KEYS', 'convert_swin_ram', 'checkpoint_filter_fn',
    'load_swin_ram_state_dict'
]

#: keys a plain Swin checkpoint lacks: they keep the model's initialisation
#: (``{last}``: the last stage)
RAM_ONLY_KEYS = (r'det_token|det_pos_embed|stages\.\d+\.blocks\.\d+\.'
                 r'det_pos_linear\..*|stages\.{last}\.downsample\..*')
#: parameters of the official RAM model that its forward never uses
_UNUSED = re.compile(r'norm\d+\.|stages\.\d+\.downsample\.(expansion|norm2)\.')


def _heads(t: torch.Tensor, parts: int, num_heads: int) -> torch.Tensor:
    """(B, N, parts * C) -> (parts, B, num_heads, N, C // num_heads)."""
    b, n, c = t.shape
    return t.reshape(b, n, parts, num_heads,
                     c // parts // num_heads).permute(2, 0, 3, 1, 4)


class _RAMBlock(_SwinBlock):
    """A Swin block whose attention also updates the [DET] tokens (RAM).

    Input and output: the [PATCH] tokens of an ``hw_shape`` map followed by
    the [DET] tokens, (B, H*W + N, C). The block's drop path acts on both
    kinds of tokens at once, as the official block (moved out of
    ``attn`` at construction, see :class:`SwinRAM`).
    """
    det_pos_linear: nn.Linear
    drop_path: nn.Module

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                det_pos: torch.Tensor,
                cross: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                ) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, hw_shape, det_pos, cross,
                                enabled=self.with_cp)

    def _forward(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                 det_pos: torch.Tensor,
                 cross: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                 ) -> torch.Tensor:
        n = hw_shape[0] * hw_shape[1]
        y = self.norm1(x)
        patch, det = y[:, :n], y[:, n:]
        out = torch.cat([
            self.attn(patch, hw_shape),  # [PATCH] x [PATCH], windows
            self._det_attention(patch, det + self.det_pos_linear(det_pos),
                                cross)
        ], 1)
        x = x + self.drop_path(out)
        return self.ffn(self.norm2(x), identity=x)

    def _det_attention(
            self, patch: torch.Tensor, det: torch.Tensor,
            cross: Optional[Tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """[DET] x [DET] (``cross`` None) or [DET] x [PATCH, DET] attention
        with the window attention's projections. ``cross``: the [PATCH]
        tokens' sine encoding (B, H*W, C) and the additive padding bias
        (B, 1, 1, H*W + N)."""
        w_msa = self.attn.w_msa
        q, k, v = _heads(w_msa.qkv(det), 3, w_msa.num_heads)
        bias = None
        if cross is not None:
            pos, bias = cross
            _, pk, pv = _heads(w_msa.qkv(patch + pos), 3, w_msa.num_heads)
            k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        attn = (q * w_msa.scale) @ k.transpose(-2, -1)  # (B, nH, N, L)
        if bias is not None:
            attn = attn + bias
        attn = w_msa.attn_drop(w_msa.softmax(attn))
        b, _, n, _ = q.shape
        det = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return w_msa.proj_drop(w_msa.proj(det))


@MODELS.register_module()
class SwinRAM(SwinTransformer):
    """Swin Transformer with [DET] tokens and RAM (ViDT's backbone).

    Args:
        arch (str | dict): ``'n'`` (ViDT's Swin-nano), ``'t'``, ``'s'``,
            ``'b'`` (window 7; with the official drop-path rates) or a dict
            of ``embed_dims``, ``depths``, ``num_heads``; explicit keyword
            arguments override it. Defaults to ``'t'``.
        det_token_num (int): number of [DET] tokens (object queries):
            100 for ViDT, 300 for ViDT+.
        pos_dims (int): channels of the [DET] positional embedding (the
            official ``pos_dim`` = ``reduced_dim``, 256).
        reduced_dims (int): channels of the last stage's patch merging
            (official: 256, hard-coded).
        cross_indices (Sequence[int]): stages with [DET] x [PATCH]
            cross-attention (official default: the last, ``(3,)``).
        out_indices (Sequence[int]): maps to return; see the module
            docstring. Defaults to ``(1, 2, 3, 4)``, the official four.
        **kwargs: the other arguments of vitdense's
            :class:`~vitdense.models.backbones.swin.SwinTransformer`
            (mmdet's), e.g. ``window_size``, ``drop_path_rate``,
            ``with_cp``, ``frozen_stages``, ``init_cfg``. With
            ``init_cfg=dict(type='Pretrained', checkpoint=...)`` an official
            ViDT checkpoint, a converted one, or a plain Swin checkpoint
            (the [DET] parameters and the last patch merging then keep
            their initialisation) is loaded strictly.
    """
    arch_zoo = {
        'n': dict(embed_dims=48, depths=(2, 2, 6, 2),
                  num_heads=(3, 6, 12, 24), drop_path_rate=0.0),
        't': dict(embed_dims=96, depths=(2, 2, 6, 2),
                  num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
        's': dict(embed_dims=96, depths=(2, 2, 18, 2),
                  num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
        'b': dict(embed_dims=128, depths=(2, 2, 18, 2),
                  num_heads=(4, 8, 16, 32), drop_path_rate=0.3),
    }

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 det_token_num: int = 100,
                 pos_dims: int = 256,
                 reduced_dims: int = 256,
                 cross_indices: Sequence[int] = (3, ),
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 **kwargs):
        if 'small_maps' in kwargs:
            raise TypeError("SwinRAM has no small_maps: it always shifts, "
                            "as the official ViDT (Swin's 'det' rule)")
        kwargs = {**resolve_arch(arch, self.arch_zoo, family='SwinRAM'),
                  **kwargs}
        super().__init__(out_indices=(), **kwargs)  # no output norms
        num_stages = len(self.stages)
        if not set(out_indices) <= set(range(num_stages + 1)):
            raise ValueError(f'SwinRAM out_indices must be in '
                             f'0..{num_stages}, got {tuple(out_indices)}')
        if not set(cross_indices) <= set(range(num_stages)):
            raise ValueError(
                f'SwinRAM cross_indices must be in 0..{num_stages - 1}, '
                f'got {tuple(cross_indices)}')
        self.out_indices = tuple(out_indices)
        self.cross_indices = tuple(cross_indices)
        self.det_token_num = det_token_num
        dims = self.num_features
        self.det_token = nn.Parameter(torch.zeros(1, det_token_num, dims[0]))
        self.det_pos_embed = nn.Parameter(
            torch.zeros(1, det_token_num, pos_dims))
        trunc_normal_(self.det_token, std=.02)
        trunc_normal_(self.det_pos_embed, std=.02)
        for stage, dim in zip(self.stages, dims):
            for block in stage.blocks:
                block.__class__ = _RAMBlock
                block.det_pos_linear = nn.Linear(pos_dims, dim)
                block.drop_path, block.attn.drop = block.attn.drop, \
                    nn.Identity()
        norm_cfg = kwargs.get('norm_cfg', dict(type='LN'))
        self.stages[-1].downsample = PatchMerging(
            in_channels=dims[-1], out_channels=reduced_dims, stride=2,
            norm_cfg=norm_cfg if kwargs.get('patch_norm', True) else None)
        # the official sine encoding of [PATCH] tokens for cross-attention
        self.patch_pos = nn.ModuleDict({
            str(i): SinePositionalEncoding(dims[i] // 2, normalize=True)
            for i in self.cross_indices
        })

    def _freeze_stages(self) -> None:
        """mmdet's Swin rule: ``frozen_stages = k >= 0`` freezes the patch
        embedding and stages 0..k-1 (the [DET] parameters stay trainable)."""
        if self.frozen_stages < 0:
            return
        parts = [self.patch_embed, *self.stages[:self.frozen_stages]]
        for m in parts:
            m.eval()
            m.requires_grad_(False)
        if self.use_abs_pos_embed:
            self.absolute_pos_embed.requires_grad = False

    def init_weights(self) -> None:
        if not load_pretrained(self, checkpoint_filter_fn):
            _MMDetSwin.init_weights(self)  # Linear/LayerNorm init, as Swin

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None
    ) -> Tuple[Tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
        """See the module docstring for the exact interface."""
        if mask is not None and mask.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f'SwinRAM: mask must be (B, H, W) = '
                f'{(x.shape[0], *x.shape[2:])} for images of shape '
                f'{tuple(x.shape)}, got {tuple(mask.shape)}')
        *maps, det, det_pos = self._forward(
            x, None if x.shape[0] == 0 else mask)
        return tuple(maps), det, det_pos

    @empty_batch_safe
    def _forward(self, x: torch.Tensor,
                 mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """The maps, [DET] tokens and their embedding, as one flat tuple."""
        b = x.shape[0]
        if mask is None:
            mask = x.new_zeros((b, *x.shape[2:]), dtype=torch.bool)
        x, hw = self.patch_embed(x)  # (B, h*w, C)
        if self.use_abs_pos_embed:
            x = x + self.absolute_pos_embed
        x = self.drop_after_pos(x)
        if self.cross_indices:
            # official: the mask at 1 / 2**(stages - len(cross_indices)) of
            # the patch grid, resized again to each cross stage (nearest)
            div = 2**(len(self.stages) - len(self.cross_indices))
            mask = F.interpolate(
                mask[None].float(),
                size=(max(hw[0] // div, 1), max(hw[1] // div, 1)))[0]
        det_pos = self.det_pos_embed
        x = torch.cat([x, self.det_token.expand(b, -1, -1)], 1)
        maps = []
        for i, stage in enumerate(self.stages):
            cross = self._cross_inputs(i, mask, hw, x.dtype) \
                if i in self.cross_indices else None
            for block in stage.blocks:
                x = block(x, hw, det_pos, cross)
            n = hw[0] * hw[1]
            patch, det = x[:, :n], x[:, n:]
            if i in self.out_indices:
                maps.append(self._to_map(patch, hw))
            if i < len(self.stages) - 1:
                patch, hw = stage.downsample(patch, hw)
                x = torch.cat([patch, self._merge_det(stage.downsample, det)],
                              1)
            elif len(self.stages) in self.out_indices:
                patch, hw = stage.downsample(patch, hw)
                maps.append(self._to_map(patch, hw))
        return (*maps, det, det_pos.expand(b, -1, -1))

    def _cross_inputs(self, stage: int, mask: torch.Tensor,
                      hw: Tuple[int, int],
                      dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """The [PATCH] sine encoding (B, H*W, C) and the padding bias
        (B, 1, 1, H*W + N) of a cross-attention stage (official values:
        -100 on padded tokens, 0 elsewhere and on [DET] tokens)."""
        if tuple(mask.shape[-2:]) != tuple(hw):
            mask = F.interpolate(mask[None], size=hw)[0]
        mask = mask.bool()
        pos = self.patch_pos[str(stage)](mask).flatten(2).transpose(1, 2)
        bias = F.pad(mask.flatten(1).to(dtype) * -100.,
                     (0, self.det_token_num))
        return pos.to(dtype), bias[:, None, None]

    @staticmethod
    def _merge_det(merging: PatchMerging, det: torch.Tensor) -> torch.Tensor:
        """[DET] tokens through a patch merging at fixed scale: each token
        stands for all four merged positions (official: ``repeat(1, 1, 4)``
        in its channel order; mmcv's unfold order interleaves)."""
        det = det.repeat_interleave(4, dim=-1)
        if merging.norm is not None:
            det = merging.norm(det)
        return merging.reduction(det)

    @staticmethod
    def _to_map(tokens: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        b, _, c = tokens.shape
        return tokens.reshape(b, *hw, c).permute(0, 3, 1, 2).contiguous()


def convert_swin_ram(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Any ViDT/Swin checkpoint -> :class:`SwinRAM` keys (no prefix).

    Swin's mapping (:func:`~vitdense.models.backbones.swin.convert_swin`:
    official ``layers.*`` -> mmdet layout with the patch-merging re-order;
    detector checkpoints keep their ``backbone.`` part), minus the official
    RAM model's unused parameters (output norms ``norm{i}``, patch merging
    ``expansion``/``norm2``). ``det_token``, ``det_pos_embed`` and
    ``det_pos_linear`` keep their names.
    """
    return {
        k: v
        for k, v in convert_swin(checkpoint).items() if not _UNUSED.match(k)
    }


def checkpoint_filter_fn(checkpoint: dict,
                         model: SwinRAM) -> Dict[str, torch.Tensor]:
    """Any ViDT/Swin checkpoint -> ``model``'s state dict, for a strict load.

    :func:`convert_swin_ram`, then Swin's table resizing
    (:func:`vitdense.models.backbones.swin.checkpoint_filter_fn`); a
    checkpoint without [DET] tokens (a plain Swin) keeps the model's own
    [DET] parameters and last patch merging (:data:`RAM_ONLY_KEYS`); every
    other key must match.
    """
    state_dict = swin_filter_fn(convert_swin_ram(checkpoint), model)
    if 'det_token' in state_dict:
        return state_dict
    ram_only = RAM_ONLY_KEYS.format(last=len(model.stages) - 1)
    return keep_own(state_dict, model, lambda k: re.fullmatch(ram_only, k))


def load_swin_ram_state_dict(model: SwinRAM, checkpoint: dict) -> None:
    """Load any ViDT/Swin checkpoint through :func:`checkpoint_filter_fn`,
    strictly.

    Raises:
        RuntimeError: on any missing, unexpected or mis-shaped key, naming
            the keys.
    """
    load_state_dict_strictly(model, checkpoint_filter_fn(checkpoint, model),
                             source='ViDT/Swin checkpoint')
