"""kMaX-DeepLab pixel decoder, k-means transformer decoder and heads.

"k-means Mask Transformer" (Yu et al., ECCV 2022, arXiv:2207.04044);
official PyTorch code https://github.com/bytedance/kmax-deeplab (commit
f8e1d04): ``modeling/pixel_decoder/kmax_pixel_decoder.py`` and
``modeling/transformer_decoder/kmax_transformer_decoder.py`` (TF reference:
google-research/deeplab2 ``model/pixel_decoder/kmax.py``,
``model/layers/dual_path_transformer.py``).

Different from the official code:

* **any input size**: the official axial attention builds its relative
  position index once from ``INPUT.IMAGE_SIZE`` and so only runs at that
  padded size; here the index is computed from each input's axis length
  (:class:`RelativePositionalEncoding`), which gives the official tables at
  the official size;
* BN is plain ``BN`` by default (``SyncBN`` via ``norm_cfg``), with the
  official eps 1e-3 and momentum 0.01; the official code hard-codes SyncBN;
* the official conv bias before the BN of the pixel embedding is dropped:
  BN removes it in training; ``vitdense.converters.kmax`` folds it into the
  BN running mean, which is the same in eval.

Tensors: pixels (B, C, H, W); queries, as the official code, (B, C, N).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmcv.cnn.bricks.drop import DropPath
from mmengine.model import BaseModule
from mmseg.models.decode_heads.aspp_head import ASPPModule
from torch import Tensor, nn

__all__ = [
    'MAX_SPAN', 'RelativePositionalEncoding', 'AxialAttention',
    'AxialAttention2D', 'AxialBlock', 'BottleneckBlock', 'ResizedFuse',
    'KMaXPixelDecoder', 'KMaXPredictor', 'KMaXTransformerLayer',
    'KMaXAuxSemanticHead', 'KMaXTransformerDecoder', 'add_bias_towards_void'
]

#: official ``MAX_SPAN``: the relative-position tables hold 2 * 255 - 1 rows.
MAX_SPAN = 255
#: official BN settings (``get_norm('syncbn')``: eps 1e-3, momentum 0.01).
DEFAULT_NORM_CFG = dict(type='BN', eps=1e-3, momentum=0.01)
GELU = dict(type='GELU')


def _norm_1d(norm_cfg: dict) -> dict:
    """``norm_cfg`` for (B, C, N) tensors: ``BN`` becomes ``BN1d``
    (``SyncBN`` takes any rank)."""
    if norm_cfg.get('type') == 'BN':
        return dict(norm_cfg, type='BN1d')
    return norm_cfg


def _conv_bn(in_channels: int,
             out_channels: int,
             kernel_size: int = 1,
             norm_cfg: Optional[dict] = DEFAULT_NORM_CFG,
             act_cfg: Optional[dict] = None,
             conv1d: bool = False,
             **kwargs) -> ConvModule:
    """The official ``ConvBN``: conv -> norm -> act, mmcv's ``ConvModule``
    (a 1-D conv and 1-D norm for query tensors)."""
    if conv1d:
        kwargs['conv_cfg'] = dict(type='Conv1d')
        norm_cfg = _norm_1d(norm_cfg) if norm_cfg is not None else None
    return ConvModule(
        in_channels,
        out_channels,
        kernel_size,
        padding=kwargs.pop('padding', (kernel_size - 1) // 2),
        norm_cfg=norm_cfg,
        act_cfg=act_cfg,
        **kwargs)


def _trunc_normal_tf(tensor: Tensor, std: float) -> None:
    """timm's ``trunc_normal_tf_`` (official init): N(0, 1) cut at +-2,
    times ``std``."""
    with torch.no_grad():
        nn.init.trunc_normal_(tensor, 0.0, 1.0, -2.0, 2.0).mul_(std)


def _init_conv_bn(module: ConvModule,
                  conv_init: str = 'he_normal',
                  norm_init: float = 1.0) -> None:
    """Official ``ConvBN`` init: He-normal (std sqrt(2 / in_channels),
    truncated) or Xavier-uniform conv, zero bias, norm weight
    ``norm_init``."""
    conv = module.conv
    if conv_init == 'xavier_uniform':
        nn.init.xavier_uniform_(conv.weight)
    else:
        _trunc_normal_tf(conv.weight, math.sqrt(2.0 / conv.in_channels))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    if module.with_norm:
        nn.init.constant_(module.norm.weight, norm_init)
        nn.init.zeros_(module.norm.bias)


class _OfficialInit(BaseModule):
    """Applies, after mmengine's ``init_weights``, the official
    initialisation of every submodule that defines ``official_init()``
    (mmcv's ``ConvModule`` re-initialises itself with Kaiming init)."""

    def init_weights(self) -> None:
        super().init_weights()
        for module in self.modules():
            if hasattr(module, 'official_init'):
                module.official_init()


# ----------------------------------------------------------------------------
# pixel decoder
# ----------------------------------------------------------------------------
class RelativePositionalEncoding(nn.Module):
    """Learned 1-D relative position embeddings for an axis of length L.

    The table has ``2 * MAX_SPAN - 1`` rows (official). The official code
    fixes L at construction from ``INPUT.IMAGE_SIZE``; here the (L, L) index
    ``key - query + MAX_SPAN - 1`` is computed at every call from the axis
    length, so any size works and the official size gives the official
    tables. Distances beyond ``MAX_SPAN - 1`` (L > 255) share the last
    embedding, as TF deeplab2's ``_compute_relative_distance_matrix``.
    """

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(2 * MAX_SPAN - 1, depth)

    def official_init(self) -> None:
        _trunc_normal_tf(self.embeddings.weight, 1.0)

    def forward(self, length: int) -> Tensor:
        """(L, L, depth) embeddings of ``key - query``."""
        index = torch.arange(length, device=self.embeddings.weight.device)
        distance = index[None, :] - index[:, None] + MAX_SPAN - 1
        distance = distance.clamp(0, 2 * MAX_SPAN - 2)
        return self.embeddings(distance)


class AxialAttention(nn.Module):
    """Multi-head attention along one axis with relative positions in the
    query, key and value (Axial-DeepLab, Wang et al., ECCV 2020, Eq. 4);
    BN on the 3 similarity terms and on the 2 retrieved terms, each summed
    (official ``AxialAttention``).

    Input and output: (B', C, L), B' = batch x the other axis.
    """

    def __init__(self,
                 in_channels: int,
                 key_channels: int,
                 value_channels: int,
                 num_heads: int = 8,
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        if key_channels % num_heads or value_channels % num_heads:
            raise ValueError(
                f'kmax_layers.py: AxialAttention key_channels '
                f'({key_channels}) and value_channels ({value_channels}) '
                f'must be divisible by num_heads ({num_heads})')
        self.num_heads = num_heads
        self.key_channels = key_channels
        self.value_channels = value_channels
        qkv_channels = 2 * key_channels + value_channels
        self.qkv = nn.Conv1d(in_channels, qkv_channels, 1, bias=False)
        self.qkv_norm = build_norm_layer(_norm_1d(norm_cfg), qkv_channels)[1]
        self.query_rpe = RelativePositionalEncoding(key_channels // num_heads)
        self.key_rpe = RelativePositionalEncoding(key_channels // num_heads)
        self.value_rpe = RelativePositionalEncoding(value_channels //
                                                    num_heads)
        self.similarity_norm = build_norm_layer(norm_cfg, 3 * num_heads)[1]
        self.output_norm = build_norm_layer(
            _norm_1d(norm_cfg), 2 * value_channels)[1]

    def official_init(self) -> None:
        _trunc_normal_tf(self.qkv.weight, self.qkv.in_channels**-0.5)

    def forward(self, x: Tensor) -> Tensor:
        n, _, length = x.shape
        h = self.num_heads
        q, k, v = self.qkv_norm(self.qkv(x)).split(
            [self.key_channels, self.key_channels, self.value_channels], 1)
        q = q.reshape(n, h, -1, length)
        k = k.reshape(n, h, -1, length)
        v = v.reshape(n, h, -1, length)
        logits = torch.cat([
            torch.einsum('nhdl,nhdm->nhlm', q, k),
            torch.einsum('nhdl,lmd->nhlm', q, self.query_rpe(length)),
            torch.einsum('nhdm,lmd->nhlm', k, self.key_rpe(length))
        ], 1)  # (n, 3h, L, L)
        logits = self.similarity_norm(logits).reshape(n, 3, h, length,
                                                      length).sum(1)
        weights = logits.float().softmax(-1).to(v.dtype)
        out = torch.cat([
            torch.einsum('nhlm,nhdm->nhdl', weights, v),
            torch.einsum('nhlm,lmd->nhdl', weights, self.value_rpe(length))
        ], 1).reshape(n, 2 * self.value_channels, length)
        return self.output_norm(out).reshape(n, 2, self.value_channels,
                                             length).sum(1)


class AxialAttention2D(nn.Module):
    """Height-axis then width-axis attention (official
    ``AxialAttention2D``); (B, C, H, W) -> (B, value_channels, H, W)."""

    def __init__(self,
                 in_channels: int,
                 key_channels: int,
                 value_channels: int,
                 num_heads: int = 8,
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        self.value_channels = value_channels
        self.height_axis = AxialAttention(in_channels, key_channels,
                                          value_channels, num_heads, norm_cfg)
        self.width_axis = AxialAttention(value_channels, key_channels,
                                         value_channels, num_heads, norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        b, c, height, width = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b * width, c, height)
        x = self.height_axis(x).reshape(b, width, -1, height)
        x = x.permute(0, 3, 2, 1).reshape(b * height, -1, width)
        x = self.width_axis(x).reshape(b, height, -1, width)
        return x.permute(0, 2, 1, 3).contiguous()


class _PixelBlock(nn.Module):
    """Shared residual structure of the pixel-decoder blocks (official
    ``SingleBlock``): GELU on the input, 1x1 ConvBN-GELU, the block's middle
    op, 1x1 ConvBN (weight init 0), drop path, + (projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int,
                 mid_channels: int, mid_out_channels: int,
                 drop_path_rate: float, norm_cfg: dict) -> None:
        super().__init__()
        self.conv1 = _conv_bn(
            in_channels, mid_channels, norm_cfg=norm_cfg, act_cfg=GELU)
        self.conv3 = _conv_bn(mid_out_channels, out_channels,
                              norm_cfg=norm_cfg)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = _conv_bn(in_channels, out_channels,
                                     norm_cfg=norm_cfg)
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def official_init(self) -> None:
        _init_conv_bn(self.conv1)
        _init_conv_bn(self.conv3, norm_init=0.0)
        if self.shortcut is not None:
            _init_conv_bn(self.shortcut)

    def middle(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(x)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        x = self.conv3(self.middle(self.conv1(x)))
        return self.drop_path(x) + shortcut


class AxialBlock(_PixelBlock):
    """Axial-attention block, filters [2c, c, 4c] (deeplab2
    ``axial_block_groups``): 1x1 to 2c, axial attention with key c and
    value 2c channels, GELU, 1x1 to 4c."""

    def __init__(self,
                 in_channels: int,
                 base_channels: int,
                 num_heads: int = 8,
                 drop_path_rate: float = 0.0,
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__(in_channels, 4 * base_channels, 2 * base_channels,
                         2 * base_channels, drop_path_rate, norm_cfg)
        self.attention = AxialAttention2D(2 * base_channels, base_channels,
                                          2 * base_channels, num_heads,
                                          norm_cfg)

    def middle(self, x: Tensor) -> Tensor:
        return F.gelu(self.attention(x))


class BottleneckBlock(_PixelBlock):
    """Bottleneck block, filters [c, c, 4c]: 1x1, 3x3 ConvBN-GELU, 1x1."""

    def __init__(self,
                 in_channels: int,
                 base_channels: int,
                 num_heads: int = 8,
                 drop_path_rate: float = 0.0,
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__(in_channels, 4 * base_channels, base_channels,
                         base_channels, drop_path_rate, norm_cfg)
        self.conv2 = _conv_bn(
            base_channels, base_channels, 3, norm_cfg=norm_cfg, act_cfg=GELU)

    def official_init(self) -> None:
        super().official_init()
        _init_conv_bn(self.conv2)

    def middle(self, x: Tensor) -> Tensor:
        return self.conv2(x)


_BLOCKS = dict(axial=AxialBlock, bottleneck=BottleneckBlock)


def _resize(x: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """Bilinear resize. The official code sets ``align_corners`` from the
    parity of one size (odd sizes 2^k * n + 1 map corner to corner); each
    caller states which."""
    return F.interpolate(
        x, size=tuple(size), mode='bilinear', align_corners=align_corners)


class ResizedFuse(nn.Module):
    """Fuse a low-resolution decoder feature into a high-resolution skip
    (deeplab2 ``ResizedFuse``): each input not already at ``out_channels``
    goes through GELU and a 1x1 ConvBN; the low one is bilinearly resized;
    the two are added."""

    def __init__(self,
                 low_channels: int,
                 high_channels: int,
                 out_channels: int,
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        self.low_proj = None
        self.high_proj = None
        if low_channels != out_channels:
            self.low_proj = _conv_bn(low_channels, out_channels,
                                     norm_cfg=norm_cfg)
        if high_channels != out_channels:
            self.high_proj = _conv_bn(high_channels, out_channels,
                                      norm_cfg=norm_cfg)

    def official_init(self) -> None:
        for proj in (self.low_proj, self.high_proj):
            if proj is not None:
                _init_conv_bn(proj)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        if self.low_proj is not None:
            low = self.low_proj(F.gelu(low))
        low = _resize(low, high.shape[-2:], low.shape[-1] % 2 == 1)
        if self.high_proj is not None:
            high = self.high_proj(F.gelu(high))
        return low + high


class KMaXPixelDecoder(_OfficialInit):
    """kMaX pixel decoder (official ``kMaXPixelDecoder``).

    From the coarsest backbone level down: LayerNorm (channels, eps 1e-6)
    on every backbone input, a block group per level, and
    :class:`ResizedFuse` into the next level. Defaults are the official
    COCO R50 ones: axial blocks at strides 32 and 16, bottleneck blocks at
    8 and 4, base channels 512/256/128/64, outputs 2048/1024/512/256.

    Args:
        in_channels (Sequence[int]): backbone channels, finest level first
            (mmdet order; e.g. ResNet-50 (256, 512, 1024, 2048)).
        num_blocks, base_channels, block_types (Sequence): per level,
            coarsest first. Output channels are 4 x ``base_channels``.
        num_heads (int): axial-attention heads. Defaults to 8.
        drop_path_rate (float): of every block. Defaults to 0.
        norm_cfg (dict): defaults to BN, eps 1e-3, momentum 0.01.

    Returns of ``forward``: the list of decoder outputs, coarsest first
    (stride 32, 16, 8, 4 for the defaults).
    """

    def __init__(self,
                 in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 num_blocks: Sequence[int] = (1, 5, 1, 1),
                 base_channels: Sequence[int] = (512, 256, 128, 64),
                 block_types: Sequence[str] = ('axial', 'axial',
                                               'bottleneck', 'bottleneck'),
                 num_heads: int = 8,
                 drop_path_rate: float = 0.0,
                 norm_cfg: dict = DEFAULT_NORM_CFG,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        levels = len(in_channels)
        if not levels == len(num_blocks) == len(base_channels) == len(
                block_types):
            raise ValueError(
                'kmax_layers.py: KMaXPixelDecoder needs one num_blocks, '
                'base_channels and block_types entry per backbone level; '
                f'got {len(in_channels)} in_channels, {len(num_blocks)}, '
                f'{len(base_channels)}, {len(block_types)}')
        unknown = set(block_types) - set(_BLOCKS)
        if unknown:
            raise ValueError(f'kmax_layers.py: unknown block types {unknown}'
                             f'; expected {sorted(_BLOCKS)}')
        top_down = list(in_channels)[::-1]
        self.in_norms = nn.ModuleList(
            nn.LayerNorm(c, eps=1e-6) for c in top_down)
        self.stages = nn.ModuleList()
        self.fuses = nn.ModuleList()
        for i in range(levels):
            inplanes = top_down[0] if i == 0 else base_channels[i]
            blocks = []
            for _ in range(num_blocks[i]):
                blocks.append(_BLOCKS[block_types[i]](
                    inplanes, base_channels[i], num_heads, drop_path_rate,
                    norm_cfg))
                inplanes = 4 * base_channels[i]
            self.stages.append(nn.Sequential(*blocks))
            if i > 0:
                self.fuses.append(
                    ResizedFuse(4 * base_channels[i - 1], top_down[i],
                                base_channels[i], norm_cfg))
        self.out_channels = [4 * c for c in base_channels]

    def _in_norm(self, i: int, x: Tensor) -> Tensor:
        return self.in_norms[i](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        feats = list(feats)[::-1]  # coarsest first
        x = self._in_norm(0, feats[0])
        outs = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.fuses[i - 1](x, self._in_norm(i, feats[i]))
            x = stage(x)
            outs.append(x)
        return outs


# ----------------------------------------------------------------------------
# transformer decoder
# ----------------------------------------------------------------------------
def add_bias_towards_void(class_logits: Tensor,
                          void_prior_prob: float = 0.9) -> Tensor:
    """Add log((C - 1) p / (1 - p)) to the last (void) logit (deeplab2
    MaX-DeepLab decoder): every query starts predicting void with prob p."""
    bias = torch.zeros(class_logits.shape[-1], dtype=class_logits.dtype,
                       device=class_logits.device)
    bias[-1] = math.log((class_logits.shape[-1] - 1) * void_prior_prob /
                        (1 - void_prior_prob))
    return class_logits + bias


class KMaXPredictor(nn.Module):
    """Class and mask logits of queries against pixels (official
    ``kMaXPredictor``).

    Pixels: dw 5x5 ConvBN-GELU -> 1x1 ConvBN-GELU (``hidden_channels``) ->
    1x1 ConvBN (``embed_channels``) -> L2 normalised. Queries: 1x1
    ConvBN1d to the mask kernel, 1x1 Conv1d to the class logits (+ void
    bias). Mask logits = <pixel, kernel> -> BN with one channel (weight
    init 0.1).

    Returns of ``forward``: dict ``class_logits`` (B, N, C + 1),
    ``mask_logits`` (B, N, H, W), ``pixel_feature`` (B, embed, H, W).
    """

    def __init__(self,
                 in_channels: int,
                 query_channels: int = 256,
                 num_classes: int = 134,
                 hidden_channels: int = 256,
                 embed_channels: int = 128,
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        self.pixel_dw = _conv_bn(
            in_channels,
            in_channels,
            5,
            groups=in_channels,
            norm_cfg=norm_cfg,
            act_cfg=GELU)
        self.pixel_conv1 = _conv_bn(
            in_channels, hidden_channels, norm_cfg=norm_cfg, act_cfg=GELU)
        self.pixel_conv2 = _conv_bn(
            hidden_channels, embed_channels, norm_cfg=norm_cfg)
        self.mask_head = _conv_bn(
            query_channels, embed_channels, norm_cfg=norm_cfg, conv1d=True)
        self.class_head = nn.Conv1d(query_channels, num_classes, 1)
        self.mask_norm = build_norm_layer(norm_cfg, 1)[1]

    def official_init(self) -> None:
        _init_conv_bn(self.pixel_dw, 'xavier_uniform')
        _init_conv_bn(self.pixel_conv1)
        _init_conv_bn(self.pixel_conv2)
        _trunc_normal_tf(self.pixel_conv2.conv.weight, 0.01)
        _init_conv_bn(self.mask_head)
        _trunc_normal_tf(self.class_head.weight, 0.01)
        nn.init.zeros_(self.class_head.bias)
        nn.init.constant_(self.mask_norm.weight, 0.1)
        nn.init.zeros_(self.mask_norm.bias)

    def forward(self, mask_embeddings: Tensor, class_embeddings: Tensor,
                pixel_feature: Tensor) -> Dict[str, Tensor]:
        pixel = self.pixel_dw(pixel_feature)
        pixel = self.pixel_conv2(self.pixel_conv1(pixel))
        pixel = F.normalize(pixel, p=2, dim=1)
        class_logits = add_bias_towards_void(
            self.class_head(class_embeddings).transpose(1, 2))
        kernel = self.mask_head(mask_embeddings)  # (B, embed, N)
        mask_logits = torch.einsum('bchw,bcn->bnhw', pixel, kernel)
        b, n, height, width = mask_logits.shape
        # BN over one channel holding every (query, pixel) logit
        mask_logits = self.mask_norm(mask_logits.reshape(
            b, 1, n * height, width)).reshape(b, n, height, width)
        return dict(
            class_logits=class_logits,
            mask_logits=mask_logits,
            pixel_feature=pixel)


class _QuerySelfAttention(nn.Module):
    """Multi-head self-attention of the queries with BN on the logits and
    BN + GELU on the output (official ``AttentionOperation``)."""

    def __init__(self, value_channels: int, num_heads: int,
                 norm_cfg: dict) -> None:
        super().__init__()
        self.similarity_norm = build_norm_layer(norm_cfg, num_heads)[1]
        self.value_norm = build_norm_layer(
            _norm_1d(norm_cfg), value_channels)[1]

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q, k, v: (B, heads, d, N) -> (B, heads x d_v, N)."""
        b, _, _, n = q.shape
        logits = self.similarity_norm(torch.einsum('bhdl,bhdm->bhlm', q, k))
        weights = logits.float().softmax(-1).to(v.dtype)
        out = torch.einsum('bhlm,bhdm->bhdl', weights, v).reshape(b, -1, n)
        return F.gelu(self.value_norm(out))


class KMaXTransformerLayer(nn.Module):
    """One kMaX layer (official ``kMaXTransformerLayer``; paper Eq. 5-6).

    1. pixel space: GELU -> 1x1 ConvBN-GELU to ``query_channels``; query
       space: 1x1 ConvBN1d-GELU;
    2. k-means assignment: :class:`KMaXPredictor` mask logits, arg-max over
       the queries per pixel, one-hot, without gradient;
    3. k-means update: the **sum** of the assigned pixels' values -> BN ->
       ConvBN1d (weight init 0) -> drop path, added to the queries;
    4. self-attention whose q/k/v come from the query space of step 1
       (before the update, as official and deeplab2) -> ConvBN1d (init 0)
       -> drop path, added; GELU;
    5. FFN ``query_channels`` -> ``ffn_channels`` (GELU) -> back (BN init 0),
       added; GELU.

    Returns of ``forward``: the updated queries (B, C, N) and the
    predictor's dict of step 2 (used for deep supervision).
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 query_channels: int = 256,
                 key_channels: int = 128,
                 ffn_channels: int = 2048,
                 embed_channels: int = 128,
                 num_heads: int = 8,
                 drop_path_rate: float = 0.0,
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        if key_channels % num_heads or query_channels % num_heads:
            raise ValueError(
                f'kmax_layers.py: key_channels ({key_channels}) and '
                f'query_channels ({query_channels}) must be divisible by '
                f'num_heads ({num_heads})')
        self.num_heads = num_heads
        self.key_channels = key_channels
        self.value_channels = query_channels
        c = query_channels
        self.query_conv1 = _conv_bn(
            c, c, norm_cfg=norm_cfg, act_cfg=GELU, conv1d=True)
        self.pixel_conv1 = _conv_bn(
            in_channels, c, norm_cfg=norm_cfg, act_cfg=GELU)
        self.query_qkv = _conv_bn(
            c, 2 * key_channels + c, norm_cfg=norm_cfg, conv1d=True)
        self.pixel_v = _conv_bn(c, c, norm_cfg=norm_cfg)
        self.self_attn = _QuerySelfAttention(c, num_heads, norm_cfg)
        self.query_conv3 = _conv_bn(c, c, norm_cfg=norm_cfg, conv1d=True)
        self.ffn = nn.Sequential(
            _conv_bn(c, ffn_channels, norm_cfg=norm_cfg, act_cfg=GELU,
                     conv1d=True),
            _conv_bn(ffn_channels, c, norm_cfg=norm_cfg, conv1d=True))
        self.predictor = KMaXPredictor(c, c, num_classes, c, embed_channels,
                                       norm_cfg)
        self.kmeans_value_norm = build_norm_layer(_norm_1d(norm_cfg), c)[1]
        self.kmeans_conv3 = _conv_bn(c, c, norm_cfg=norm_cfg, conv1d=True)
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def official_init(self) -> None:
        std = self.value_channels**-0.5
        for m in (self.query_conv1, self.pixel_conv1, self.query_qkv,
                  self.pixel_v, self.ffn[0]):
            _init_conv_bn(m)
        _trunc_normal_tf(self.query_qkv.conv.weight, std)
        _trunc_normal_tf(self.pixel_v.conv.weight, std)
        for m in (self.query_conv3, self.ffn[1], self.kmeans_conv3):
            _init_conv_bn(m, norm_init=0.0)

    def forward(self, pixel_feature: Tensor,
                query: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        b, _, height, width = pixel_feature.shape
        n = query.shape[-1]
        pixel_space = self.pixel_conv1(F.gelu(pixel_feature))
        query_space = self.query_conv1(query)  # (B, C, N)
        pixel_value = self.pixel_v(pixel_space).reshape(
            b, self.value_channels, height * width)
        prediction = self.predictor(query_space, query_space, pixel_space)
        with torch.no_grad():  # k-means assignment: one-hot arg-max cluster
            logits = prediction['mask_logits'].detach().flatten(2)
            assignment = torch.zeros_like(logits).scatter_(
                1, logits.argmax(1, keepdim=True), 1.0)  # (B, N, HW)
        update = torch.einsum('bnm,bdm->bdn', assignment.float(),
                              pixel_value.float()).to(query.dtype)
        update = self.kmeans_conv3(self.kmeans_value_norm(update))
        query = query + self.drop_path(update)

        qkv = self.query_qkv(query_space)
        q, k, v = qkv.split(
            [self.key_channels, self.key_channels, self.value_channels], 1)
        h = self.num_heads
        attn = self.self_attn(
            q.reshape(b, h, -1, n), k.reshape(b, h, -1, n),
            v.reshape(b, h, -1, n))
        query = F.gelu(query + self.drop_path(self.query_conv3(attn)))
        query = F.gelu(query + self.drop_path(self.ffn(query)))
        return query, prediction


class KMaXAuxSemanticHead(nn.Module):
    """Auxiliary semantic head on backbone features (official
    ``SemanticPredictor``, Panoptic-DeepLab's single decoder and head).

    ASPP on the stride-32 feature (1x1 and three dilated 3x3 branches via
    mmseg's ``ASPPModule``, image pooling, 1x1 projection, dropout 0.1 --
    mmseg's ``ASPPHead`` itself projects with a 3x3 conv), then two fusion
    steps with the stride-8 (64 ch) and stride-4 (32 ch) features, each dw
    5x5 -> 1x1 ConvBN-GELU, and dw 5x5 -> 1x1 -> classifier.

    Returns of ``forward``: (B, num_classes, H/4, W/4) logits.
    """

    def __init__(self,
                 in_channels: int,
                 os8_channels: int,
                 os4_channels: int,
                 num_classes: int,
                 channels: int = 256,
                 dilations: Sequence[int] = (6, 12, 18),
                 norm_cfg: dict = DEFAULT_NORM_CFG) -> None:
        super().__init__()
        conv = dict(norm_cfg=norm_cfg, act_cfg=GELU)
        self.aspp = ASPPModule((1, *dilations), in_channels, channels, None,
                               norm_cfg, GELU)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), _conv_bn(in_channels, channels, **conv))
        self.aspp_project = _conv_bn((len(dilations) + 2) * channels,
                                     channels, **conv)
        self.dropout = nn.Dropout(0.1)
        self.proj_os8 = _conv_bn(os8_channels, 64, **conv)
        self.fuse_os8 = self._fuse(channels + 64, channels, conv)
        self.proj_os4 = _conv_bn(os4_channels, 32, **conv)
        self.fuse_os4 = self._fuse(channels + 32, channels, conv)
        self.head = self._fuse(channels, channels, conv)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    @staticmethod
    def _fuse(in_channels: int, out_channels: int,
              conv: dict) -> nn.Sequential:
        """dw 5x5 ConvBN-GELU -> 1x1 ConvBN-GELU."""
        return nn.Sequential(
            _conv_bn(in_channels, in_channels, 5, groups=in_channels, **conv),
            _conv_bn(in_channels, out_channels, **conv))

    def official_init(self) -> None:
        for m in self.modules():
            if isinstance(m, ConvModule):
                xavier = m.conv.groups > 1
                _init_conv_bn(m, 'xavier_uniform' if xavier else 'he_normal')
        _trunc_normal_tf(self.classifier.weight, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor, os8: Tensor, os4: Tensor) -> Tensor:
        pooled = _resize(
            self.image_pool(x), x.shape[-2:], x.shape[-1] % 2 == 1)
        x = torch.cat([*self.aspp(x), pooled], 1)
        x = self.dropout(self.aspp_project(x))
        align = x.shape[-1] % 2 == 1  # both resizes: the ASPP width
        os8 = self.proj_os8(os8)
        x = _resize(x, os8.shape[-2:], align)
        x = self.fuse_os8(torch.cat([x, os8], 1))
        os4 = self.proj_os4(os4)
        x = _resize(x, os4.shape[-2:], align)
        x = self.fuse_os4(torch.cat([x, os4], 1))
        return self.classifier(self.head(x))


class KMaXTransformerDecoder(_OfficialInit):
    """kMaX transformer decoder (official ``kMaXTransformerDecoder``).

    Learned cluster centres (``query_channels`` x ``num_queries``, an
    ``nn.Embedding`` as official) go through ``num_layers[i]`` kMaX layers
    on each of the pixel-decoder outputs (strides 32, 16, 8 by default);
    then ConvBN1d-GELU class and mask projections and a
    :class:`KMaXPredictor` on the stride-4 ``panoptic_feature``.

    Args:
        in_channels (Sequence[int]): channels of the pixel-decoder outputs
            the layers read, then of the final (stride 4) one.
        num_classes (int): classes without void (void is added last).
        num_layers (Sequence[int]): kMaX layers per stride. (2, 2, 2).
        num_queries (int): defaults to 128.
        aux_semantic_channels (Sequence[int], optional): backbone channels
            at strides 32, 8, 4 for :class:`KMaXAuxSemanticHead`; None
            builds no aux semantic head.
        aux_semantic_decoder (bool): the aux head is
            :class:`KMaXAuxSemanticHead` (official default); False: the
            official ``USE_AUX_SEMANTIC_DECODER: False`` (Cityscapes) head
            on the stride-32 feature only, dw 5x5 ConvBN-GELU -> 1x1
            ConvBN-GELU (256) -> 1x1 conv to ``num_classes`` (no void
            column, as official), output at stride 32.
        query_channels, key_channels, ffn_channels, embed_channels,
        num_heads: official 256, 128, 2048, 128, 8.
        drop_path_rate (float): of every kMaX layer. Defaults to 0.
        norm_cfg (dict): defaults to BN, eps 1e-3, momentum 0.01.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (2048, 1024, 512, 256),
                 num_classes: int = 133,
                 num_layers: Sequence[int] = (2, 2, 2),
                 num_queries: int = 128,
                 aux_semantic_channels: Optional[Sequence[int]] = (2048, 512,
                                                                   256),
                 query_channels: int = 256,
                 key_channels: int = 128,
                 ffn_channels: int = 2048,
                 embed_channels: int = 128,
                 num_heads: int = 8,
                 drop_path_rate: float = 0.0,
                 norm_cfg: dict = DEFAULT_NORM_CFG,
                 aux_semantic_decoder: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if len(in_channels) != len(num_layers) + 1:
            raise ValueError(
                'kmax_layers.py: KMaXTransformerDecoder in_channels needs '
                'one entry per num_layers stage plus the final (stride 4) '
                f'feature; got {list(in_channels)} and {list(num_layers)}')
        self.num_layers = list(num_layers)
        self.num_classes = num_classes
        self.layers = nn.ModuleList()
        for channels, count in zip(in_channels, num_layers):
            for _ in range(count):
                self.layers.append(
                    KMaXTransformerLayer(channels, num_classes + 1,
                                         query_channels, key_channels,
                                         ffn_channels, embed_channels,
                                         num_heads, drop_path_rate, norm_cfg))
        self.cluster_centers = nn.Embedding(query_channels, num_queries)
        self.class_proj = _conv_bn(
            query_channels, query_channels, norm_cfg=norm_cfg, act_cfg=GELU,
            conv1d=True)
        self.mask_proj = _conv_bn(
            query_channels, query_channels, norm_cfg=norm_cfg, act_cfg=GELU,
            conv1d=True)
        self.predictor = KMaXPredictor(in_channels[-1], query_channels,
                                       num_classes + 1, query_channels,
                                       embed_channels, norm_cfg)
        self.aux_semantic_head = None
        self.aux_semantic_decoder = aux_semantic_decoder
        if aux_semantic_channels is not None and aux_semantic_decoder:
            self.aux_semantic_head = KMaXAuxSemanticHead(
                *aux_semantic_channels, num_classes + 1, norm_cfg=norm_cfg)
        elif aux_semantic_channels is not None:
            c = aux_semantic_channels[0]
            self.aux_semantic_head = nn.Sequential(
                _conv_bn(c, c, 5, groups=c, norm_cfg=norm_cfg, act_cfg=GELU),
                _conv_bn(c, 256, norm_cfg=norm_cfg, act_cfg=GELU),
                nn.Conv2d(256, num_classes, 1))

    def official_init(self) -> None:
        _trunc_normal_tf(self.cluster_centers.weight, 1.0)
        _init_conv_bn(self.class_proj)
        _init_conv_bn(self.mask_proj)
        if isinstance(self.aux_semantic_head, nn.Sequential):
            _init_conv_bn(self.aux_semantic_head[0], 'xavier_uniform')
            _init_conv_bn(self.aux_semantic_head[1])
            _trunc_normal_tf(self.aux_semantic_head[2].weight, 0.01)
            nn.init.zeros_(self.aux_semantic_head[2].bias)

    def aux_semantic(self, semantic_features: Sequence[Tensor]) -> Tensor:
        """The aux semantic logits from the backbone features at strides
        32, 8 and 4 (official: computed in training only)."""
        if self.aux_semantic_decoder:
            return self.aux_semantic_head(*semantic_features)
        return self.aux_semantic_head(semantic_features[0])

    def forward(self,
                multi_scale_features: Sequence[Tensor],
                panoptic_feature: Tensor,
                semantic_features: Optional[Sequence[Tensor]] = None
                ) -> Dict:
        """Official output dict: ``pred_logits`` (B, N, C + 1),
        ``pred_masks`` (B, N, H/4, W/4), ``pixel_feature`` (B, 128, H/4,
        W/4), ``aux_outputs`` (one dict of the same three keys per kMaX
        layer, resized to the final size), and in training with an aux head
        and ``semantic_features`` (backbone strides 32, 8, 4)
        ``aux_semantic_pred`` (B, C + 1, H/4, W/4; see
        ``aux_semantic_decoder`` for the other head)."""
        b = panoptic_feature.shape[0]
        query = self.cluster_centers.weight.unsqueeze(0).repeat(b, 1, 1)
        predictions = []
        layers = iter(self.layers)
        for feature, count in zip(multi_scale_features, self.num_layers):
            for _ in range(count):
                query, prediction = next(layers)(feature, query)
                predictions.append(prediction)
        final = self.predictor(
            self.mask_proj(query), self.class_proj(query), panoptic_feature)
        size = final['mask_logits'].shape[-2:]
        align = size[0] % 2 == 1  # official: parity of the final height
        out = dict(
            pred_logits=final['class_logits'],
            pred_masks=final['mask_logits'],
            pixel_feature=final['pixel_feature'],
            aux_outputs=[
                dict(
                    pred_logits=p['class_logits'],
                    pred_masks=_resize(p['mask_logits'], size, align),
                    pixel_feature=_resize(p['pixel_feature'], size, align))
                for p in predictions
            ])
        if (self.training and self.aux_semantic_head is not None
                and semantic_features is not None):
            out['aux_semantic_pred'] = self.aux_semantic(semantic_features)
        return out
