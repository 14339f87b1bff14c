"""ViT-CoMer: a plain ViT with a convolutional multi-scale branch.

Paper: "ViT-CoMer: Vision Transformer with Convolutional Multi-scale Feature
Interaction for Dense Predictions" (CVPR 2024, arXiv:2403.07392).
Official code: https://github.com/Traffic-X/ViT-CoMer (b57f386), built on
https://github.com/czczup/ViT-Adapter.

A plain ViT runs next to a small CNN pyramid (``spm``, strides 4-32).  Before
each of the four groups of ViT blocks the pyramid is refined by multi-receptive
-field depth-wise convolutions (MRFP) and injected into the ViT tokens through
multi-scale deformable attention (CTI-to-ViT); after the group the ViT tokens
flow back into the pyramid (CTI-to-CNN).  Four pyramid levels of width C are
returned.

The official repository ships two diverging copies of this model; both are
selected here by ``flavour`` and both families of official checkpoints load
strictly (:mod:`vitdense.converters.vit_comer`):

* ``'detection'``: MRFP hidden width 0.5*C; the ViT tokens of the last
  interaction are added to all four outputs.
* ``'segmentation'``: MRFP hidden width ``mrfp_ratio``*C (per-variant, from the
  official ADE20K configs); the ViT tokens of interaction i are added to
  output i.

What differs from the official code, and why:

* any input size: the image is zero-padded to a multiple of 32 inside and the
  outputs are cropped back to ceil(H/s) x ceil(W/s) (official: multiples of 32
  only, issue #17);
* runs on CPU and GPU: multi-scale deformable attention comes from
  :mod:`vitdense.ops` (official: a CUDA-only extension), and SyncBN becomes BN
  when CUDA is unavailable;
* ``with_cp`` also checkpoints the interaction modules (official: ViT blocks
  only); modules that the official code builds but never uses (MRFP without
  CTI-to-ViT, CTI-to-CNN norms without CNN feature interaction) are not built;
* ``out_indices``, ``frozen_stages`` and ``norm_eval`` as the other vitdense
  backbones (official: always 4 maps, nothing frozen);
* ``vitdense.converters.vit_comer.convert_vit_to_vit_comer`` initialises the
  ViT part from timm ViT/DeiT, DINOv2 and BEiT checkpoints with
  position-embedding interpolation (official: no resizing, DINOv2 14->16
  weights download-only, BEiT variant missing).
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from vitdense.models.backbones._builder import (FrozenStagesMixin,
                                                load_pretrained,
                                                maybe_checkpoint,
                                                resolve_arch)
from vitdense.models.backbones._empty_batch import empty_batch_safe
from vitdense.models.layers.mlp import Mlp
from vitdense.ops import MultiScaleDeformableAttention
from vitdense.registry import MODELS

__all__ = ['ViTCoMer']

# Token layout of the CNN pyramid used by the interactions:
# [(2H, 2W) | (H, W) | (H/2, W/2)] at strides 8/16/32, H x W = ViT grid.
Shapes = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]
DeformInputs = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Shapes]


def _split_levels(x: torch.Tensor, shapes: Shapes) -> List[torch.Tensor]:
    """Split (B, N, C) pyramid tokens into per-level (B, N_l, C) tensors."""
    return list(x.split([h * w for h, w in shapes], dim=1))


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


def _to_map(x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(B, h*w, C) -> (B, C, h, w)."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, *hw)


def _deform_attn(dims: int, num_heads: int, num_points: int,
                 value_ratio: float) -> MultiScaleDeformableAttention:
    """The official ``MSDeformAttn`` over the 3 pyramid levels: vitdense's
    module with its parameter names, no residual and no dropout."""
    return MultiScaleDeformableAttention(
        embed_dims=dims,
        num_heads=num_heads,
        num_levels=3,
        num_points=num_points,
        batch_first=True,
        value_proj_ratio=value_ratio,
        add_identity=False)


class DWConv(nn.Module):
    """3x3 depth-wise conv applied per pyramid level."""

    def __init__(self, dims: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dims, dims, 3, 1, 1, groups=dims)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        return torch.cat([
            self.dwconv(_to_map(t, hw)).flatten(2).transpose(1, 2)
            for t, hw in zip(_split_levels(x, shapes), shapes)
        ], 1)


class MultiDWConv(nn.Module):
    """Multi-receptive-field depth-wise convs: half the channels 3x3, half
    5x5, separate weights per level, then BN + GELU."""

    def __init__(self, dims: int):
        super().__init__()
        half = dims // 2
        for i in range(3):
            setattr(self, f'dwconv{2 * i + 1}',
                    nn.Conv2d(half, half, 3, 1, 1, groups=half))
            setattr(self, f'dwconv{2 * i + 2}',
                    nn.Conv2d(half, half, 5, 1, 2, groups=half))
            setattr(self, f'bn{i + 1}', nn.BatchNorm2d(dims))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        outs = []
        for i, (t, hw) in enumerate(zip(_split_levels(x, shapes), shapes)):
            t = _to_map(t, hw)
            a, b = t.split([t.shape[1] // 2, t.shape[1] - t.shape[1] // 2], 1)
            a = getattr(self, f'dwconv{2 * i + 1}')(a)
            b = getattr(self, f'dwconv{2 * i + 2}')(b)
            t = self.act(getattr(self, f'bn{i + 1}')(torch.cat([a, b], 1)))
            outs.append(t.flatten(2).transpose(1, 2))
        return torch.cat(outs, 1)


class ConvFFN(nn.Module):
    """fc1 -> depth-wise conv -> GELU -> fc2 over the pyramid tokens."""

    def __init__(self, dims: int, hidden_dims: int, multi_scale: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.dwconv = (
            MultiDWConv(hidden_dims) if multi_scale else DWConv(hidden_dims))
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), shapes)))


class DeformSelfAttention(nn.Module):
    """Pyramid self-attention over 3 levels + ConvFFN (official
    ``MultiscaleExtractor``, key ``cfinter``)."""

    def __init__(self, dims: int, num_heads: int, num_points: int,
                 value_ratio: float, ffn_ratio: float, drop_path: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(dims, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dims, eps=1e-6)
        self.attn = _deform_attn(dims, num_heads, num_points, value_ratio)
        self.ffn = ConvFFN(dims, int(dims * ffn_ratio))
        self.ffn_norm = nn.LayerNorm(dims, eps=1e-6)
        self.drop_path = _drop_path(drop_path)

    def forward(self, query: torch.Tensor, feat: torch.Tensor,
                deform: DeformInputs) -> torch.Tensor:
        ref, spatial_shapes, start_index, shapes = deform
        query = query + self.attn(
            self.query_norm(query),
            value=self.feat_norm(feat),
            reference_points=ref,
            spatial_shapes=spatial_shapes,
            level_start_index=start_index)
        return query + self.drop_path(
            self.ffn(self.ffn_norm(query), shapes))


class CTIToV(nn.Module):
    """CNN -> ViT: deformable self-attention over the pyramid, resampled to
    the ViT grid and added to the ViT tokens with a learnable scale."""

    def __init__(self, dims: int, num_heads: int, num_points: int,
                 value_ratio: float, ffn_ratio: float, drop_path: float,
                 init_values: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(dims, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dims, eps=1e-6)
        self.attn = _deform_attn(dims, num_heads, num_points, value_ratio)
        self.gamma = nn.Parameter(init_values * torch.ones(dims))
        self.ffn = ConvFFN(dims, int(dims * ffn_ratio))
        self.ffn_norm = nn.LayerNorm(dims, eps=1e-6)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                deform: DeformInputs) -> torch.Tensor:
        ref, spatial_shapes, start_index, shapes = deform
        c = self.attn(
            self.query_norm(c),
            value=self.feat_norm(c),
            reference_points=ref,
            spatial_shapes=spatial_shapes,
            level_start_index=start_index)
        c = c + self.drop_path(self.ffn(self.ffn_norm(c), shapes))
        c8, c16, c32 = _split_levels(c, shapes)
        hw = shapes[1]
        c8 = F.interpolate(
            _to_map(c8, shapes[0]), size=hw, mode='bilinear',
            align_corners=False).flatten(2).transpose(1, 2)
        c32 = F.interpolate(
            _to_map(c32, shapes[2]), size=hw, mode='bilinear',
            align_corners=False).flatten(2).transpose(1, 2)
        return x + self.gamma * (c8 + c16 + c32)


class CTIToC(nn.Module):
    """ViT -> CNN: the ViT tokens are added to the stride-16 level, then
    (optionally) ConvFFN and pyramid self-attention.

    ``with_ffn=True`` is the official ``Extractor_CTI`` (the extra CTIs of the
    last interaction); ``False`` is the official ``CTI_toC``.
    """

    def __init__(self, dims: int, num_heads: int, num_points: int,
                 value_ratio: float, ffn_ratio: float, drop_path: float,
                 cnn_feature_interaction: bool, with_ffn: bool):
        super().__init__()
        if with_ffn:
            self.ffn = ConvFFN(dims, int(dims * ffn_ratio))
            self.ffn_norm = nn.LayerNorm(dims, eps=1e-6)
            self.drop_path = _drop_path(drop_path)
        if cnn_feature_interaction:
            self.query_norm = nn.LayerNorm(dims, eps=1e-6)
            self.feat_norm = nn.LayerNorm(dims, eps=1e-6)
            self.cfinter = DeformSelfAttention(dims, num_heads, num_points,
                                               value_ratio, ffn_ratio,
                                               drop_path)
        self.with_ffn = with_ffn
        self.cnn_feature_interaction = cnn_feature_interaction

    def forward(self, c: torch.Tensor, x: torch.Tensor,
                deform: DeformInputs) -> torch.Tensor:
        shapes = deform[3]
        c8, c16, c32 = _split_levels(c, shapes)
        c = torch.cat([c8, c16 + x, c32], 1)
        if self.with_ffn:
            c = c + self.drop_path(self.ffn(self.ffn_norm(c), shapes))
        if self.cnn_feature_interaction:
            # as official: both query and residual come from the normed tokens
            c = self.cfinter(self.query_norm(c), self.feat_norm(c), deform)
        return c


class CTIBlock(nn.Module):
    """One interaction: MRFP + CTI-to-ViT, a group of ViT blocks, CTI-to-CNN
    and, in the last interaction, ``num_extra`` extra CTIs."""

    def __init__(self, dims: int, num_heads: int, num_points: int,
                 value_ratio: float, ffn_ratio: float, drop_path: float,
                 init_values: float, mrfp_ratio: float, use_cti_tov: bool,
                 use_cti_toc: bool, cnn_feature_interaction: bool,
                 num_extra: int, with_cp: bool):
        super().__init__()
        args = (dims, num_heads, num_points, value_ratio, ffn_ratio,
                drop_path)
        if use_cti_tov:
            self.mrfp = ConvFFN(dims, int(dims * mrfp_ratio), multi_scale=True)
            self.cti_tov = CTIToV(*args, init_values)
        if use_cti_toc:
            self.cti_toc = CTIToC(*args, cnn_feature_interaction, False)
        self.extra_CTIs = nn.ModuleList([
            CTIToC(*args, cnn_feature_interaction, True)
            for _ in range(num_extra)
        ])
        self.use_cti_tov = use_cti_tov
        self.use_cti_toc = use_cti_toc
        self.with_cp = with_cp

    def _run(self, module: nn.Module, *args):
        return maybe_checkpoint(module, *args, enabled=self.with_cp)

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                blocks: Sequence[nn.Module],
                deform: DeformInputs) -> Tuple[torch.Tensor, torch.Tensor]:
        # x (B, H*W, C) ViT tokens; c (B, 21/4*H*W, C) pyramid tokens
        shapes = deform[3]
        if self.use_cti_tov:
            c = self._run(self.mrfp, c, shapes)
            c8, c16, c32 = _split_levels(c, shapes)
            c = torch.cat([c8, c16 + x, c32], 1)
            x = self._run(self.cti_tov, x, c, deform)
        for blk in blocks:
            x = blk(x, shapes[1])
        if self.use_cti_toc:
            c = self._run(self.cti_toc, c, x, deform)
        for cti in self.extra_CTIs:
            c = self._run(cti, c, x, deform)
        return x, c


class SpatialPriorModule(nn.Module):
    """ResNet-like stem giving C-wide features at strides 4, 8, 16, 32
    (without ``with_c1``: no stride-4 projection ``fc1``, None instead)."""

    def __init__(self, inplanes: int, dims: int, norm_cfg: dict,
                 with_c1: bool = True):
        super().__init__()

        def conv_bn(cin, cout, stride):
            return [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                build_norm_layer(norm_cfg, cout)[1],
                nn.ReLU(inplace=True)
            ]

        self.stem = nn.Sequential(*conv_bn(3, inplanes, 2),
                                  *conv_bn(inplanes, inplanes, 1),
                                  *conv_bn(inplanes, inplanes, 1),
                                  nn.MaxPool2d(3, 2, 1))
        self.conv2 = nn.Sequential(*conv_bn(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*conv_bn(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*conv_bn(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, dims, 1) if with_c1 else None
        self.fc2 = nn.Conv2d(2 * inplanes, dims, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, dims, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, dims, 1)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return [
            None if self.fc1 is None else self.fc1(c1),
            self.fc2(c2),
            self.fc3(c3),
            self.fc4(c4)
        ]


class Attention(nn.Module):
    """ViT self-attention, global or in non-overlapping windows.

    Windowed attention follows the official ``WindowedAttention``: the qkv
    projections are zero-padded to a multiple of the window and the padded
    positions take part in the softmax (needed for checkpoint parity).
    """

    def __init__(self, dims: int, num_heads: int, qkv_bias: bool,
                 window_size: Optional[int]):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dims, dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x)  # (B, N, 3C)
        if self.window_size:
            H, W = hw
            ws = self.window_size
            Hp, Wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws
            qkv = F.pad(qkv.view(B, H, W, 3 * C),
                        (0, 0, 0, Wp - W, 0, Hp - H))
            qkv = qkv.view(B, Hp // ws, ws, Wp // ws, ws, 3 * C).permute(
                0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, 3 * C)
        L = qkv.shape[1]
        q, k, v = qkv.view(-1, L, 3, self.num_heads,
                           C // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B', heads, L, d)
        out = out.transpose(1, 2).reshape(-1, L, C)
        if self.window_size:
            out = out.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(
                0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
            out = out[:, :H, :W].reshape(B, N, C)
        return self.proj(out)


class ViTBlock(nn.Module):
    """Pre-norm ViT block with optional layer scale (``gamma1/gamma2``)."""

    def __init__(self, dims: int, num_heads: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float, window_size: Optional[int],
                 layer_scale: bool, with_cp: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        self.attn = Attention(dims, num_heads, qkv_bias, window_size)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))
        if layer_scale:
            self.gamma1 = nn.Parameter(torch.ones(dims))
            self.gamma2 = nn.Parameter(torch.ones(dims))
        self.layer_scale = layer_scale
        self.drop_path = _drop_path(drop_path)
        self.with_cp = with_cp

    def _forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        a = self.attn(self.norm1(x), hw)
        x = x + self.drop_path(self.gamma1 * a if self.layer_scale else a)
        m = self.mlp(self.norm2(x))
        return x + self.drop_path(self.gamma2 * m if self.layer_scale else m)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, hw, enabled=self.with_cp)


class PatchEmbed(nn.Module):

    def __init__(self, dims: int, patch_size: int = 16):
        super().__init__()
        self.proj = nn.Conv2d(3, dims, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@MODELS.register_module()
class ViTCoMer(FrozenStagesMixin, BaseModule):
    """ViT-CoMer backbone; returns maps of width C at strides 4, 8, 16, 32
    (those of ``out_indices``).

    Args:
        arch (str | dict): ``'t'``, ``'s'``, ``'b'``, ``'l'`` or a dict with
            the keys of :attr:`arch_zoo`. Defaults to ``'s'``.
        flavour (str): ``'detection'`` or ``'segmentation'``, the official
            copy whose behaviour and checkpoints to follow (see module doc).
        pretrain_size (int): image size of the ViT pre-training; fixes the
            position-embedding grid (``pretrain_size // 16``). The official
            DINOv2 detection configs use 592.
        window_attn (bool | list[bool]): window attention per ViT block. The
            official DINOv2 configs use ``[True, True, False] * 4``.
        window_size (int | list[int]): window size(s), 14 in the configs.
        drop_path_rate (float): stochastic depth; ViT blocks get a linear
            ramp, interaction modules the full rate (as official).
        mrfp_ratio (float, optional): MRFP hidden width / C. Defaults to 0.5
            for ``'detection'`` and the variant's ``seg_mrfp_ratio`` for
            ``'segmentation'``.
        use_cti_tov / use_cti_toc / cnn_feature_interaction (bool | list):
            per-interaction switches, all on in every official config.
        num_extra_cti (int): extra CTIs in the last interaction (4).
        init_values (float): initial CTI-to-ViT scale (0 as official).
        norm_cfg (dict): norm of the CNN branch and of the outputs;
            ``SyncBN`` falls back to ``BN`` when CUDA is unavailable.
        out_indices (Sequence[int]): levels to return (0-3: strides 4-32).
            Without level 0 the stride-4 branch (``spm.fc1``, ``up``) is not
            built; only the output norms of returned levels are built.
            Defaults to all four.
        frozen_stages (int): -1 freezes nothing; 0 the stem (``patch_embed``,
            ``pos_embed``, ``level_embed``, ``spm``); k > 0 also interactions
            ``0..k-1`` with their ViT blocks, and, when all are frozen, the
            output branch (``up``, output norms). Frozen parts stay in eval
            mode.
        norm_eval (bool): keep the BN layers in eval mode while training.
        with_cp (bool): gradient checkpointing of ViT blocks and interactions.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)``
            with an official ViT-CoMer checkpoint or a plain ViT/DeiT/DINOv2/
            BEiT one (ViT part only); mismatches raise.
    """
    # From the official configs (T/S/B: DeiT/DINOv2 ViTs; seg_mrfp_ratio =
    # ``dim_ratio`` of the ADE20K configs).  L is the 24-layer ViT-L layout:
    # its official BEiTv2 variant is not in the repository, and its
    # seg_mrfp_ratio (1.0, as B) is vitdense's choice.
    _idx12 = [[0, 2], [3, 5], [6, 8], [9, 11]]
    arch_zoo = {
        't': dict(embed_dims=192, depth=12, num_heads=3, deform_num_heads=6,
                  deform_ratio=1.0, seg_mrfp_ratio=6.0,
                  interaction_indexes=_idx12),
        's': dict(embed_dims=384, depth=12, num_heads=6, deform_num_heads=6,
                  deform_ratio=1.0, seg_mrfp_ratio=1.5,
                  interaction_indexes=_idx12),
        'b': dict(embed_dims=768, depth=12, num_heads=12, deform_num_heads=12,
                  deform_ratio=0.5, seg_mrfp_ratio=1.0,
                  interaction_indexes=_idx12),
        'l': dict(embed_dims=1024, depth=24, num_heads=16,
                  deform_num_heads=16, deform_ratio=0.5, seg_mrfp_ratio=1.0,
                  interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]]),
    }
    ARCH_KEYS = ('embed_dims', 'depth', 'num_heads', 'deform_num_heads',
                 'deform_ratio', 'interaction_indexes')
    FLAVOURS = ('detection', 'segmentation')

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 flavour: str = 'detection',
                 pretrain_size: int = 224,
                 mlp_ratio: float = 4.0,
                 qkv_bias: bool = True,
                 layer_scale: bool = True,
                 window_attn: Union[bool, List[bool]] = False,
                 window_size: Union[int, List[Optional[int]]] = 14,
                 drop_path_rate: float = 0.,
                 conv_inplane: int = 64,
                 n_points: int = 4,
                 cffn_ratio: float = 0.25,
                 mrfp_ratio: Optional[float] = None,
                 init_values: float = 0.,
                 use_cti_tov: Union[bool, List[bool]] = True,
                 use_cti_toc: Union[bool, List[bool]] = True,
                 cnn_feature_interaction: Union[bool, List[bool]] = True,
                 num_extra_cti: int = 4,
                 add_vit_feature: bool = True,
                 norm_cfg: dict = dict(type='SyncBN', requires_grad=True),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        arch = resolve_arch(arch, self.arch_zoo, self.ARCH_KEYS, 'ViT-CoMer')
        self.out_indices = tuple(out_indices)
        if not all(0 <= i < 4 for i in self.out_indices):
            raise ValueError(f'out_indices {out_indices} out of range 0-3')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if flavour not in self.FLAVOURS:
            raise ValueError(f'flavour must be one of {self.FLAVOURS}, '
                             f'got {flavour!r}')
        dims, depth = arch['embed_dims'], arch['depth']
        self.embed_dims = dims
        self.flavour = flavour
        self.interaction_indexes = arch['interaction_indexes']
        self.add_vit_feature = add_vit_feature
        self.pretrain_grid = pretrain_size // 16
        if mrfp_ratio is None:
            mrfp_ratio = (0.5 if flavour == 'detection' else
                          arch.get('seg_mrfp_ratio', 6.0))
        if norm_cfg.get('type') == 'SyncBN' and not torch.cuda.is_available():
            norm_cfg = dict(norm_cfg, type='BN')

        def per_block(v, n):
            return list(v) if isinstance(v, (list, tuple)) else [v] * n

        window_attn = per_block(window_attn, depth)
        window_size = per_block(window_size, depth)
        n_inter = len(self.interaction_indexes)
        use_cti_tov = per_block(use_cti_tov, n_inter)
        use_cti_toc = per_block(use_cti_toc, n_inter)
        cnn_feature_interaction = per_block(cnn_feature_interaction, n_inter)

        self.patch_embed = PatchEmbed(dims)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.pretrain_grid**2 + 1, dims))  # +1: cls slot
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[
            ViTBlock(dims, arch['num_heads'], mlp_ratio, qkv_bias, dpr[i],
                     window_size[i] if window_attn[i] else None, layer_scale,
                     with_cp) for i in range(depth)
        ])
        self.level_embed = nn.Parameter(torch.zeros(3, dims))
        self.spm = SpatialPriorModule(conv_inplane, dims, norm_cfg,
                                      with_c1=0 in self.out_indices)
        self.interactions = nn.Sequential(*[
            CTIBlock(
                dims,
                arch['deform_num_heads'],
                n_points,
                arch['deform_ratio'],
                cffn_ratio,
                drop_path_rate,
                init_values,
                mrfp_ratio,
                use_cti_tov[i],
                use_cti_toc[i],
                cnn_feature_interaction[i],
                num_extra_cti if i == n_inter - 1 else 0,
                with_cp,
            ) for i in range(n_inter)
        ])
        self.up = nn.ConvTranspose2d(dims, dims, 2, 2) \
            if 0 in self.out_indices else None
        for i in self.out_indices:  # official names: norm1..norm4
            self.add_module(f'norm{i + 1}',
                            build_norm_layer(norm_cfg, dims)[1])
        self._freeze_stages()

    def init_weights(self) -> None:
        """Official initialisation, then ``init_cfg=dict(type='Pretrained',
        checkpoint=...)`` if given: a full official/vitdense ViT-CoMer
        checkpoint or a plain ViT/DeiT/DINOv2/BEiT one, mapped by
        :func:`vitdense.converters.vit_comer.checkpoint_filter_fn` and
        loaded strictly."""

        def init(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._NormBase)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                std = math.sqrt(2.0 * m.groups / fan_out)
                nn.init.normal_(m.weight, 0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        for m in (self.blocks, self.spm, self.interactions, self.up):
            if m is not None:
                m.apply(init)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        nn.init.normal_(self.level_embed)
        if self.init_cfg is not None:
            if self.init_cfg.get('type') != 'Pretrained':
                raise ValueError('ViTCoMer supports init_cfg of type '
                                 f"'Pretrained' only, got {self.init_cfg}")
            # the converters import this module, so not at the top
            from vitdense.converters.vit_comer import checkpoint_filter_fn
            load_pretrained(self, checkpoint_filter_fn)

    def _frozen_parts(self) -> list:
        n = len(self.interactions)
        parts = [self.patch_embed, self.pos_embed, self.level_embed, self.spm]
        for i in range(min(self.frozen_stages, n)):
            s, e = self.interaction_indexes[i]
            parts += [self.interactions[i], *self.blocks[s:e + 1]]
        if self.frozen_stages >= n:  # the output branch runs after all
            parts += [self.up] + [
                getattr(self, f'norm{i + 1}') for i in self.out_indices
            ]
        return parts

    def _deform_inputs(self, x: torch.Tensor, shapes: Shapes) -> DeformInputs:
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long,
                                         device=x.device)
        start_index = torch.cat([
            spatial_shapes.new_zeros(1),
            spatial_shapes.prod(1).cumsum(0)[:-1]
        ])
        refs = []
        for h, w in shapes:
            ys, xs = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, device=x.device) / h,
                torch.linspace(0.5, w - 0.5, w, device=x.device) / w,
                indexing='ij')
            refs.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
        ref = torch.cat(refs, 0)[None, :, None].to(x.dtype)  # (1, N, 1, 2)
        return ref, spatial_shapes, start_index, shapes

    def _pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        g = self.pretrain_grid
        pos = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=hw, mode='bicubic', align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    @empty_batch_safe
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        B, _, H0, W0 = x.shape
        x = F.pad(x, (0, -W0 % 32, 0, -H0 % 32))
        c1, c2, c3, c4 = self.spm(x)
        H, W = c3.shape[-2:]  # ViT grid (stride 16)
        shapes = ((2 * H, 2 * W), (H, W), (H // 2, W // 2))
        c = torch.cat([
            t.flatten(2).transpose(1, 2) + self.level_embed[i]
            for i, t in enumerate((c2, c3, c4))
        ], 1)

        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        x = x + self._pos_embed((H, W))
        deform = self._deform_inputs(x, shapes)
        vit_outs = []
        for layer, (s, e) in zip(self.interactions, self.interaction_indexes):
            x, c = layer(x, c, self.blocks[s:e + 1], deform)
            vit_outs.append(x)

        c2, c3, c4 = (_to_map(t, hw)
                      for t, hw in zip(_split_levels(c, shapes), shapes))
        outs = [None if self.up is None else self.up(c2) + c1, c2, c3, c4]
        if self.add_vit_feature:
            if self.flavour == 'detection':
                vit_outs = [x] * 4
            for i, (t, s) in enumerate(zip(vit_outs, (4, 2, 1, 0.5))):
                if i not in self.out_indices:
                    continue
                t = _to_map(t, (H, W))
                if s != 1:
                    t = F.interpolate(
                        t, size=(int(H * s), int(W * s)), mode='bilinear',
                        align_corners=False)
                outs[i] = outs[i] + t
        return tuple(
            getattr(self, f'norm{i + 1}')(outs[i])[..., :-(-H0 // s),
                                                   :-(-W0 // s)]
            for i, s in ((i, 4 * 2**i) for i in self.out_indices))
