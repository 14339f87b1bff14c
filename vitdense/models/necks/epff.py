"""ViDT+'s efficient pyramid feature fusion (EPFF).

"An Extendable, Efficient and Effective Transformer-based Object Detector"
(Song et al., arXiv:2204.07962, Sec. 3.1); official code
https://github.com/naver-ai/vidt (``methods/vidt/fpn_fusion.py``
``FPNFusionModule``, identical on branch ``main`` 5207d04, where it is the
``cross_scale_fusion`` option, and ``vidt-plus`` a8c48b5, where it is
``--epff``). It replaces ViDT's per-level input projection (the
``ChannelMapper`` neck): each [PATCH] map is reduced by a 1x1 conv + GN, then
a top-down path (DPT-style fusion blocks of residual bottleneck units) fuses
the coarsest map into each finer one. Written here as an mmdet neck; the
official block's unused parts (batch-norm variant, ``groups``, the coarsest
block's smoothing conv and lateral unit, which its forward never calls) are
not built.
"""
from typing import List, Sequence

import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from vitdense.registry import MODELS

__all__ = ['EPFF']


class _ResidualUnit(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(conv1x1(relu(x)))))), through a
    ``hidden``-channel bottleneck (official ``ResidualConvUnit``: 64)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return x + self.conv3(F.relu(out))


class _FusionBlock(nn.Module):
    """Official ``FeatureFusionBlock``: the coarser fused map, upsampled
    (bilinear, ``align_corners=True``) to the lateral map's size and
    smoothed by a 1x1 conv, plus a residual unit of the lateral map, then
    another residual unit. The coarsest block only has the last unit."""

    def __init__(self, channels: int, hidden: int, top: bool) -> None:
        super().__init__()
        if not top:
            self.smooth = nn.Conv2d(channels, channels, 1)
            self.lateral = _ResidualUnit(channels, hidden)
        self.out = _ResidualUnit(channels, hidden)

    def forward(self, lateral: Tensor, coarser: Tensor = None) -> Tensor:
        if coarser is None:
            return self.out(lateral)
        up = F.interpolate(
            coarser,
            size=lateral.shape[-2:],
            mode='bilinear',
            align_corners=True)
        return self.out(self.smooth(up) + self.lateral(lateral))


@MODELS.register_module()
class EPFF(BaseModule):
    """EPFF neck: maps of ``in_channels`` (fine to coarse) -> the fused maps
    of ``out_channels``, **coarse to fine** (the official output order,
    which the decoder's per-level weights depend on).

    Args:
        in_channels (Sequence[int]): channels of the input maps, finest
            first.
        out_channels (int): fused width (the decoder width). Default: 256.
        hidden_channels (int): bottleneck width of the residual units
            (official: 64). Default: 64.
        num_groups (int): GroupNorm groups after each reduction. Default: 32.
        init_cfg (dict, optional): mmengine initialisation; by default the
            official one (:meth:`init_weights`).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int = 256,
                 hidden_channels: int = 64,
                 num_groups: int = 32,
                 init_cfg: dict = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        last = len(self.in_channels) - 1
        self.reduce = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, out_channels, 1),
                nn.GroupNorm(num_groups, out_channels))
            for c in self.in_channels)
        self.fuse = nn.ModuleList(
            _FusionBlock(out_channels, hidden_channels, top=i == last)
            for i in range(len(self.in_channels)))

    def init_weights(self) -> None:
        """Official: Xavier weights and zero biases for the reductions,
        PyTorch's defaults elsewhere."""
        super().init_weights()
        if self.init_cfg is None:
            for reduce in self.reduce:
                nn.init.xavier_uniform_(reduce[0].weight)
                nn.init.zeros_(reduce[0].bias)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        if len(feats) != len(self.in_channels):
            raise ValueError(f'EPFF expects {len(self.in_channels)} maps '
                             f'(in_channels), got {len(feats)}')
        laterals = [reduce(x) for reduce, x in zip(self.reduce, feats)]
        outs, path = [], None
        for i in reversed(range(len(laterals))):
            path = self.fuse[i](laterals[i], path)
            outs.append(path)
        return outs
