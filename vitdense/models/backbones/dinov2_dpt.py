"""DINOv2 ViT/14 with the DPT relative-depth head of Depth-Anything-V2.

Papers: "DINOv2: Learning Robust Visual Features without Supervision"
(arXiv:2304.07193), "Depth Anything V2" (arXiv:2406.09414), used frozen by
"MonoDINO-DETR" (IEEE IV 2025, arXiv:2502.00315).
Official code: https://github.com/DepthAnything/Depth-Anything-V2 (a561b84),
vendored by https://github.com/JihyeokKim/MonoDINO-DETR (65004cc,
``lib/models/monodinodetr/{backbone.py,depth_anything_v2/}``); DINOv2 itself:
https://github.com/facebookresearch/dinov2 (b8931f7).

The image is cut into 14x14 patches; a cls token (and optional register
tokens) joins them; the position embedding of the pre-training grid is
bicubic-interpolated to the input grid exactly as the official
``interpolate_pos_encoding`` (offset and antialias included); the outputs of
the blocks in ``out_indices`` go through the final LayerNorm and lose their
cls/register tokens (official ``get_intermediate_layers(norm=True)``). The
DPT head reassembles four of them into a 4x/2x/1x/0.5x pyramid, fuses it
coarse to fine (RefineNet units) and predicts relative depth (inverse-depth
like, >= 0 after ReLU).

What differs from the official code, and why:

* any input size: the image is zero-padded at the bottom/right to a multiple
  of 14 (as MonoDINO-DETR's ``BackboneViT``; the official ``PatchEmbed``
  asserts multiples) and, without ``input_size``, the depth map is cropped
  back to the input; with ``input_size`` the padded image is resized to it
  first, as ``BackboneViT`` does with 518x518;
* attention through ``F.scaled_dot_product_attention`` (official: xFormers or
  an explicit softmax; equal up to float rounding);
* the DPT's residual units and fusion blocks are written here: mmseg's
  ``DPTHead`` units have no conv biases and its fusion blocks upsample by 2
  instead of to the next level's size, which the official checkpoints and
  odd grids need;
* modules the official code builds but never runs are not built
  (``mask_token``, the first residual unit of the coarsest fusion block);
  :mod:`vitdense.converters.depth_anything` drops their weights; drop path
  and the DPT BatchNorm option (off in every official model) are left out;
* blocks after ``max(out_indices)`` are built (checkpoints keep their
  layout) but not run (official: run, output unused);
* ``frozen`` (default, as MonoDINO-DETR) / ``frozen_stages`` and ``with_cp``
  as the other vitdense backbones.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from vitdense.models.backbones._builder import (FrozenStagesMixin,
                                                load_pretrained,
                                                maybe_checkpoint,
                                                resolve_arch)
from vitdense.models.layers.mlp import Mlp
from vitdense.registry import MODELS

__all__ = ['DepthAnythingV2', 'DPTHead']

#: channels of the DPT's last hidden layer (official ``head_features_2``)
DPT_HEAD_HIDDEN = 32


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (official key ``ls*.gamma``)."""

    def __init__(self, dims: int, init_value: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dims, ), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class SwiGLUFFN(nn.Module):
    """``w3(SiLU(a) * b)`` with ``a, b = w12(x).chunk(2)``; the hidden width
    is rounded as the official ``SwiGLUFFNFused`` (ViT-g)."""

    def __init__(self, dims: int, hidden_dims: int):
        super().__init__()
        hidden_dims = (int(hidden_dims * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dims, 2 * hidden_dims)
        self.w3 = nn.Linear(hidden_dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Attention(nn.Module):
    """Global multi-head self-attention with a fused ``qkv`` projection."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dims, 3 * dims)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                      C // self.num_heads).permute(
                                          2, 0, 3, 1, 4)  # (B, heads, N, d)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale on both branches."""

    def __init__(self, dims: int, num_heads: int, mlp_ratio: float,
                 ffn: str, with_cp: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        self.attn = Attention(dims, num_heads)
        self.ls1 = LayerScale(dims)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        hidden = int(dims * mlp_ratio)
        self.mlp = Mlp(dims, hidden) if ffn == 'mlp' else SwiGLUFFN(
            dims, hidden)
        self.ls2 = LayerScale(dims)
        self.with_cp = with_cp

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(self._forward, x, enabled=self.with_cp)


class PatchEmbed(nn.Module):

    def __init__(self, dims: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dims, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, C)


class ResidualConvUnit(nn.Module):
    """``x + conv2(ReLU(conv1(ReLU(x))))``, 3x3 convs with biases."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """RefineNet-style fusion: ``x + res_unit1(skip)`` (finer levels only),
    ``res_unit2``, bilinear (align_corners) resize to ``size`` (or x2 when
    None), 1x1 ``out_conv``."""

    def __init__(self, channels: int, with_skip: bool):
        super().__init__()
        if with_skip:
            self.res_unit1 = ResidualConvUnit(channels)
        self.res_unit2 = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self,
                x: torch.Tensor,
                skip: Optional[torch.Tensor] = None,
                size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.res_unit1(skip)
        x = self.res_unit2(x)
        resize = dict(scale_factor=2) if size is None else dict(size=size)
        x = F.interpolate(x, mode='bilinear', align_corners=True, **resize)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """The Depth-Anything-V2 DPT head: four ViT maps -> relative depth.

    Reassemble: 1x1 ``projects`` to ``out_channels``, then ``resize_layers``
    (x4 and x2 transposed convs, identity, 3x3 stride-2 conv); 3x3
    ``layer_rn`` to ``features``; ``fusions`` coarse to fine, each resized to
    the next finer level (the finest by 2); ``out_conv1``, bilinear resize to
    ``output_size``, ``out_conv2`` + ReLU, ``out_conv3`` + ReLU.

    Args:
        in_channels (int): ViT width.
        features (int): fusion width (official ``features``).
        out_channels (Sequence[int]): the four reassembled widths.
        use_clstoken (bool): official readout ``'project'``: each map is
            concatenated with its cls token and projected back (Linear +
            GELU) before reassembly; off in every official model.
    """

    def __init__(self, in_channels: int, features: int,
                 out_channels: Sequence[int], use_clstoken: bool = False):
        super().__init__()
        if len(out_channels) != 4:
            raise ValueError(f'DPTHead needs 4 out_channels, got '
                             f'{list(out_channels)}')
        c = list(out_channels)
        self.projects = nn.ModuleList(
            [nn.Conv2d(in_channels, ci, 1) for ci in c])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c[0], c[0], 4, 4),
            nn.ConvTranspose2d(c[1], c[1], 2, 2),
            nn.Identity(),
            nn.Conv2d(c[3], c[3], 3, 2, 1)
        ])
        self.use_clstoken = use_clstoken
        if use_clstoken:
            self.readout_projects = nn.ModuleList([
                nn.Sequential(nn.Linear(2 * in_channels, in_channels),
                              nn.GELU()) for _ in c
            ])
        self.layer_rn = nn.ModuleList(
            [nn.Conv2d(ci, features, 3, padding=1, bias=False) for ci in c])
        self.fusions = nn.ModuleList(
            [FusionBlock(features, with_skip=i < 3) for i in range(4)])
        self.out_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.out_conv2 = nn.Conv2d(features // 2, DPT_HEAD_HIDDEN, 3,
                                   padding=1)
        self.out_conv3 = nn.Conv2d(DPT_HEAD_HIDDEN, 1, 1)

    def forward(self, maps: Sequence[torch.Tensor],
                cls_tokens: Sequence[torch.Tensor],
                output_size: Tuple[int, int]) -> torch.Tensor:
        """(B, C, h, w) maps and (B, C) cls tokens of 4 layers ->
        (B, 1, *output_size) relative depth."""
        levels = []
        for i, (x, cls) in enumerate(zip(maps, cls_tokens, strict=True)):
            if self.use_clstoken:
                B, C, h, w = x.shape
                t = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
                t = self.readout_projects[i](
                    torch.cat([t, cls[:, None].expand_as(t)], -1))
                x = t.transpose(1, 2).reshape(B, C, h, w)
            x = self.resize_layers[i](self.projects[i](x))
            levels.append(self.layer_rn[i](x))
        x = self.fusions[3](levels[3], size=levels[2].shape[2:])
        for i in (2, 1, 0):
            x = self.fusions[i](
                x, levels[i], size=levels[i - 1].shape[2:] if i else None)
        x = F.interpolate(self.out_conv1(x), size=output_size,
                          mode='bilinear', align_corners=True)
        return F.relu(self.out_conv3(F.relu(self.out_conv2(x))))


@MODELS.register_module()
class DepthAnythingV2(FrozenStagesMixin, BaseModule):
    """DINOv2 ViT/14 (+ Depth-Anything-V2 DPT head): intermediate feature
    maps and relative depth.

    Forward interface (stable; MonoDINO-DETR builds on it)::

        feats, depth = model(x)   # x: (B, 3, H, W), normalised RGB

    * ``feats``: tuple with one (B, C, h, w) map per ``out_indices`` entry,
      in that order; C = ``embed_dims``; the block's output after the final
      LayerNorm, patch tokens only (cls and register tokens removed), as the
      official ``get_intermediate_layers(..., norm=True)``; MonoDINO-DETR's
      ``BackboneViT`` uses the last three.
    * ``depth``: (B, 1, H_d, W_d) relative depth >= 0 (DPT output after ReLU,
      larger = nearer), or None when ``with_depth_head=False``.
    * sizes, with P = 14: without ``input_size``, (h, w) = (ceil(H / P),
      ceil(W / P)) (zero padding at the bottom/right) and (H_d, W_d) =
      (H, W) (the padded depth cropped back); with ``input_size`` = (Hs, Ws),
      the padded image is bilinearly resized to it (as ``BackboneViT`` with
      518), (h, w) = (Hs / P, Ws / P) and (H_d, W_d) = (Hs, Ws).

    Args:
        arch (str | dict): ``'vits'``, ``'vitb'``, ``'vitl'``, ``'vitg'``
            (the official Depth-Anything-V2 / DINOv2 variants) or a dict with
            the keys of :attr:`ARCH_KEYS` and optionally ``ffn`` (``'mlp'``
            or ``'swiglu'``, default ``'mlp'``) and ``mlp_ratio`` (4), as in
            :attr:`arch_zoo` (tiny configs). Defaults to ``'vitb'``
            (MonoDINO-DETR).
        out_indices (Sequence[int], optional): blocks whose outputs are
            returned (and fed to the DPT head, which needs four). Defaults
            to the arch's official ``intermediate_layer_idx``.
        with_depth_head (bool): build the DPT head. Defaults to True.
        use_clstoken (bool): the DPT's cls-token readout (official option,
            off in the released models).
        img_size (int): pre-training image size; fixes the position
            embedding grid (``img_size // 14``; 518 -> 37x37 as every
            official checkpoint).
        input_size (int | tuple[int, int], optional): resize the (padded)
            input to this multiple of 14 first; MonoDINO-DETR uses 518.
        num_register_tokens (int): DINOv2 "with registers" tokens (0 in
            Depth-Anything-V2; 4 in the ``*_reg`` DINOv2 checkpoints).
        interpolate_offset (float): added to the target grid before the
            bicubic scale factors are computed (0.1 in Depth-Anything-V2 and
            DINOv2; 0 in the ``*_reg`` models: then the target size is used).
        interpolate_antialias (bool): antialias of that interpolation (False;
            True in the ``*_reg`` models).
        frozen (bool): freeze everything (``requires_grad=False``, kept in
            eval mode by ``train()``), as MonoDINO-DETR. Defaults to True.
        frozen_stages (int): with ``frozen=False``: -1 freezes nothing, 0 the
            patch embedding and tokens, k > 0 also blocks ``0..k-1``,
            ``depth + 1`` also the final norm and the DPT head.
        with_cp (bool): gradient checkpointing of the ViT blocks.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` with an official Depth-Anything-V2 checkpoint
            (``pretrained.*``/``depth_head.*``), a plain DINOv2 one (the DPT
            head then keeps its initialisation) or a converted one; loaded
            strictly.
    """
    arch_zoo = {
        'vits': dict(embed_dims=384, depth=12, num_heads=6, ffn='mlp',
                     out_indices=(2, 5, 8, 11), dpt_features=64,
                     dpt_channels=(48, 96, 192, 384)),
        'vitb': dict(embed_dims=768, depth=12, num_heads=12, ffn='mlp',
                     out_indices=(2, 5, 8, 11), dpt_features=128,
                     dpt_channels=(96, 192, 384, 768)),
        'vitl': dict(embed_dims=1024, depth=24, num_heads=16, ffn='mlp',
                     out_indices=(4, 11, 17, 23), dpt_features=256,
                     dpt_channels=(256, 512, 1024, 1024)),
        'vitg': dict(embed_dims=1536, depth=40, num_heads=24,
                     ffn='swiglu', out_indices=(9, 19, 29, 39),
                     dpt_features=384, dpt_channels=(1536, ) * 4),
    }
    ARCH_KEYS = ('embed_dims', 'depth', 'num_heads', 'out_indices',
                 'dpt_features', 'dpt_channels')
    patch_size = 14

    def __init__(self,
                 arch: Union[str, dict] = 'vitb',
                 out_indices: Optional[Sequence[int]] = None,
                 with_depth_head: bool = True,
                 use_clstoken: bool = False,
                 img_size: int = 518,
                 input_size: Optional[Union[int, Sequence[int]]] = None,
                 num_register_tokens: int = 0,
                 interpolate_offset: float = 0.1,
                 interpolate_antialias: bool = False,
                 frozen: bool = True,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        arch = resolve_arch(arch, self.arch_zoo, self.ARCH_KEYS,
                            'DepthAnythingV2')
        dims, depth = arch['embed_dims'], arch['depth']
        ffn = arch.get('ffn', 'mlp')
        if ffn not in ('mlp', 'swiglu'):
            raise ValueError(f"ffn must be 'mlp' or 'swiglu', got {ffn!r}")
        self.out_indices = tuple(
            arch['out_indices'] if out_indices is None else out_indices)
        if not self.out_indices or not all(0 <= i < depth
                                           for i in self.out_indices):
            raise ValueError(f'out_indices {self.out_indices} must be block '
                             f'indices in 0..{depth - 1}')
        if with_depth_head and len(self.out_indices) != 4:
            raise ValueError('the DPT head needs 4 out_indices, got '
                             f'{self.out_indices}')
        if input_size is not None:
            input_size = ((input_size, input_size) if isinstance(
                input_size, int) else tuple(input_size))
            if len(input_size) != 2 or any(s <= 0 or s % self.patch_size
                                           for s in input_size):
                raise ValueError('input_size must be positive multiples of '
                                 f'{self.patch_size}, got {input_size}')
        if frozen and frozen_stages != -1:
            raise ValueError('frozen=True freezes everything; pass '
                             'frozen=False to use frozen_stages')
        self.embed_dims = dims
        self.depth = depth
        self.input_size = input_size
        self.pos_grid = img_size // self.patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias

        self.patch_embed = PatchEmbed(dims, self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.pos_grid**2 + 1, dims))  # +1: cls slot
        self.register_tokens = nn.Parameter(
            torch.zeros(1, num_register_tokens,
                        dims)) if num_register_tokens else None
        self.blocks = nn.ModuleList([
            Block(dims, arch['num_heads'], arch.get('mlp_ratio', 4.0), ffn,
                  with_cp) for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(dims, eps=1e-6)
        self.depth_head = DPTHead(dims, arch['dpt_features'],
                                  arch['dpt_channels'],
                                  use_clstoken) if with_depth_head else None
        self.frozen_stages = depth + 1 if frozen else frozen_stages
        self._freeze_stages()

    def init_weights(self) -> None:
        """Official initialisation (trunc-normal position embedding and
        Linear weights, std 0.02; cls/register tokens N(0, 1e-6); zero
        biases; PyTorch defaults in the DPT head), then ``init_cfg``'s
        checkpoint if given, mapped by
        :func:`vitdense.converters.depth_anything.checkpoint_filter_fn` and
        loaded strictly."""
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
        if self.init_cfg is not None:
            if self.init_cfg.get('type') != 'Pretrained':
                raise ValueError('DepthAnythingV2 supports init_cfg of type '
                                 f"'Pretrained' only, got {self.init_cfg}")
            # the converters import this module, so not at the top
            from vitdense.converters.depth_anything import \
                checkpoint_filter_fn
            load_pretrained(self, checkpoint_filter_fn)

    def _frozen_parts(self) -> list:
        parts = [
            self.patch_embed, self.cls_token, self.pos_embed,
            self.register_tokens
        ]
        if self.frozen_stages > self.depth:
            return parts + [self.blocks, self.norm, self.depth_head]
        return parts + list(self.blocks[:self.frozen_stages])

    def train(self, mode: bool = True):
        """As :class:`FrozenStagesMixin`; when everything is frozen the
        module itself reports eval mode too."""
        super().train(mode)
        if self.frozen_stages > self.depth:
            self.training = False
        return self

    def _pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        """(1, 1 + h*w, C) position embedding for an h x w grid: the official
        ``interpolate_pos_encoding`` (none on the pre-training grid; bicubic
        with scale factors (h + offset) / g, (w + offset) / g, or to (h, w)
        when the offset is 0; computed in float32)."""
        g = self.pos_grid
        if hw == (g, g):
            return self.pos_embed
        pos = self.pos_embed.float()
        grid = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            resize = dict(scale_factor=tuple(
                (s + self.interpolate_offset) / g for s in hw))
        else:
            resize = dict(size=hw)
        grid = F.interpolate(grid, mode='bicubic',
                             antialias=self.interpolate_antialias, **resize)
        if tuple(grid.shape[-2:]) != hw:
            raise ValueError(
                f'interpolate_offset {self.interpolate_offset} maps the '
                f'{g}x{g} position grid to {tuple(grid.shape[-2:])}, not '
                f'{hw}')
        pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], 1)
        return pos.to(self.pos_embed.dtype)

    def _prepare(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """Pad (and resize) the image as documented: (B, 3, h*P, w*P)."""
        P = self.patch_size
        H, W = x.shape[-2:]
        x = F.pad(x, (0, -W % P, 0, -H % P))
        if self.input_size is not None:
            x = F.interpolate(x, size=self.input_size, mode='bilinear',
                              align_corners=False)
        return x, x.shape[-2] // P, x.shape[-1] // P

    def forward(
        self, x: torch.Tensor
    ) -> Tuple[Tuple[torch.Tensor, ...], Optional[torch.Tensor]]:
        """See the class docstring for the exact output."""
        B, _, H, W = x.shape
        x, h, w = self._prepare(x)
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(B, -1, -1), t], 1)
        t = t + self._pos_embed((h, w))
        if self.register_tokens is not None:
            t = torch.cat(
                [t[:, :1],
                 self.register_tokens.expand(B, -1, -1), t[:, 1:]], 1)
        taken = {}
        for i, blk in enumerate(self.blocks[:max(self.out_indices) + 1]):
            t = blk(t)
            if i in self.out_indices:
                taken[i] = self.norm(t)
        outs = [taken[i] for i in self.out_indices]
        skip = 1 + self.num_register_tokens
        maps = tuple(o[:, skip:].transpose(1, 2).reshape(
            B, self.embed_dims, h, w) for o in outs)  # (B, C, h, w)
        if self.depth_head is None:
            return maps, None
        depth = self.depth_head(maps, [o[:, 0] for o in outs],
                                (h * self.patch_size, w * self.patch_size))
        if self.input_size is None:
            depth = depth[..., :H, :W]
        return maps, depth
