"""Relation-DETR and "DINO + relation" on mmdet 3.x.

Relation-DETR: "Relation DETR: Exploring Explicit Position Relation Prior for
Object Detection" (Hou et al., ECCV 2024, arXiv:2407.11699); official code
https://github.com/xiuqhou/Relation-DETR
(``models/detectors/relation_detr.py``,
``models/bricks/relation_transformer.py``).

Built from mmdet's DINO (CDN denoising, two-stage mixed query selection with
0.05 * 2**lvl proposals, look-forward-twice refinement, Hungarian matching);
the additions live in ``vitdense.models.layers.relation_detr_layers`` (memory
fusion, position relation) and ``vitdense.models.dense_heads.
relation_detr_head`` (IoU-aware varifocal loss, hybrid losses). Different from
the official code: images are resized by the config's test pipeline
(``ResizeShortestEdgeTrunc``, the official ``EvalResize`` rule: sizes
truncated, antialiased bilinear on uint8) and normalised and padded by its
``DetDataPreprocessor`` instead of inside the model (official
``BaseDetector.preprocess_image``). The official model always zero-pads the
normalised batch to a multiple of 32 and masks the padding; the padding
changes the feature maps, so the COCO configs set ``pad_size_divisor=32``
(with 1, converted official weights give outputs off by more than 1 on a
185x250 image). A batch without padded pixels carries no mask, as in mmdet's
DINO, which equals the official all-valid mask. Official and HF transformers
checkpoints are converted by :mod:`vitdense.converters.relation_detr`.
"""
from typing import Dict, Optional, Tuple

import torch
from mmdet.structures import OptSampleList
from torch import Tensor, nn

from vitdense.models.detectors.dino import AnyWidthDINO
from vitdense.models.layers.relation_detr_layers import \
    RelationDetrTransformerEncoder
from vitdense.registry import MODELS


@MODELS.register_module()
class RelationDINO(AnyWidthDINO):
    """mmdet's DINO with the position-relation attention bias plugged in.

    This is the paper's "DINO + relation": a standard mmdet DINO config with
    ``type='RelationDINO'`` (``decoder.relation=True`` by default; the
    decoder's ``query_scale`` is off here, as in DINO). With
    ``decoder.relation=False`` it is :class:`AnyWidthDINO`.
    """

    def __init__(self, *args, decoder: dict, **kwargs) -> None:
        decoder = {'relation': True, **decoder}
        super().__init__(*args, decoder=decoder, **kwargs)


