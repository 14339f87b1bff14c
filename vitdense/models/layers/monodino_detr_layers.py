"""Layers of MonoDINO-DETR: feature fusion, depth predictor, depth-aware
decoder; and the parts in which its parent MonoDETR differs (the depth
predictor on the pyramid levels, the decoder without DAB anchors).

MonoDINO-DETR: "MonoDINO-DETR: Depth-Enhanced Monocular 3D Object Detection
Using a Vision Foundation Model" (Kim et al., IEEE IV 2025,
arXiv:2502.00315); official code https://github.com/JihyeokKim/MonoDINO-DETR
(``lib/models/monodinodetr/{monodinodetr,depthaware_transformer}.py``,
``depth_predictor/depth_anything_predictor.py``), a MonoDETR (ICCV 2023)
fork.

Differences from the official code, none of which changes a result (the
parity test compares every output with the official model):

* the widths the official code hard-codes at the 256-wide model (depth
  positional embedding 256, 128 sine features per anchor coordinate) follow
  ``embed_dims`` (``embed_dims // 2`` sine features), so any width runs;
* the decoder self-attention: the official projects ``tgt + query_pos``
  twice (``sa_qcontent_proj`` + ``sa_qpos_proj``, same for keys) and sums
  before ``nn.MultiheadAttention``'s own input projection. Linear maps of one
  input summed and composed are one linear map, so here it is mmcv's
  ``MultiheadAttention`` alone and the converter folds the four extra
  projections into its ``in_proj`` weights (the same function; trained from
  scratch, one matrix is learnt instead of a product of two); the official
  ``sa_v_proj`` is computed and discarded (``v = tgt``), so it is dropped;
* the group-wise (Group-DETR) self-attention puts the groups into the batch
  dimension for any ``num_groups`` (official: 50 queries per group
  hard-coded in training);
* no padding masks: the official model pads nothing it does not also treat
  as image (its masks are all False, its valid ratios 1), so none are built.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN, MultiheadAttention
from mmdet.models.layers import DetrTransformerEncoder
from mmdet.models.layers.transformer.utils import (MLP, coordinate_to_encoding,
                                                   inverse_sigmoid)
from mmengine.model import BaseModule
from torch import Tensor, nn

from vitdense.ops import MultiScaleDeformableAttention

__all__ = [
    'HierarchicalFeatureFusion', 'DepthPredictor', 'MonoDETRDepthPredictor',
    'DepthAwareDecoderLayer',
    'DepthAwareDecoder', 'lid_bin_values', 'box_sine_embedding'
]


class HierarchicalFeatureFusion(BaseModule):
    """ViT token maps (one stride) -> pyramid levels (the paper's
    hierarchical feature fusion block).

    Level ``i`` takes the ``i``-th map: 1x1 conv to ``mid_channels[i]`` +
    GroupNorm, a ``scales[i]`` x ``scales[i]`` stride-``scales[i]``
    transposed conv to ``embed_dims`` + GroupNorm; a level of scale 1 is a
    1x1 conv to ``embed_dims`` + GroupNorm (official ``input_proj``; the ViT-B
    setting upsamples 37x37 maps by 4/2/1 through 192/384 channels, the
    Depth-Anything-V2 DPT widths).

    Args:
        in_channels (int): ViT width.
        embed_dims (int): transformer width.
        scales (Sequence[int]): upsampling per level. Default: (4, 2, 1).
        mid_channels (Sequence[int]): width before each transposed conv (the
            entries of scale-1 levels are ignored). Default: (192, 384, 768).
        num_groups (int): GroupNorm groups. Default: 32.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int = 256,
                 scales: Sequence[int] = (4, 2, 1),
                 mid_channels: Sequence[int] = (192, 384, 768),
                 num_groups: int = 32) -> None:
        super().__init__()
        if len(mid_channels) != len(scales):
            raise ValueError(f'HierarchicalFeatureFusion: {len(scales)} '
                             f'scales but {len(mid_channels)} mid_channels')
        levels = []
        for scale, mid in zip(scales, mid_channels):
            if scale == 1:
                levels.append(
                    nn.Sequential(
                        nn.Conv2d(in_channels, embed_dims, 1),
                        nn.GroupNorm(num_groups, embed_dims)))
            else:
                levels.append(
                    nn.Sequential(
                        nn.Conv2d(in_channels, mid, 1),
                        nn.GroupNorm(num_groups, mid),
                        nn.ConvTranspose2d(mid, embed_dims, scale, scale),
                        nn.GroupNorm(num_groups, embed_dims)))
        self.levels = nn.ModuleList(levels)

    def init_weights(self) -> None:
        """Official: Xavier on the first conv of each level, zero bias."""
        for level in self.levels:
            nn.init.xavier_uniform_(level[0].weight)
            nn.init.zeros_(level[0].bias)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        """``feats``: one (B, in_channels, h, w) map per level ->
        (B, embed_dims, h * scale, w * scale) per level."""
        if len(feats) != len(self.levels):
            raise ValueError(f'HierarchicalFeatureFusion: got {len(feats)} '
                             f'feature maps for {len(self.levels)} levels')
        return [level(x) for level, x in zip(self.levels, feats)]


