"""Transformer layers of Relation-DETR on top of mmdet 3.x's DINO layers.

Relation-DETR: "Relation DETR: Exploring Explicit Position Relation Prior for
Object Detection" (Hou et al., ECCV 2024, arXiv:2407.11699); official code
https://github.com/xiuqhou/Relation-DETR
(``models/bricks/relation_transformer.py``).

What is added to mmdet's deformable encoder / DINO decoder:

* encoder **memory fusion**: the encoder input and every layer output are
  concatenated and fused by Linear -> ReLU -> Linear -> LayerNorm;
* decoder **position relation**: from the second layer on, the self-attention
  gets an additive per-head bias encoding the pairwise geometry between the
  boxes of the previous and the current layer (``vitdense.ops``), with the
  denoising-group mask filled with ``-inf``; one embedding shared by all
  layers;
* decoder ``query_scale`` on the positional query (layers > 0), as the
  official decoder does;
* the sine encoding of reference boxes uses ``embed_dims // 2`` features per
  coordinate, as the official DINO and Relation-DETR decoders
  (``get_sine_pos_embed(reference_points, embed_dim // 2)``); mmdet 3.3
  hard-codes 128, which breaks every width but 256. With ``relation`` and
  ``query_scale`` off the decoder is mmdet's DINO decoder at any width
  (``vitdense.models.detectors.AnyWidthDINO``).
"""
from typing import Optional, Tuple

import torch
from mmdet.models.layers import (DeformableDetrTransformerEncoder,
                                 DinoTransformerDecoder)
from mmdet.models.layers.transformer.utils import (MLP, coordinate_to_encoding,
                                                   inverse_sigmoid)
from torch import Tensor, nn

from vitdense.ops import PositionRelationEmbedding

# The official code clamps with eps=1e-3 in every inverse sigmoid of the
# decoder and the prediction heads.
INVERSE_SIGMOID_EPS = 1e-3


class RelationDetrTransformerEncoder(DeformableDetrTransformerEncoder):
    """Deformable encoder whose output fuses the input and all layer outputs.

    Args:
        memory_fusion (bool): fuse ``[input, out_1, ..., out_L]`` (concatenated
            on channels) with Linear -> ReLU -> Linear -> LayerNorm. Without
            it this is mmdet's ``DeformableDetrTransformerEncoder``.
        *args, **kwargs: as ``DeformableDetrTransformerEncoder``.
    """

    def __init__(self, *args, memory_fusion: bool = True, **kwargs) -> None:
        self.with_memory_fusion = memory_fusion
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.with_memory_fusion:
            dims = self.embed_dims
            self.memory_fusion = nn.Sequential(
                nn.Linear((self.num_layers + 1) * dims, dims),
                nn.ReLU(inplace=True), nn.Linear(dims, dims),
                nn.LayerNorm(dims))

    def forward(self, query: Tensor, query_pos: Tensor,
                key_padding_mask: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, valid_ratios: Tensor,
                **kwargs) -> Tensor:
        if not self.with_memory_fusion:
            return super().forward(query, query_pos, key_padding_mask,
                                   spatial_shapes, level_start_index,
                                   valid_ratios, **kwargs)
        reference_points = self.get_encoder_reference_points(
            spatial_shapes, valid_ratios, device=query.device)
        outputs = [query]
        for layer in self.layers:
            query = layer(
                query=query,
                query_pos=query_pos,
                key_padding_mask=key_padding_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=reference_points,
                **kwargs)
            outputs.append(query)
        # (B, HW, (L + 1) * C) -> (B, HW, C)
        return self.memory_fusion(torch.cat(outputs, -1))


class RelationDetrTransformerDecoder(DinoTransformerDecoder):
    """DINO decoder with the progressive position-relation attention bias.

    Args:
        relation (bool): add the position-relation bias to the self-attention
            of layers 1..L-1. Defaults to True.
        query_scale (bool): multiply the positional query of layers > 0 by
            ``MLP(query)`` (official Relation-DETR decoder). mmdet's DINO
            decoder has none. Defaults to True.
        relation_cfg (dict): arguments of
            :class:`vitdense.ops.PositionRelationEmbedding` besides
            ``num_heads`` (taken from the self-attention).
        *args, **kwargs: as ``DinoTransformerDecoder``.
    """

    def __init__(self,
                 *args,
                 relation: bool = True,
                 query_scale: bool = True,
                 relation_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        self.with_relation = relation
        self.with_query_scale = query_scale
        self.relation_cfg = dict(
            embed_dim=16, temperature=10000., scale=100.)
        self.relation_cfg.update(relation_cfg or {})
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.with_query_scale:
            self.query_scale = MLP(self.embed_dims, self.embed_dims,
                                   self.embed_dims, 2)
        if self.with_relation:
            num_heads = self.layers[0].self_attn.num_heads
            self.position_relation_embedding = PositionRelationEmbedding(
                num_heads=num_heads, **self.relation_cfg)

    def relation_bias(self, src_boxes: Tensor, tgt_boxes: Tensor,
                      self_attn_mask: Optional[Tensor]) -> Tensor:
        """Per-head additive self-attention bias, ``(B * heads, N, N)``.

        Entries blocked by the boolean denoising mask become ``-inf``.
        """
        return self.position_relation_embedding(
            src_boxes, tgt_boxes, blocked=self_attn_mask).flatten(0, 1)

    def forward(self,
                query: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                self_attn_mask: Optional[Tensor],
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: nn.ModuleList,
                skip_relation: bool = False,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode; returns normed hidden states ``(L, B, N, C)`` and the
        references ``(L + 1, B, N, 4)`` (initial + per layer, not detached:
        look forward twice).

        ``self_attn_mask`` is the boolean denoising mask ``(N, N)`` (True =
        blocked) or None; ``skip_relation=True`` decodes without the relation
        bias (the hybrid branch).
        """
        intermediate = []
        intermediate_reference_points = [reference_points]
        valid_scale = torch.cat([valid_ratios, valid_ratios], -1)[:, None]
        attn_mask = self_attn_mask
        src_boxes = reference_points
        use_relation = self.with_relation and not skip_relation
        for lid, layer in enumerate(self.layers):
            reference_points_input = reference_points[:, :, None] * valid_scale
            query_sine_embed = coordinate_to_encoding(
                reference_points_input[:, :, 0, :],
                num_feats=self.embed_dims // 2)
            query_pos = self.ref_point_head(query_sine_embed)
            if self.with_query_scale and lid > 0:
                query_pos = query_pos * self.query_scale(query)

            query = layer(
                query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                self_attn_mask=attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=reference_points_input,
                **kwargs)
            hidden_state = self.norm(query)
            ref_unact = inverse_sigmoid(
                reference_points, eps=INVERSE_SIGMOID_EPS)
            new_reference_points = (reg_branches[lid](query) +
                                    ref_unact).sigmoid()
            intermediate.append(hidden_state)
            intermediate_reference_points.append(new_reference_points)

            if use_relation and lid < self.num_layers - 1:
                # the boxes this layer predicts (what the head outputs);
                # the relation encoding takes no gradient from them
                with torch.no_grad():
                    tgt_boxes = (reg_branches[lid](hidden_state) +
                                 ref_unact).sigmoid()
                attn_mask = self.relation_bias(src_boxes, tgt_boxes,
                                               self_attn_mask)
                src_boxes = tgt_boxes
            reference_points = new_reference_points.detach()

        return torch.stack(intermediate), torch.stack(
            intermediate_reference_points)