@MODELS.register_module()
class RelationDETR(RelationDINO):
    """Relation-DETR: DINO + memory fusion + position relation + hybrid
    one-to-many branch + IoU-aware varifocal loss.

    Args:
        num_hybrid_queries (int): queries of the training-only hybrid branch
            (their own encoder heads and top-k, the same decoder without the
            relation bias, ground truth repeated ``bbox_head.hybrid_assign``
            times). 0 disables the branch. Defaults to 1500.
        *args, **kwargs: as mmdet's ``DINO`` (``decoder.query_scale`` defaults
            to True here, as in the official decoder).
    """

    def __init__(self,
                 *args,
                 decoder: dict,
                 num_hybrid_queries: int = 1500,
                 **kwargs) -> None:
        self.num_hybrid_queries = num_hybrid_queries
        decoder = dict(decoder)
        decoder.setdefault('query_scale', True)
        super().__init__(*args, decoder=decoder, **kwargs)
        if num_hybrid_queries > 0:
            assert self.bbox_head.hybrid_assign > 0, \
                'the hybrid branch needs bbox_head.hybrid_assign > 0'

    def _build_encoder(self, cfg: dict) -> nn.Module:
        return RelationDetrTransformerEncoder(**cfg)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.num_hybrid_queries > 0:
            self.hybrid_query_embedding = nn.Embedding(
                self.num_hybrid_queries, self.embed_dims)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.normal_(self.query_embedding.weight)
        if self.num_hybrid_queries > 0:
            nn.init.normal_(self.hybrid_query_embedding.weight)

    @staticmethod
    def _select_topk(cls_branch: nn.Module, reg_branch: nn.Module,
                     output_memory: Tensor, output_proposals: Tensor,
                     k: int) -> Tuple[Tensor, Tensor]:
        """Top-k encoder proposals: logits ``(B, k, C)``, boxes ``(B, k, 4)``
        (cxcywh, not sigmoid-ed). ``k`` is capped at the number of encoder
        tokens, as in the official code, so small images work."""
        enc_class = cls_branch(output_memory)
        enc_coord_unact = reg_branch(output_memory) + output_proposals
        k = min(k, output_memory.size(1))
        topk = torch.topk(enc_class.max(-1)[0], k=k, dim=1)[1].unsqueeze(-1)
        topk_class = enc_class.gather(1, topk.expand(-1, -1,
                                                     enc_class.size(-1)))
        topk_coord_unact = enc_coord_unact.gather(1, topk.expand(-1, -1, 4))
        return topk_class, topk_coord_unact

    def pre_decoder(
        self,
        memory: Tensor,
        memory_mask: Optional[Tensor],
        spatial_shapes: Tensor,
        batch_data_samples: OptSampleList = None,
    ) -> Tuple[Dict, Dict]:
        """DINO's query selection, plus the hybrid queries in training."""
        bs = memory.size(0)
        num_layers = self.decoder.num_layers
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, memory_mask, spatial_shapes)
        topk_score, topk_coords_unact = self._select_topk(
            self.bbox_head.cls_branches[num_layers],
            self.bbox_head.reg_branches[num_layers], output_memory,
            output_proposals, self.num_queries)
        topk_coords = topk_coords_unact.sigmoid()

        num_queries = topk_coords.size(1)
        query = self.query_embedding.weight[:num_queries].unsqueeze(0).expand(
            bs, -1, -1)
        reference_points = topk_coords.detach()
        if self.training:
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = \
                self.dn_query_generator(batch_data_samples)
            query = torch.cat([dn_label_query, query], dim=1)
            reference_points = torch.cat(
                [dn_bbox_query.sigmoid(), reference_points], dim=1)
        else:
            dn_mask, dn_meta = None, None

        decoder_inputs_dict = dict(
            query=query,
            memory=memory,
            reference_points=reference_points,
            dn_mask=dn_mask)
        if not self.training:
            return decoder_inputs_dict, dict()

        head_inputs_dict = dict(
            enc_outputs_class=topk_score,
            enc_outputs_coord=topk_coords,
            dn_meta=dn_meta)
        if self.num_hybrid_queries > 0:
            hybrid_score, hybrid_coords_unact = self._select_topk(
                self.bbox_head.hybrid_cls_branch,
                self.bbox_head.hybrid_reg_branch, output_memory,
                output_proposals, self.num_hybrid_queries)
            hybrid_coords = hybrid_coords_unact.sigmoid()
            hybrid_query = self.hybrid_query_embedding.weight[:hybrid_coords.
                                                              size(1)]
            head_inputs_dict.update(
                hybrid_enc_outputs_class=hybrid_score,
                hybrid_enc_outputs_coord=hybrid_coords)
            decoder_inputs_dict.update(
                hybrid_query=hybrid_query.unsqueeze(0).expand(bs, -1, -1),
                hybrid_reference_points=hybrid_coords.detach())
        return decoder_inputs_dict, head_inputs_dict

    def forward_decoder(self,
                        query: Tensor,
                        memory: Tensor,
                        memory_mask: Optional[Tensor],
                        reference_points: Tensor,
                        spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None,
                        hybrid_query: Optional[Tensor] = None,
                        hybrid_reference_points: Optional[Tensor] = None
                        ) -> Dict:
        """Matching (+ denoising) queries with the relation bias; in training
        also the hybrid queries through the same decoder without it."""
        shared = dict(
            value=memory,
            key_padding_mask=memory_mask,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches)
        hidden_states, references = self.decoder(
            query=query,
            self_attn_mask=dn_mask,
            reference_points=reference_points,
            **shared)
        # keep the denoising label embedding in the graph when a batch has
        # no ground truth (unused parameters break distributed training)
        hidden_states[0] += \
            self.dn_query_generator.label_embedding.weight[0, 0] * 0.0
        outputs = dict(
            hidden_states=hidden_states, references=list(references))
        if hybrid_query is not None:
            hybrid_states, hybrid_refs = self.decoder(
                query=hybrid_query,
                self_attn_mask=None,
                reference_points=hybrid_reference_points,
                skip_relation=True,
                **shared)
            outputs.update(
                hybrid_hidden_states=hybrid_states,
                hybrid_references=list(hybrid_refs))
        return outputs
