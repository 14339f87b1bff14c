"""CrossFormer and CrossFormer++ backbones for dense prediction.

Papers: "CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale
Attention", Wang et al., ICLR 2022, arXiv:2108.00154; "CrossFormer++: A
Versatile Vision Transformer Hinging on Cross-scale Attention", Wang et al.,
TPAMI 2023, arXiv:2303.06908.  Official code:
https://github.com/cheerss/CrossFormer (reference revision 7952010),
detection/segmentation flavour ``models/crossformer_backbone_det.py``.

Differences from the official code:

* any input size. Where the official code runs, its grid is kept: its
  stride-4 embedding floors (``floor(H / 4)`` rows) and every merged map must
  be even, so it accepts sizes with ``floor(H / 4)`` divisible by
  ``2 ** (stages - 1)``, i.e. ``32k .. 32k + 3`` for four stages. Along an
  axis of any other size, where it fails, the image is padded to a multiple of
  4 and odd maps are padded before each merging (outputs are
  ``ceil(H / stride)`` there);
* the short/long (SDA/LDA) choice and the group size for maps smaller than a
  group are decided per forward from that input's size and never stored (the
  official blocks permanently switch ``lsda_flag`` to SDA after one small
  input);
* gradient checkpointing (``with_cp``) passes the map size (broken officially);
* variants are data (``arch='t' | 's' | 'b' | 'l' | 'pp-s' | 'pp-b' | 'pp-l' |
  'pp-h'``), registered for mmdet 3 / mmseg 1 / vitdense.

State-dict keys are the official ones; :func:`checkpoint_filter_fn` unwraps,
strips prefixes and drops the classification head and the buffers older
checkpoints store (``biases``, ``relative_position_index``, ``attn_mask``).
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from vitdense.models.backbones._builder import (FrozenStagesMixin,
                                                init_linear_and_layer_norm,
                                                load_pretrained,
                                                maybe_checkpoint,
                                                resolve_arch,
                                                unwrap_checkpoint)
from vitdense.models.backbones._empty_batch import empty_batch_safe
from vitdense.models.layers.mlp import Mlp
from vitdense.registry import MODELS

__all__ = ['CrossFormer', 'checkpoint_filter_fn']

NEG_INF = -1000000.

_V1 = dict(group_size=[7, 7, 7, 7], interval=[8, 4, 2, 1], use_acl=False)
# CrossFormer++: progressive group size (PGS) and amplitude cooling layers
_PP = dict(group_size=[4, 4, 14, 7], interval=[4, 2, 1, 1], use_acl=True)
# From configs/crossformer/*.yaml and configs/crossformer_pp/*.yaml.
ARCH_SETTINGS: Dict[str, dict] = {
    't': dict(embed_dims=64, depths=[1, 1, 8, 6], num_heads=[2, 4, 8, 16],
              **_V1),
    's': dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
              **_V1),
    'b': dict(embed_dims=96, depths=[2, 2, 18, 2],
              num_heads=[3, 6, 12, 24], **_V1),
    'l': dict(embed_dims=128, depths=[2, 2, 18, 2],
              num_heads=[4, 8, 16, 32], **_V1),
    'pp-s': dict(embed_dims=64, depths=[2, 2, 18, 2],
                 num_heads=[2, 4, 8, 16], **_PP),
    'pp-b': dict(embed_dims=96, depths=[2, 2, 18, 2],
                 num_heads=[3, 6, 12, 24], **_PP),
    'pp-l': dict(embed_dims=128, depths=[2, 2, 18, 2],
                 num_heads=[4, 8, 16, 32], **_PP),
    'pp-h': dict(embed_dims=128, depths=[6, 6, 18, 2],
                 num_heads=[4, 8, 16, 32], **_PP),
}


class DynamicPosBias(nn.Module):
    """DPB: an MLP mapping relative offsets ``(dy, dx)`` to per-head biases,
    so one set of weights serves any group size."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, pos_dim)
        self.pos1 = nn.Sequential(
            nn.LayerNorm(pos_dim), nn.ReLU(inplace=True),
            nn.Linear(pos_dim, pos_dim))
        self.pos2 = nn.Sequential(
            nn.LayerNorm(pos_dim), nn.ReLU(inplace=True),
            nn.Linear(pos_dim, pos_dim))
        self.pos3 = nn.Sequential(
            nn.LayerNorm(pos_dim), nn.ReLU(inplace=True),
            nn.Linear(pos_dim, num_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


class GroupAttention(nn.Module):
    """Multi-head self-attention inside groups of ``Gh x Gw`` embeddings with
    the dynamic position bias."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.pos = DynamicPosBias(dim // 4, num_heads)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, gh: int, gw: int,
                      device: torch.device) -> torch.Tensor:
        # the offsets take the DPB's dtype (small integers: exact in bf16)
        offsets = torch.stack(torch.meshgrid(
            torch.arange(1 - gh, gh, device=device),
            torch.arange(1 - gw, gw, device=device),
            indexing='ij')).flatten(1).transpose(0, 1).to(
                self.pos.pos_proj.weight.dtype)  # ((2G-1)^2, 2)
        coords = torch.stack(torch.meshgrid(
            torch.arange(gh, device=device),
            torch.arange(gw, device=device),
            indexing='ij')).flatten(1)  # (2, N)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        index = (rel[..., 0] + gh - 1) * (2 * gw - 1) + rel[..., 1] + gw - 1
        bias = self.pos(offsets)[index.view(-1)].view(gh * gw, gh * gw, -1)
        return bias.permute(2, 0, 1)  # (nH, N, N)

    def forward(self, x: torch.Tensor, gh: int, gw: int,
                pad_mask: Optional[torch.Tensor]) -> torch.Tensor:
        bg, n, c = x.shape  # (B * nG, N, C)
        qkv = self.qkv(x).reshape(bg, n, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B*nG, nH, N, d)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + self.position_bias(gh, gw, x.device).unsqueeze(0)
        if pad_mask is not None:  # (nG, 1, N), NEG_INF on padded keys
            ng = pad_mask.shape[0]
            attn = attn.view(bg // ng, ng, self.num_heads, n, n) + \
                pad_mask.unsqueeze(0).unsqueeze(2)
            attn = attn.view(bg, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bg, n, c)
        return self.proj(x)


class CrossFormerBlock(nn.Module):
    """Short- (SDA, ``lsda=False``) or long-distance (LDA) attention + MLP,
    with the CrossFormer++ amplitude cooling layer (depthwise conv + LN) when
    ``use_acl``."""

    def __init__(self, dim: int, num_heads: int, group_size: int,
                 interval: int, lsda: bool, mlp_ratio: float,
                 drop_path: float, use_acl: bool) -> None:
        super().__init__()
        self.group_size = group_size
        self.interval = interval
        self.lsda = lsda
        self.use_acl = use_acl
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GroupAttention(dim, num_heads)
        if use_acl:
            self.ex_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
            self.ex_ln = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape  # (B, H*W, C)
        # decided per input, never stored: a map no larger than one group is
        # one short-distance group of max(H, W) (padded, masked)
        if min(h, w) <= self.group_size:
            lsda, g = False, max(h, w)
        else:
            lsda, g = self.lsda, self.group_size
        i = self.interval
        size_div = i * g if lsda else g
        pad_r = (size_div - w % size_div) % size_div
        pad_b = (size_div - h % size_div) % size_div
        hp, wp = h + pad_b, w + pad_r

        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        pad_mask = None
        if pad_r or pad_b:
            pad_mask = x.new_zeros(1, hp, wp, 1)
            pad_mask[:, h:] = NEG_INF
            pad_mask[:, :, w:] = NEG_INF

        def group(t: torch.Tensor) -> torch.Tensor:
            bt = t.shape[0]
            if lsda:  # embeddings `i` apart form a group
                rh, rw = hp // (g * i), wp // (g * i)
                t = t.reshape(bt, rh, g, i, rw, g, i, -1)
                t = t.permute(0, 1, 4, 3, 6, 2, 5, 7)
            else:  # adjacent g x g embeddings form a group
                t = t.reshape(bt, hp // g, g, wp // g, g, -1)
                t = t.permute(0, 1, 3, 2, 4, 5)
            return t.reshape(-1, g * g, t.shape[-1])  # (B*nG, G*G, C)

        x = group(x)
        if pad_mask is not None:
            pad_mask = group(pad_mask).transpose(1, 2)  # (nG, 1, G*G)
        x = self.attn(x, g, g, pad_mask)
        if lsda:
            rh, rw = hp // (g * i), wp // (g * i)
            x = x.reshape(b, rh, rw, i, i, g, g, c)
            x = x.permute(0, 1, 5, 3, 2, 6, 4, 7)
        else:
            x = x.reshape(b, hp // g, wp // g, g, g, c)
            x = x.permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, hp, wp, c)[:, :h, :w].reshape(b, h * w, c)

        x = shortcut + self.drop_path(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        if self.use_acl:
            x = x.transpose(1, 2).reshape(b, c, h, w)
            x = self.ex_conv(x).flatten(2).transpose(1, 2)
            x = self.ex_ln(x)
        return x


class PatchMerging(nn.Module):
    """Cross-scale merging: LN, then convs of several kernel sizes, stride 2,
    concatenated to ``2 * dim`` channels. Odd maps are zero-padded first."""

    def __init__(self, dim: int, kernel_sizes: Sequence[int]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.reductions = nn.ModuleList()
        for j, k in enumerate(kernel_sizes):
            last = j == len(kernel_sizes) - 1
            out_dim = 2 * dim // 2**(j if last else j + 1)
            self.reductions.append(
                nn.Conv2d(dim, out_dim, k, stride=2, padding=(k - 2) // 2))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]
                ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        h, w = hw
        b, _, c = x.shape
        x = self.norm(x).transpose(1, 2).reshape(b, c, h, w)
        x = F.pad(x, (0, w % 2, 0, h % 2))
        x = torch.cat([r(x) for r in self.reductions], dim=1)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class PatchEmbed(nn.Module):
    """Cross-scale embedding: convs of kernels ``patch_sizes`` with the stride
    of the first, concatenated, then LN.

    Along each axis, the official grid ``floor(n / stride)`` is used where the
    official code runs (that count divisible by ``2 ** num_merges``: every
    merged map even); elsewhere the image is padded to the stride (``ceil``).
    """

    def __init__(self, in_channels: int, embed_dims: int,
                 patch_sizes: Sequence[int], num_merges: int) -> None:
        super().__init__()
        self.stride = patch_sizes[0]
        self.num_merges = num_merges
        self.projs = nn.ModuleList()
        for j, ps in enumerate(patch_sizes):
            last = j == len(patch_sizes) - 1
            dim = embed_dims // 2**(j if last else j + 1)
            self.projs.append(
                nn.Conv2d(in_channels, dim, ps, stride=self.stride,
                          padding=(ps - self.stride) // 2))
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x: torch.Tensor
                ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        s = self.stride
        pad_h, pad_w = (
            0 if n // s and (n // s) % 2**self.num_merges == 0 else
            (s - n % s) % s for n in x.shape[-2:])
        x = F.pad(x, (0, pad_w, 0, pad_h))
        x = torch.cat([p(x) for p in self.projs], dim=1)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class Stage(nn.Module):
    """Blocks alternating SDA (even) / LDA (odd), then optional merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, group_size: int,
                 interval: int, mlp_ratio: float, drop_paths: List[float],
                 use_acl: bool, merge_sizes: Optional[Sequence[int]],
                 with_cp: bool) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.blocks = nn.ModuleList([
            CrossFormerBlock(
                dim, num_heads, group_size, interval, lsda=j % 2 == 1,
                mlp_ratio=mlp_ratio, drop_path=drop_paths[j],
                # cooling layer after every third block but the last
                use_acl=use_acl and (j + 1) % 3 == 0 and j < depth - 1)
            for j in range(depth)
        ])
        self.downsample = PatchMerging(dim, merge_sizes) \
            if merge_sizes is not None else None

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> tuple:
        for blk in self.blocks:
            x = maybe_checkpoint(blk, x, hw, enabled=self.with_cp)
        b, _, c = x.shape
        feat = x.transpose(1, 2).reshape(b, c, *hw)  # (B, C, H, W)
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        return feat, x, hw


@MODELS.register_module()
class CrossFormer(FrozenStagesMixin, BaseModule):
    """CrossFormer / CrossFormer++ backbone.

    Args:
        arch (str | dict): ``'t'``, ``'s'``, ``'b'``, ``'l'`` (CrossFormer),
            ``'pp-s'``, ``'pp-b'``, ``'pp-l'``, ``'pp-h'`` (CrossFormer++),
            or a dict with ``embed_dims, depths, num_heads, group_size,
            interval, use_acl``. Default: ``'s'``.
        group_size (Sequence[int], optional): Overrides the arch's per-stage
            group size G (the official ++ detection configs use 7-7-7-7).
        interval (Sequence[int], optional): Overrides the arch's per-stage LDA
            interval I (official ++ detection configs: 8-4-2-1).
        in_channels (int): Input channels. Default: 3.
        patch_sizes (Sequence[int]): Kernels of the cross-scale embedding;
            the first is the stride. Default: (4, 8, 16, 32).
        merge_sizes (Sequence[Sequence[int]]): Kernels of each merging layer.
            Default: ((2, 4),) * 3.
        mlp_ratio (float): MLP hidden ratio. Default: 4.
        drop_path_rate (float): Stochastic depth rate. Official detection:
            S 0.2, B 0.3, ++S 0.2, ++B 0.3. Default: 0.2.
        out_indices (Sequence[int]): Stages to return (pre-merging, no norm,
            as the official backbone). Default: (0, 1, 2, 3).
        frozen_stages (int): Freeze the embedding (0) and also stages
            ``0..frozen_stages-1``. -1 freezes nothing. Default: -1.
        with_cp (bool): Gradient checkpointing per block. Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)``
            accepts official classification/detection or converted
            checkpoints; keys are mapped by :func:`checkpoint_filter_fn`.
    """

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 group_size: Optional[Sequence[int]] = None,
                 interval: Optional[Sequence[int]] = None,
                 in_channels: int = 3,
                 patch_sizes: Sequence[int] = (4, 8, 16, 32),
                 merge_sizes: Sequence[Sequence[int]] = ((2, 4), ) * 3,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.2,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        arch = resolve_arch(arch, ARCH_SETTINGS, ARCH_SETTINGS['s'],
                            'CrossFormer')
        if group_size is not None:
            arch['group_size'] = list(group_size)
        if interval is not None:
            arch['interval'] = list(interval)
        self.arch = arch
        depths = arch['depths']
        self.num_stages = len(depths)
        if len(merge_sizes) < self.num_stages - 1:
            raise ValueError('merge_sizes needs one entry per merging layer')
        self.embed_dims = [arch['embed_dims'] * 2**i
                           for i in range(self.num_stages)]
        self.out_indices = tuple(out_indices)
        if not all(0 <= i < self.num_stages for i in self.out_indices):
            raise ValueError(f'out_indices {out_indices} out of range')
        self.frozen_stages = frozen_stages

        self.patch_embed = PatchEmbed(in_channels, arch['embed_dims'],
                                      patch_sizes, self.num_stages - 1)
        dpr = torch.linspace(0, drop_path_rate, sum(depths),
                             device='cpu').tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_stages):
            self.layers.append(
                Stage(
                    dim=self.embed_dims[i],
                    depth=depths[i],
                    num_heads=arch['num_heads'][i],
                    group_size=arch['group_size'][i],
                    interval=arch['interval'][i],
                    mlp_ratio=mlp_ratio,
                    drop_paths=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                    use_acl=arch['use_acl'],
                    merge_sizes=merge_sizes[i]
                    if i < self.num_stages - 1 else None,
                    with_cp=with_cp))
        self._freeze_stages()

    def init_weights(self) -> None:
        if not load_pretrained(self, checkpoint_filter_fn):
            init_linear_and_layer_norm(self)  # the official init

    def _frozen_parts(self) -> list:
        return [self.patch_embed, *self.layers[:self.frozen_stages]]

    @empty_batch_safe
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, hw = self.patch_embed(x)  # (B, H/4 * W/4, C)
        outs = []
        for i, layer in enumerate(self.layers):
            feat, x, hw = layer(x, hw)
            if i in self.out_indices:
                outs.append(feat)
        return tuple(outs)


_DROP_SUFFIXES = ('.biases', '.relative_position_index', '.attn_mask')


def checkpoint_filter_fn(checkpoint: dict,
                         model: Optional[CrossFormer] = None
                         ) -> 'OrderedDict':
    """Map an official CrossFormer(++) checkpoint to this implementation.

    Accepts a raw state dict or a ``{'model': ...}`` / ``{'state_dict': ...}``
    wrapper, strips ``module.``/``backbone.`` (keeping only backbone keys of
    detector checkpoints), drops the classification ``norm``/``head`` and the
    stored ``biases``/``relative_position_index``/``attn_mask`` buffers of the
    old-branch checkpoints. ``model`` is accepted for timm-style symmetry.
    """
    out = OrderedDict()
    for k, v in unwrap_checkpoint(checkpoint).items():
        if k.startswith(('head.', 'norm.', 'absolute_pos_embed')) or \
                k.endswith(_DROP_SUFFIXES):
            continue
        out[k] = v
    return out
