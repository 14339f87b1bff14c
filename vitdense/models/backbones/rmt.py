"""RMT backbone for dense prediction.

Paper: "RMT: Retentive Networks Meet Vision Transformers", Fan et al.,
CVPR 2024, arXiv:2309.11523.  Official code: https://github.com/qhfan/RMT
(reference revision 32ea214), detection/segmentation flavour
``detect/mmdet/models/backbones/RMT.py``.

Differences from the official code:

* runs on mmengine/mmcv 2 and is registered for mmdet 3 / mmseg 1 (the official
  backbone only exists in vendored mmdet 2.11 / mmseg 0.13);
* variants are data (``arch='t' | 's' | 'b' | 'l'``) instead of config copies;
* ``out_indices`` builds only the output norms it uses, ``frozen_stages`` and
  ``norm_eval`` work (the official ``norm_eval`` tests ``BatchNorm2d``, which
  its ``SyncBatchNorm`` layers are not, so it never acts);
* the decay/rotary tables are recomputed per forward and never stored in the
  state dict (the official ``Relpos.angle``/``Relpos.decay`` buffers are);
* gradient checkpointing (``with_cp``) uses the non-reentrant torch checkpoint.

State-dict keys are the official ones, so :func:`checkpoint_filter_fn` only
unwraps, strips prefixes and drops classification-only entries.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from vitdense.models.backbones._builder import (FrozenStagesMixin,
                                                init_linear_and_layer_norm,
                                                load_pretrained,
                                                maybe_checkpoint,
                                                resolve_arch,
                                                unwrap_checkpoint)
from vitdense.models.backbones._empty_batch import empty_batch_safe
from vitdense.registry import MODELS

__all__ = ['RMT', 'checkpoint_filter_fn']

# Variant table, numbers from the official det/seg configs
# (detect/configs/RMT/maskrcnn_{t,s,m,l}_1x.py; RMT-B is the official "m").
ARCH_SETTINGS: Dict[str, dict] = {
    't': dict(embed_dims=[64, 128, 256, 512], depths=[2, 2, 8, 2],
              num_heads=[4, 4, 8, 16], init_values=[2, 2, 2, 2],
              heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
              decomposed=[True, True, False, False],
              layerscales=[False, False, False, False]),
    's': dict(embed_dims=[64, 128, 256, 512], depths=[3, 4, 18, 4],
              num_heads=[4, 4, 8, 16], init_values=[2, 2, 2, 2],
              heads_ranges=[4, 4, 6, 6], mlp_ratios=[4, 4, 3, 3],
              decomposed=[True, True, True, False],
              layerscales=[False, False, False, False]),
    'b': dict(embed_dims=[80, 160, 320, 512], depths=[4, 8, 25, 8],
              num_heads=[5, 5, 10, 16], init_values=[2, 2, 2, 2],
              heads_ranges=[5, 5, 6, 6], mlp_ratios=[4, 4, 3, 3],
              decomposed=[True, True, True, False],
              layerscales=[False, False, True, True]),
    'l': dict(embed_dims=[112, 224, 448, 640], depths=[4, 8, 25, 8],
              num_heads=[7, 7, 14, 20], init_values=[2, 2, 2, 2],
              heads_ranges=[6, 6, 6, 6], mlp_ratios=[4, 4, 3, 3],
              decomposed=[True, True, True, False],
              layerscales=[False, False, True, True]),
}
ARCH_SETTINGS['m'] = ARCH_SETTINGS['b']  # the official name of RMT-B


def _rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., ::2]
    x2 = x[..., 1::2]
    return torch.stack([-x2, x1], dim=-1).flatten(-2)


def _theta_shift(x: torch.Tensor, sin: torch.Tensor,
                 cos: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_every_two(x) * sin


class DWConv2d(nn.Module):
    """Depthwise conv on a channels-last map ``(B, H, W, C)``."""

    def __init__(self, dim: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            dim, dim, kernel_size, 1, padding, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class RetentionRelPos(nn.Module):
    """Rotary angles and the Manhattan spatial-decay masks of one stage.

    ``decay[h] = log(1 - 2^(-init_value - heads_range * h / num_heads))``.
    The tables are non-persistent buffers: nothing here is in a checkpoint.
    """

    def __init__(self, embed_dim: int, num_heads: int, init_value: float,
                 heads_range: float) -> None:
        super().__init__()
        angle = 1.0 / (10000**torch.linspace(0, 1,
                                              embed_dim // num_heads // 2))
        angle = angle.unsqueeze(-1).repeat(1, 2).flatten()
        decay = torch.log(1 - 2**(-init_value - heads_range * torch.arange(
            num_heads, dtype=torch.float) / num_heads))
        self.register_buffer('angle', angle, persistent=False)
        self.register_buffer('decay', decay, persistent=False)

    def _decay_1d(self, length: int) -> torch.Tensor:
        index = torch.arange(length).to(self.decay)
        mask = (index[:, None] - index[None, :]).abs()
        return mask * self.decay[:, None, None]  # (n, l, l)

    def _decay_2d(self, h: int, w: int) -> torch.Tensor:
        grid = torch.meshgrid(
            torch.arange(h).to(self.decay),
            torch.arange(w).to(self.decay),
            indexing='ij')
        grid = torch.stack(grid, dim=-1).reshape(h * w, 2)
        mask = (grid[:, None, :] - grid[None, :, :]).abs().sum(dim=-1)
        return mask * self.decay[:, None, None]  # (n, hw, hw)

    def forward(self, h: int, w: int, decomposed: bool) -> tuple:
        index = torch.arange(h * w).to(self.decay)
        phase = index[:, None] * self.angle[None, :]
        sin = torch.sin(phase).reshape(h, w, -1)  # (h, w, d)
        cos = torch.cos(phase).reshape(h, w, -1)
        if decomposed:
            return (sin, cos), (self._decay_1d(h), self._decay_1d(w))
        return (sin, cos), self._decay_2d(h, w)


class ManhattanSelfAttention(nn.Module):
    """MaSA: softmax attention with an additive Manhattan decay mask, rotary
    q/k and a 5x5 depthwise LePE on v.

    ``decomposed=True`` attends along W then along H with 1-D masks (the
    official ``VisionRetentionChunk``); otherwise over all H*W tokens with the
    2-D mask (``VisionRetentionAll``).
    """

    def __init__(self, embed_dim: int, num_heads: int,
                 decomposed: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.decomposed = decomposed
        self.key_dim = embed_dim // num_heads
        self.scaling = self.key_dim**-0.5
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.lepe = DWConv2d(embed_dim, 5, 2)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, rel_pos: tuple) -> torch.Tensor:
        b, h, w, _ = x.shape  # (B, H, W, C)
        (sin, cos), mask = rel_pos
        n = self.num_heads
        q = self.q_proj(x)
        k = self.k_proj(x) * self.scaling
        v = self.v_proj(x)
        lepe = self.lepe(v)

        q = q.view(b, h, w, n, -1).permute(0, 3, 1, 2, 4)  # (B, n, H, W, d)
        k = k.view(b, h, w, n, -1).permute(0, 3, 1, 2, 4)
        q = _theta_shift(q, sin, cos)
        k = _theta_shift(k, sin, cos)

        if self.decomposed:
            mask_h, mask_w = mask
            # along W: (B, H, n, W, d)
            v = v.view(b, h, w, n, -1).permute(0, 1, 3, 2, 4)
            attn = q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)
            v = torch.softmax(attn + mask_w, -1) @ v
            # along H: (B, W, n, H, d)
            v = v.permute(0, 3, 2, 1, 4)
            qh = q.permute(0, 3, 1, 2, 4)
            kh = k.permute(0, 3, 1, 2, 4)
            out = torch.softmax(qh @ kh.transpose(-1, -2) + mask_h, -1) @ v
            out = out.permute(0, 3, 1, 2, 4).flatten(-2)  # (B, H, W, C)
        else:
            q = q.flatten(2, 3)  # (B, n, HW, d)
            k = k.flatten(2, 3)
            v = v.view(b, h * w, n, -1).transpose(1, 2)  # (B, n, HW, d)
            out = torch.softmax(q @ k.transpose(-1, -2) + mask, -1) @ v
            out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.out_proj(out + lepe)


class ConvFFN(nn.Module):
    """fc1 -> GELU -> (x + DWConv3x3(x)) -> fc2, channels-last."""

    def __init__(self, embed_dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.dwconv = DWConv2d(ffn_dim, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(x))
        x = x + self.dwconv(x)
        return self.fc2(x)


class RetBlock(nn.Module):
    """x + CPE(x), then x + MaSA(LN(x)), then x + FFN(LN(x)); optional
    layer scale on both branches."""

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int,
                 decomposed: bool, drop_path: float, layerscale: bool,
                 layer_init_values: float) -> None:
        super().__init__()
        self.pos = DWConv2d(embed_dim, 3, 1)
        self.retention_layer_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.retention = ManhattanSelfAttention(embed_dim, num_heads,
                                                decomposed)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        self.final_layer_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.ffn = ConvFFN(embed_dim, ffn_dim)
        self.layerscale = layerscale
        if layerscale:
            self.gamma_1 = nn.Parameter(
                layer_init_values * torch.ones(1, 1, 1, embed_dim))
            self.gamma_2 = nn.Parameter(
                layer_init_values * torch.ones(1, 1, 1, embed_dim))

    def forward(self, x: torch.Tensor, rel_pos: tuple) -> torch.Tensor:
        x = x + self.pos(x)
        y = self.retention(self.retention_layer_norm(x), rel_pos)
        if self.layerscale:
            y = self.gamma_1 * y
        x = x + self.drop_path(y)
        y = self.ffn(self.final_layer_norm(x))
        if self.layerscale:
            y = self.gamma_2 * y
        return x + self.drop_path(y)


class PatchMerging(nn.Module):
    """Conv3x3 stride 2 + BN.

    ``(B, H, W, C) -> (B, ceil(H / 2), ceil(W / 2), C')``.
    """

    def __init__(self, dim: int, out_dim: int, norm_cfg: dict) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, 3, 2, 1)
        self.norm = build_norm_layer(norm_cfg, out_dim)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.reduction(x.permute(0, 3, 1, 2)))
        return x.permute(0, 2, 3, 1)


class RMTStage(nn.Module):
    """Blocks of one stage (sharing one decay/rotary table) + downsampling."""

    def __init__(self, embed_dim: int, out_dim: Optional[int], depth: int,
                 num_heads: int, init_value: float, heads_range: float,
                 ffn_dim: int, decomposed: bool, drop_paths: List[float],
                 layerscale: bool, layer_init_values: float, norm_cfg: dict,
                 with_cp: bool) -> None:
        super().__init__()
        self.decomposed = decomposed
        self.with_cp = with_cp
        self.rel_pos = RetentionRelPos(embed_dim, num_heads, init_value,
                                       heads_range)
        self.blocks = nn.ModuleList([
            RetBlock(embed_dim, num_heads, ffn_dim, decomposed,
                     drop_paths[i], layerscale, layer_init_values)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(embed_dim, out_dim, norm_cfg) \
            if out_dim is not None else None

    def forward(self, x: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        _, h, w, _ = x.shape
        rel_pos = self.rel_pos(h, w, self.decomposed)
        for blk in self.blocks:
            x = maybe_checkpoint(blk, x, rel_pos, enabled=self.with_cp)
        x_down = self.downsample(x) if self.downsample is not None else None
        return x, x_down


@MODELS.register_module()
class RMT(FrozenStagesMixin, BaseModule):
    """RMT backbone (Retentive Networks Meet Vision Transformers).

    Args:
        arch (str | dict): ``'t'``, ``'s'``, ``'b'`` (alias ``'m'``),
            ``'l'`` or a dict with the keys of ``ARCH_SETTINGS['t']``.
            Default: ``'t'``.
        in_channels (int): Input channels. Default: 3.
        drop_path_rate (float): Stochastic depth rate, linearly increased over
            all blocks. Official: T 0.1, S 0.15, B 0.4, L 0.5. Default: 0.1.
        layer_init_values (float): Initial layer-scale value. Default: 1e-6.
        out_indices (Sequence[int]): Stages whose (LayerNorm-ed) outputs are
            returned, strides 4, 8, 16, 32. Default: (0, 1, 2, 3).
        frozen_stages (int): Freeze the stem (0) and also stages
            ``0..frozen_stages-1`` with their downsampling and output norms.
            -1 freezes nothing. Default: -1.
        norm_cfg (dict): Norm of the stem and the downsampling convs.
            The official code uses SyncBN. Default: ``dict(type='BN')``.
        norm_eval (bool): Keep BN layers in eval mode while training.
            Default: False.
        with_cp (bool): Gradient checkpointing per block. Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)``
            accepts an official classification or detection checkpoint or a
            converted one; keys are mapped by :func:`checkpoint_filter_fn`.
    """

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 in_channels: int = 3,
                 drop_path_rate: float = 0.1,
                 layer_init_values: float = 1e-6,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        arch = resolve_arch(arch, ARCH_SETTINGS, ARCH_SETTINGS['t'], 'RMT')
        self.arch = arch
        dims = arch['embed_dims']
        depths = arch['depths']
        self.num_stages = len(depths)
        self.embed_dims = list(dims)
        self.out_indices = tuple(out_indices)
        if not all(0 <= i < self.num_stages for i in self.out_indices):
            raise ValueError(f'out_indices {out_indices} out of range')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        c0 = dims[0]
        # stem: 4 convs with BN (+GELU between), stride 4 overall
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Sequential(
            nn.Conv2d(in_channels, c0 // 2, 3, 2, 1),
            build_norm_layer(norm_cfg, c0 // 2)[1], nn.GELU(),
            nn.Conv2d(c0 // 2, c0 // 2, 3, 1, 1),
            build_norm_layer(norm_cfg, c0 // 2)[1], nn.GELU(),
            nn.Conv2d(c0 // 2, c0, 3, 2, 1),
            build_norm_layer(norm_cfg, c0)[1], nn.GELU(),
            nn.Conv2d(c0, c0, 3, 1, 1),
            build_norm_layer(norm_cfg, c0)[1])

        dpr = torch.linspace(0, drop_path_rate, sum(depths),
                             device='cpu').tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_stages):
            self.layers.append(
                RMTStage(
                    embed_dim=dims[i],
                    out_dim=dims[i + 1] if i < self.num_stages - 1 else None,
                    depth=depths[i],
                    num_heads=arch['num_heads'][i],
                    init_value=arch['init_values'][i],
                    heads_range=arch['heads_ranges'][i],
                    ffn_dim=int(arch['mlp_ratios'][i] * dims[i]),
                    decomposed=arch['decomposed'][i],
                    drop_paths=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                    layerscale=arch['layerscales'][i],
                    layer_init_values=layer_init_values,
                    norm_cfg=norm_cfg,
                    with_cp=with_cp))
        # one LayerNorm per returned stage; ModuleDict keeps the official
        # ``extra_norms.{i}`` keys
        self.extra_norms = nn.ModuleDict(
            {str(i): nn.LayerNorm(dims[i])
             for i in self.out_indices})
        self._freeze_stages()

    def init_weights(self) -> None:
        if not load_pretrained(self, checkpoint_filter_fn):
            init_linear_and_layer_norm(self)  # the official init

    def _frozen_parts(self) -> list:
        parts = [self.patch_embed]
        for i in range(self.frozen_stages):
            parts += [self.layers[i], self.extra_norms[str(i)]
                      if str(i) in self.extra_norms else None]
        return parts

    @empty_batch_safe
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)  # (B, H/4, W/4, C)
        outs = []
        for i, layer in enumerate(self.layers):
            x_out, x = layer(x)
            if i in self.out_indices:
                out = self.extra_norms[str(i)](x_out)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)


_DROP_PREFIXES = ('head.', 'aux_head.', 'proj.', 'norm.', 'swish.',
                  'avgpool.')


def checkpoint_filter_fn(checkpoint: dict,
                         model: Optional[RMT] = None) -> 'OrderedDict':
    """Map an official RMT checkpoint to this implementation's keys.

    Accepts a raw state dict or a ``{'model': ...}`` / ``{'state_dict': ...}``
    wrapper (classification ``main.py`` or mmdet/mmseg training), strips
    ``module.``/``backbone.`` prefixes (keeping only backbone keys of detector
    checkpoints), drops the classification head (``proj``, ``norm``, ``head``,
    ``aux_head``) and the stored ``Relpos.angle``/``Relpos.decay`` buffers.
    Classification checkpoints have no ``extra_norms``; they are added as
    identity LayerNorms (ones/zeros), which is what the official detection
    backbone starts from. With ``model`` given, output norms are kept/added
    only for ``model.out_indices``.
    """
    out = OrderedDict()
    for k, v in unwrap_checkpoint(checkpoint).items():
        if k.startswith(_DROP_PREFIXES) or '.Relpos.' in k or \
                '.rel_pos.' in k:
            continue
        out[k] = v

    stages = sorted({int(k.split('.')[1]) for k in out
                     if k.startswith('layers.')})
    keep = model.out_indices if model is not None else stages
    for i in stages:
        w = f'extra_norms.{i}.weight'
        if i not in keep:
            out.pop(w, None)
            out.pop(f'extra_norms.{i}.bias', None)
        elif w not in out:
            dim = out[f'layers.{i}.blocks.0.retention_layer_norm.weight'
                      ].shape[0]
            out[w] = torch.ones(dim)
            out[f'extra_norms.{i}.bias'] = torch.zeros(dim)
    return out