def lid_bin_values(num_bins: int, depth_min: float,
                   depth_max: float) -> Tensor:
    """Centres of the linear-increasing-discretisation (LID) depth bins
    (CaDDN, arXiv:2103.01100, Eq. 1) plus a last bin at ``depth_max``
    (``num_bins + 1`` values), as the official ``DepthAnythingPredictor``."""
    bin_size = 2 * (depth_max - depth_min) / (num_bins * (1 + num_bins))
    index = torch.linspace(0, num_bins - 1, num_bins)
    values = (index + 0.5).pow(2) * bin_size / 2 - bin_size / 8 + depth_min
    return torch.cat([values, torch.tensor([depth_max])])


class DepthPredictor(BaseModule):
    """Depth predictor and depth encoder fed by the relative depth of the
    DPT head (official ``DepthAnythingPredictor``).

    The relative depth, resized to the depth level, goes through a 3x3 conv
    (1 -> C) + GN + ReLU, two 3x3 conv + GN + ReLU, and a 1x1 classifier over
    ``num_depth_bins + 1`` LID bins; the weighted depth is the bin centres
    averaged under the softmax. A transformer encoder (mmdet's DETR encoder:
    post-norm self-attention with the position on queries and keys, FFN) on
    the conv features, plus a learnt depth positional embedding linearly
    interpolated at the weighted depth (``int(depth_max) + 1`` entries, one
    per metre), gives the depth embedding the decoder attends to.

    Args:
        embed_dims (int): width. Default: 256.
        num_depth_bins (int): LID bins (one more is added at ``depth_max``).
            Default: 80.
        depth_min (float): Default: 1e-3.
        depth_max (float): Default: 60.
        num_groups (int): GroupNorm groups. Default: 32.
        num_encoder_layers (int): Default: 1.
        num_heads (int): encoder heads. Default: 8.
        feedforward_channels (int): encoder FFN width. Default: 256.
        dropout (float): Default: 0.1.
    """

    #: the pyramid level whose grid and sine position the depth map takes
    #: (the last: the ViT patch grid)
    pos_level = -1

    def __init__(self,
                 embed_dims: int = 256,
                 num_depth_bins: int = 80,
                 depth_min: float = 1e-3,
                 depth_max: float = 60.,
                 num_groups: int = 32,
                 num_encoder_layers: int = 1,
                 num_heads: int = 8,
                 feedforward_channels: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.depth_max = depth_max
        # a constant of the config: not saved, so checkpoints do not carry it
        self.register_buffer(
            'depth_bin_values',
            lid_bin_values(num_depth_bins, depth_min, depth_max),
            persistent=False)
        self.input_proj = nn.Sequential(
            nn.Conv2d(1, embed_dims, 3, padding=1),
            nn.GroupNorm(num_groups, embed_dims), nn.ReLU())
        self.depth_head = nn.Sequential(
            nn.Conv2d(embed_dims, embed_dims, 3, padding=1),
            nn.GroupNorm(num_groups, embed_dims), nn.ReLU(),
            nn.Conv2d(embed_dims, embed_dims, 3, padding=1),
            nn.GroupNorm(num_groups, embed_dims), nn.ReLU())
        self.depth_classifier = nn.Conv2d(embed_dims, num_depth_bins + 1, 1)
        self.depth_encoder = DetrTransformerEncoder(
            num_layers=num_encoder_layers,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=embed_dims,
                    num_heads=num_heads,
                    attn_drop=dropout,
                    dropout_layer=dict(type='Dropout', drop_prob=dropout),
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=embed_dims,
                    feedforward_channels=feedforward_channels,
                    ffn_drop=dropout)))
        self.depth_pos_embed = nn.Embedding(int(depth_max) + 1, embed_dims)

    def interpolate_depth_embed(self, depth: Tensor) -> Tensor:
        """(B, h, w) metres -> (B, C, h, w): the depth positional embedding
        linearly interpolated between the entries of the whole metres around
        each depth (clamped to ``[0, depth_max]``)."""
        depth = depth.clamp(min=0, max=self.depth_max)
        floor = depth.floor()
        delta = (depth - floor).unsqueeze(-1)
        floor = floor.long()
        ceil = (floor + 1).clamp(max=self.depth_pos_embed.num_embeddings - 1)
        embed = self.depth_pos_embed(floor) * (1 - delta) + \
            self.depth_pos_embed(ceil) * delta
        return embed.permute(0, 3, 1, 2)

    def embed_input(self, relative_depth: Tensor,
                    size: Tuple[int, int]) -> Tensor:
        """(B, 1, H, W) relative depth -> (B, C, h, w) at the depth level's
        ``size``."""
        x = F.interpolate(
            relative_depth, size=size, mode='bilinear', align_corners=False)
        return self.input_proj(x)

    def forward(self, inputs, pos: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            inputs: what :meth:`embed_input` takes, here the (B, 1, H, W)
                DPT output.
            pos (Tensor): (B, C, h, w) sine position of the depth level.

        Returns:
            tuple: ``depth_logits`` (B, num_depth_bins + 1, h, w),
            ``depth_embed`` (B, h * w, C) and ``weighted_depth`` (B, h, w).
        """
        x = self.depth_head(self.embed_input(inputs, pos.shape[-2:]))
        depth_logits = self.depth_classifier(x)
        weighted_depth = (depth_logits.softmax(1) *
                          self.depth_bin_values.view(1, -1, 1, 1)).sum(1)
        embed = self.depth_encoder(
            query=x.flatten(2).transpose(1, 2),  # (B, h*w, C)
            query_pos=pos.flatten(2).transpose(1, 2),
            key_padding_mask=None)
        embed = embed + self.interpolate_depth_embed(weighted_depth).flatten(
            2).transpose(1, 2)
        return depth_logits, embed, weighted_depth


class MonoDETRDepthPredictor(DepthPredictor):
    """:class:`DepthPredictor` fed by the pyramid levels instead of a
    relative depth (MonoDETR, ICCV 2023, arXiv:2203.13310; official
    ``lib/models/monodetr/depth_predictor/depth_predictor.py``,
    ``DepthPredictor``).

    The input is the mean of the first three levels brought to the second
    (stride 16 of a ResNet): level 0 by a 3x3 stride-2 conv + GN
    (``downsample``), level 1 by a 1x1 conv + GN (``proj``), level 2
    bilinearly resized and a 1x1 conv + GN (``upsample``); the rest is
    :class:`DepthPredictor` (conv head, LID classifier, depth encoder, depth
    positional embedding). Arguments as :class:`DepthPredictor`.
    """

    #: the stride-16 level
    pos_level = 1

    def __init__(self, embed_dims: int = 256, num_groups: int = 32,
                 **kwargs) -> None:
        super().__init__(embed_dims, num_groups=num_groups, **kwargs)

        def conv_gn(kernel_size: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(embed_dims, embed_dims, kernel_size, stride,
                          padding=kernel_size // 2),
                nn.GroupNorm(num_groups, embed_dims))

        # replaces the relative-depth projection of DepthPredictor
        self.input_proj = nn.ModuleDict(
            dict(downsample=conv_gn(3, 2), proj=conv_gn(1),
                 upsample=conv_gn(1)))

    def embed_input(self, feats: Sequence[Tensor],
                    size: Optional[Tuple[int, int]] = None) -> Tensor:
        """Pyramid levels (B, C, h_l, w_l), at least three -> (B, C, h_1,
        w_1); ``size`` is level 1's."""
        if len(feats) < 3:
            raise ValueError('MonoDETRDepthPredictor needs at least 3 pyramid '
                             f'levels, got {len(feats)}')
        level1 = self.input_proj['proj'](feats[1])
        level2 = self.input_proj['upsample'](
            F.interpolate(
                feats[2],
                size=level1.shape[-2:],
                mode='bilinear',
                align_corners=False))
        level0 = self.input_proj['downsample'](feats[0])
        return (level0 + level1 + level2) / 3


def box_sine_embedding(boxes: Tensor, num_feats: int) -> Tensor:
    """Sine embedding of 6-d anchors (x, y, l, r, t, b) in [0, 1] ->
    ``6 * num_feats`` channels ordered y, x, l, r, t, b (official
    ``gen_sineembed_for_position``). mmdet's ``coordinate_to_encoding``
    encodes 2 or 4 coordinates as (c1, c0[, c2, c3]); (l, r, t, b) is passed
    as (r, l, t, b) so that it comes out in the official order."""
    centre = coordinate_to_encoding(boxes[..., :2], num_feats=num_feats)
    sides = coordinate_to_encoding(
        boxes[..., [3, 2, 4, 5]], num_feats=num_feats)
    return torch.cat([centre, sides], -1)


class DepthAwareDecoderLayer(BaseModule):
    """Depth-aware decoder layer (official ``DepthAwareDecoderLayer``):
    depth cross-attention -> group-wise self-attention -> multi-scale
    deformable cross-attention -> FFN, each followed by a residual and a
    LayerNorm (post-norm). mmdet's Deformable-DETR layer has no depth
    cross-attention and no groups, so the layer is composed here of mmcv's
    ``MultiheadAttention`` and ``FFN`` and vitdense's MSDA.

    Args:
        embed_dims (int): Default: 256.
        num_heads (int): Default: 8.
        feedforward_channels (int): Default: 256.
        dropout (float): Default: 0.1.
        num_levels (int): feature levels. Default: 3.
        num_points (int): sampling points per head and level. Default: 4.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 feedforward_channels: int = 256,
                 dropout: float = 0.1,
                 num_levels: int = 3,
                 num_points: int = 4) -> None:
        super().__init__()
        self.embed_dims = embed_dims

        def mha() -> MultiheadAttention:
            return MultiheadAttention(
                embed_dims,
                num_heads,
                attn_drop=dropout,
                dropout_layer=dict(type='Dropout', drop_prob=dropout),
                batch_first=True)

        self.depth_cross_attn = mha()
        self.self_attn = mha()
        self.cross_attn = MultiScaleDeformableAttention(
            embed_dims,
            num_heads,
            num_levels,
            num_points,
            dropout=dropout,
            batch_first=True)
        self.ffn = FFN(
            embed_dims, feedforward_channels, ffn_drop=dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dims) for _ in range(4))

    def forward(self, query: Tensor, query_pos: Tensor, depth_embed: Tensor,
                value: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                num_groups: int = 1) -> Tensor:
        """
        Args:
            query, query_pos (Tensor): (B, G * N, C), groups consecutive.
            depth_embed (Tensor): (B, h * w, C) depth embedding.
            value (Tensor): (B, sum(h_l * w_l), C) encoder memory.
            reference_points (Tensor): (B, G * N, num_levels, 4) boxes
                (x, y, width, height) or (..., 2) points (x, y) for the
                deformable sampling.
            spatial_shapes, level_start_index (Tensor): of the levels.
            num_groups (int): query groups G that do not see each other in
                the self-attention (Group DETR, arXiv:2207.13085).

        Returns:
            Tensor: (B, G * N, C).
        """
        bs, num_queries, dims = query.shape
        if num_queries % num_groups:
            raise ValueError(f'DepthAwareDecoderLayer: {num_queries} queries '
                             f'do not split into {num_groups} groups')
        query = self.norms[0](
            self.depth_cross_attn(query, key=depth_embed, value=depth_embed))
        # (B, G * N, C) -> (B * G, N, C): a group attends within itself
        grouped = query.reshape(bs * num_groups, -1, dims)
        grouped_pos = query_pos.reshape(bs * num_groups, -1, dims)
        query = self.self_attn(
            grouped,
            key=grouped,
            value=grouped,
            query_pos=grouped_pos,
            key_pos=grouped_pos).reshape(bs, num_queries, dims)
        query = self.norms[1](query)
        query = self.norms[2](
            self.cross_attn(
                query,
                value=value,
                query_pos=query_pos,
                reference_points=reference_points,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index))
        return self.norms[3](self.ffn(query))


class DepthAwareDecoder(BaseModule):
    """Depth-aware decoder with DAB 6-d anchors and box refinement.

    Each layer's positional query is ``ref_point_head`` (an MLP
    ``3C -> C -> C``) of the sine embedding of its 6-d anchor
    (x, y, l, r, t, b), times ``query_scale(query)`` after the first layer
    (DAB-DETR, arXiv:2201.12329). After each layer the anchor is refined,
    ``sigmoid(reg_branch(query) + inverse_sigmoid(anchor))``, and detached
    for the next layer; the 3D dimensions come from the layer's
    ``dim_branch``. No final norm, as the official decoder (mmdet's DINO
    decoder has one and 4-d anchors, hence not reused).

    Without DAB (``use_dab=False``, MonoDETR's setting) the positional query
    is given (learnt, the same in every layer) and the first layer's
    reference may be a 2-d point (x, y): the deformable sampling is then
    normalised by the level sizes and the refinement adds it to the box's
    centre only (official ``DepthAwareDecoder`` with ``use_dab=False``).

    Args:
        num_layers (int): Default: 3.
        layer_cfg (dict): arguments of :class:`DepthAwareDecoderLayer`.
        use_dab (bool): positional queries from the anchors. Default: True.
    """

    def __init__(self,
                 num_layers: int = 3,
                 layer_cfg: dict = None,
                 use_dab: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DepthAwareDecoderLayer(**(layer_cfg or {}))
            for _ in range(num_layers))
        self.num_layers = num_layers
        dims = self.layers[0].embed_dims
        self.embed_dims = dims
        self.use_dab = use_dab
        if use_dab:
            self.ref_point_head = MLP(3 * dims, dims, dims, 2)
            self.query_scale = MLP(dims, dims, dims, 2)

    def forward(self,
                query: Tensor,
                reference_points: Tensor,
                value: Tensor,
                depth_embed: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                reg_branches: nn.ModuleList,
                dim_branches: nn.ModuleList,
                num_groups: int = 1,
                query_pos: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            query (Tensor): (B, N, C) content queries.
            reference_points (Tensor): (B, N, 6) anchors in [0, 1]; without
                DAB (B, N, 2) points are accepted too.
            value, depth_embed, spatial_shapes, level_start_index: see
                :meth:`DepthAwareDecoderLayer.forward`.
            reg_branches, dim_branches (nn.ModuleList): per-layer 6-d box and
                3D-dimension heads.
            num_groups (int): query groups.
            query_pos (Tensor, optional): (B, N, C) positional queries,
                required without DAB, unused with it.

        Returns:
            tuple: per layer ``hidden_states`` (L, B, N, C), ``boxes``
            (L, B, N, 6) (refined anchors with gradient, the official
            ``pred_boxes``) and ``dims`` (L, B, N, 3).
        """
        hidden_states, boxes, dims = [], [], []
        num_levels = spatial_shapes.shape[0]
        if not self.use_dab and query_pos is None:
            raise ValueError('DepthAwareDecoder without DAB needs query_pos')
        for lid, layer in enumerate(self.layers):
            if self.use_dab:
                query_pos = self.ref_point_head(
                    box_sine_embedding(reference_points, self.embed_dims // 2))
                if lid > 0:
                    query_pos = query_pos * self.query_scale(query)
            if reference_points.shape[-1] == 2:
                sampling_boxes = reference_points
            else:
                # (x, y, l, r, t, b) -> (x, y, l + r, t + b): the official
                # sampling scales offsets by the box width and height
                sampling_boxes = torch.cat([
                    reference_points[..., :2],
                    reference_points[..., 2::2] + reference_points[..., 3::2]
                ], -1)
            sampling_boxes = sampling_boxes[:, :, None].expand(
                -1, -1, num_levels, -1)
            query = layer(query, query_pos, depth_embed, value, sampling_boxes,
                          spatial_shapes, level_start_index, num_groups)
            # a 2-d reference refines the box centre only
            anchor = F.pad(
                inverse_sigmoid(reference_points),
                (0, 6 - reference_points.shape[-1]))
            box = (reg_branches[lid](query) + anchor).sigmoid()
            hidden_states.append(query)
            boxes.append(box)
            dims.append(dim_branches[lid](query))
            reference_points = box.detach()
        return torch.stack(hidden_states), torch.stack(boxes), torch.stack(
            dims)
