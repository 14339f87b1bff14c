"""Relation-DETR head: mmdet's DINO head + IoU-aware varifocal class loss and
the hybrid (one-to-many) branch.

Relation-DETR: "Relation DETR: Exploring Explicit Position Relation Prior for
Object Detection" (Hou et al., ECCV 2024, arXiv:2407.11699); official code
https://github.com/xiuqhou/Relation-DETR (``models/bricks/set_criterion.py``,
``models/bricks/losses.py``). Matching, denoising and box losses are mmdet's
DINO head unchanged; the class loss everywhere (decoder layers, encoder
proposals, denoising, hybrid) is the official ``vari_sigmoid_focal_loss``
(:class:`vitdense.models.losses.IoUVarifocalLoss`).
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmcv.cnn import Linear
from mmdet.models.dense_heads import DINOHead
from mmdet.models.dense_heads.detr_head import DETRHead
from mmdet.models.layers import inverse_sigmoid
from mmdet.structures import SampleList
from mmdet.utils import InstanceList
from mmengine.model import bias_init_with_prob, constant_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from vitdense.models.layers.relation_detr_layers import INVERSE_SIGMOID_EPS
from vitdense.registry import MODELS


@MODELS.register_module()
class RelationDETRHead(DINOHead):
    """DINO head with Relation-DETR's hybrid-branch heads and losses.

    Args:
        hybrid_assign (int): ground truth is repeated this many times for the
            one-to-many hybrid branch; 0 builds no hybrid encoder heads.
            Defaults to 6.
        *args, **kwargs: as ``DINOHead`` (use ``loss_cls=dict(
            type='IoUVarifocalLoss')`` for the official class loss).
    """

    def __init__(self, *args, hybrid_assign: int = 6, **kwargs) -> None:
        self.hybrid_assign = hybrid_assign
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.hybrid_assign > 0:
            # encoder proposal heads of the hybrid queries
            self.hybrid_cls_branch = Linear(self.embed_dims,
                                            self.cls_out_channels)
            self.hybrid_reg_branch = copy.deepcopy(self.reg_branches[-1])

    def init_weights(self) -> None:
        super().init_weights()
        if self.hybrid_assign > 0:
            nn.init.constant_(self.hybrid_cls_branch.bias,
                              bias_init_with_prob(0.01))
            constant_init(self.hybrid_reg_branch[-1], 0, bias=0)

    def forward(self, hidden_states: Tensor,
                references: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """Per-layer logits ``(L, B, N, C)`` and cxcywh boxes ``(L, B, N, 4)``;
        as mmdet's, with the official inverse-sigmoid clamp (1e-3)."""
        all_cls, all_coords = [], []
        for layer_id in range(hidden_states.shape[0]):
            hidden_state = hidden_states[layer_id]
            reference = inverse_sigmoid(
                references[layer_id], eps=INVERSE_SIGMOID_EPS)
            all_cls.append(self.cls_branches[layer_id](hidden_state))
            all_coords.append(
                (self.reg_branches[layer_id](hidden_state) +
                 reference).sigmoid())
        return torch.stack(all_cls), torch.stack(all_coords)

    def loss(self,
             hidden_states: Tensor,
             references: List[Tensor],
             enc_outputs_class: Tensor,
             enc_outputs_coord: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Dict[str, int],
             hybrid_hidden_states: Optional[Tensor] = None,
             hybrid_references: Optional[List[Tensor]] = None,
             hybrid_enc_outputs_class: Optional[Tensor] = None,
             hybrid_enc_outputs_coord: Optional[Tensor] = None) -> dict:
        """DINO losses, plus ``hybrid_*`` losses (every decoder layer and the
        hybrid encoder proposals, ground truth repeated ``hybrid_assign``
        times) when the hybrid outputs are given."""
        losses = super().loss(hidden_states, references, enc_outputs_class,
                              enc_outputs_coord, batch_data_samples, dn_meta)
        if hybrid_hidden_states is None:
            return losses
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        hybrid_gt_instances = self.repeat_gt_instances(
            [s.gt_instances for s in batch_data_samples], self.hybrid_assign)
        cls_scores, bbox_preds = self(hybrid_hidden_states, hybrid_references)
        hybrid_losses = DETRHead.loss_by_feat(self, cls_scores, bbox_preds,
                                              hybrid_gt_instances,
                                              batch_img_metas)
        enc_cls, enc_bbox, enc_iou = self.loss_by_feat_single(
            hybrid_enc_outputs_class,
            hybrid_enc_outputs_coord,
            batch_gt_instances=hybrid_gt_instances,
            batch_img_metas=batch_img_metas)
        hybrid_losses.update(
            enc_loss_cls=enc_cls, enc_loss_bbox=enc_bbox, enc_loss_iou=enc_iou)
        losses.update({f'hybrid_{k}': v for k, v in hybrid_losses.items()})
        return losses

    @staticmethod
    def repeat_gt_instances(batch_gt_instances: InstanceList,
                            times: int) -> InstanceList:
        """Ground truth boxes and labels repeated ``times`` (one-to-many)."""
        return [
            InstanceData(
                bboxes=gt.bboxes.repeat(times, 1),
                labels=gt.labels.repeat(times)) for gt in batch_gt_instances
        ]
