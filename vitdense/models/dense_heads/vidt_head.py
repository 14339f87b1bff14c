"""ViDT head: mmdet's Deformable-DETR head + ViDT+'s IoU-aware and UQR
branches.

"An Extendable, Efficient and Effective Transformer-based Object Detector"
(Song et al., arXiv:2204.07962, Sec. 3.3); official code
https://github.com/naver-ai/vidt (``methods/vidt/detector.py``
``iou_embed``, ``methods/vidt/criterion.py`` ``loss_iouaware``; the same on
branch ``main`` 5207d04 and ``vidt-plus`` a8c48b5). Without
``loss_iou_aware`` this is ``DeformableDETRHead`` unchanged. With it, every
prediction layer also predicts an IoU logit per query (an MLP like the box
branch, one per layer with box refinement, else shared), trained with binary
cross-entropy against the IoU of the matched prediction and its ground-truth
box, summed over matches and divided by the number of boxes, as the
official; like the official, the IoU target is not detached, so the loss
also reaches the boxes. Inference is unchanged (the official post-processing
does not use it).

With ``with_mask_vectors`` (ViDT+'s UQR, Sec. 3.2; official
``vector_embed``, ``loss_masks``, ``PostProcess``) every prediction layer
also predicts a DCT mask vector per query with one MLP shared by all layers
(as the official, even with box refinement), trained by
:class:`~vitdense.models.losses.MaskVectorLoss` on that layer's matched
queries; at inference the top-scoring queries' vectors are decoded and
pasted into their boxes (``results.masks``). Different from the official:
the boxes the masks are pasted into are mmdet's, clipped to the image.
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmcv.cnn import Linear
from mmdet.models.dense_heads import DeformableDETRHead
from mmdet.structures import SampleList
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   bbox_xyxy_to_cxcywh)
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptInstanceList, reduce_mean)
from mmengine.structures import InstanceData
from torch import Tensor, nn

from vitdense.models.losses.vidt_plus_loss import gt_masks_from_samples
from vitdense.registry import MODELS

__all__ = ['ViDTHead']


@MODELS.register_module()
class ViDTHead(DeformableDETRHead):
    """``DeformableDETRHead`` with ViDT+'s optional IoU-aware and UQR
    branches.

    Args:
        loss_iou_aware (dict, optional): the IoU-aware loss, e.g.
            ``dict(type='CrossEntropyLoss', use_sigmoid=True,
            loss_weight=2.0)`` (official ``iouaware_loss_coef`` 2); None
            builds no IoU branch. Defaults to None.
        with_mask_vectors (bool): UQR instance masks (official
            ``--with_vector --masks``); needs ``gt_instances.masks`` in
            training. Defaults to False.
        loss_vector (dict): the mask-vector loss and its DCT coder
            (``mask_size``, ``num_coeffs``), used with
            ``with_mask_vectors``. Defaults to the official
            ``MaskVectorLoss`` (128x128, 256 coefficients, weight 3).
        vector_hidden_dims (int): hidden width of the vector MLP (official
            ``vector_hidden_dim``). Defaults to 256.
        *args, **kwargs: as ``DeformableDETRHead``.
    """

    def __init__(self,
                 *args,
                 loss_iou_aware: OptConfigType = None,
                 with_mask_vectors: bool = False,
                 loss_vector: ConfigType = dict(
                     type='MaskVectorLoss',
                     mask_size=128,
                     num_coeffs=256,
                     loss_weight=3.0),
                 vector_hidden_dims: int = 256,
                 **kwargs) -> None:
        self.with_iou_aware = loss_iou_aware is not None
        self.with_mask_vectors = with_mask_vectors
        self.vector_hidden_dims = vector_hidden_dims
        self.loss_vector_cfg = loss_vector
        super().__init__(*args, **kwargs)
        if self.with_iou_aware:
            self.loss_iou_aware = MODELS.build(loss_iou_aware)
        self._layer_targets: List[tuple] = []
        self._assignments: List[Tuple[Tensor, Tensor]] = []

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.with_mask_vectors:
            # the loss holds the DCT coder used for targets and decoding
            self.loss_vector = MODELS.build(self.loss_vector_cfg)
            hidden = self.vector_hidden_dims
            # one MLP for every prediction layer, as the official
            self.vector_branch = nn.Sequential(
                Linear(self.embed_dims, hidden), nn.ReLU(),
                Linear(hidden, hidden), nn.ReLU(),
                Linear(hidden, self.loss_vector.coder.num_coeffs))
        if not self.with_iou_aware:
            return
        branch = []
        for _ in range(self.num_reg_fcs):
            branch += [Linear(self.embed_dims, self.embed_dims), nn.ReLU()]
        branch = nn.Sequential(*branch, Linear(self.embed_dims, 1))
        self.iou_branches = nn.ModuleList([
            branch if self.share_pred_layer else copy.deepcopy(branch)
            for _ in range(self.num_pred_layer)
        ])

    def init_weights(self) -> None:
        """mmdet's; the vector MLP's last layer as the official: zero
        weight, bias 0 on the first two coefficients and -2 elsewhere."""
        super().init_weights()
        if self.with_mask_vectors:
            last = self.vector_branch[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            nn.init.constant_(last.bias.data[2:], -2.0)

    def forward_vectors(self, hidden_states: Tensor) -> Tensor:
        """Mask vectors of every prediction layer, (L, B, N, num_coeffs)."""
        return self.vector_branch(hidden_states)

    def forward_iou(self, hidden_states: Tensor) -> Tensor:
        """IoU logits of every prediction layer, (L, B, N)."""
        return torch.stack([
            self.iou_branches[i](hidden_states[i])[..., 0]
            for i in range(hidden_states.shape[0])
        ])

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Optional[Tensor],
             enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList) -> dict:
        if not (self.with_iou_aware or self.with_mask_vectors):
            return super().loss(hidden_states, references, enc_outputs_class,
                                enc_outputs_coord, batch_data_samples)
        cls_scores, bbox_preds = self(hidden_states, references)
        extra = dict()
        if self.with_iou_aware:
            extra['all_layers_iou_preds'] = self.forward_iou(hidden_states)
        if self.with_mask_vectors:
            pad_shape = batch_data_samples[0].metainfo.get(
                'batch_input_shape', batch_data_samples[0].img_shape)
            masks = gt_masks_from_samples(batch_data_samples, pad_shape,
                                          'with_mask_vectors',
                                          hidden_states.device)
            extra['all_layers_vector_preds'] = self.forward_vectors(
                hidden_states)
            extra['batch_vector_targets'] = [
                self.loss_vector.get_targets(m, s.gt_instances.bboxes)
                for m, s in zip(masks, batch_data_samples)
            ]
        return self.loss_by_feat(
            cls_scores,
            bbox_preds,
            enc_outputs_class,
            enc_outputs_coord,
            [s.gt_instances for s in batch_data_samples],
            [s.metainfo for s in batch_data_samples],
            **extra)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None,
                     all_layers_iou_preds: Optional[Tensor] = None,
                     all_layers_vector_preds: Optional[Tensor] = None,
                     batch_vector_targets: Optional[List[Tensor]] = None
                     ) -> Dict[str, Tensor]:
        """``DeformableDETRHead``'s losses; with ``all_layers_iou_preds``
        (L, B, N) also ``loss_iou_aware`` of every layer (``d{i}.`` for all
        but the last), on that layer's own matching; with
        ``all_layers_vector_preds`` (L, B, N, num_coeffs) and the DCT
        vectors of each image's ground-truth masks (n_i, num_coeffs) also
        ``loss_vector`` of every layer, on its own matching."""
        self._layer_targets, self._assignments = [], []
        losses = super().loss_by_feat(all_layers_cls_scores,
                                      all_layers_bbox_preds, enc_cls_scores,
                                      enc_bbox_preds, batch_gt_instances,
                                      batch_img_metas,
                                      batch_gt_instances_ignore)
        # get_targets ran once per prediction layer, in order (the encoder
        # proposals, absent in ViDT, would come last)
        layer_targets, self._layer_targets = self._layer_targets, []
        assignments, self._assignments = self._assignments, []
        if all_layers_vector_preds is not None:
            num_imgs = len(batch_gt_instances)
            last = len(all_layers_vector_preds) - 1
            for i, vector_preds in enumerate(all_layers_vector_preds):
                loss = self._vector_loss(
                    vector_preds, batch_vector_targets,
                    assignments[i * num_imgs:(i + 1) * num_imgs])
                losses['loss_vector' if i == last else
                       f'd{i}.loss_vector'] = loss
        if all_layers_iou_preds is None:
            return losses
        last = len(all_layers_iou_preds) - 1
        for i, (iou_preds, bbox_preds, targets) in enumerate(
                zip(all_layers_iou_preds, all_layers_bbox_preds,
                    layer_targets)):
            loss = self._iou_aware_loss(iou_preds, bbox_preds, targets)
            losses['loss_iou_aware' if i == last else
                   f'd{i}.loss_iou_aware'] = loss
        return losses

    def get_targets(self, *args, **kwargs) -> tuple:
        """mmdet's; each layer's result is kept for the IoU-aware loss."""
        targets = super().get_targets(*args, **kwargs)
        self._layer_targets.append(targets)
        return targets

    def _get_targets_single(self, cls_score: Tensor, bbox_pred: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict) -> tuple:
        """mmdet's (the same computation), also keeping the matched
        ground-truth index of each positive query for the vector loss, which
        mmdet does not return."""
        if not self.with_mask_vectors:
            return super()._get_targets_single(cls_score, bbox_pred,
                                               gt_instances, img_meta)
        img_h, img_w = img_meta['img_shape']
        factor = bbox_pred.new_tensor([img_w, img_h, img_w,
                                       img_h]).unsqueeze(0)
        num_bboxes = bbox_pred.size(0)
        pred_instances = InstanceData(
            scores=cls_score, bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
        assign_result = self.assigner.assign(
            pred_instances=pred_instances,
            gt_instances=gt_instances,
            img_meta=img_meta)
        gt_bboxes = gt_instances.bboxes
        pos_inds = torch.nonzero(
            assign_result.gt_inds > 0, as_tuple=False).squeeze(-1).unique()
        neg_inds = torch.nonzero(
            assign_result.gt_inds == 0, as_tuple=False).squeeze(-1).unique()
        pos_assigned_gt_inds = (assign_result.gt_inds[pos_inds] - 1).long()
        self._assignments.append((pos_inds, pos_assigned_gt_inds))
        labels = gt_bboxes.new_full((num_bboxes, ),
                                    self.num_classes,
                                    dtype=torch.long)
        labels[pos_inds] = gt_instances.labels[pos_assigned_gt_inds]
        label_weights = gt_bboxes.new_ones(num_bboxes)
        bbox_targets = torch.zeros_like(bbox_pred, dtype=gt_bboxes.dtype)
        bbox_weights = torch.zeros_like(bbox_pred, dtype=gt_bboxes.dtype)
        bbox_weights[pos_inds] = 1.0
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(
            gt_bboxes[pos_assigned_gt_inds] / factor)
        return (labels, label_weights, bbox_targets, bbox_weights, pos_inds,
                neg_inds)

    def _vector_loss(self, vector_preds: Tensor, vector_targets: List[Tensor],
                     assignments: List[Tuple[Tensor, Tensor]]) -> Tensor:
        """Mask-vector loss of one layer's (B, N, num_coeffs) predictions
        on its matched queries (official ``loss_masks``)."""
        preds = torch.cat([
            vector_preds[b][pos_inds]
            for b, (pos_inds, _) in enumerate(assignments)
        ])
        targets = torch.cat([
            vector_targets[b][gt_inds]
            for b, (_, gt_inds) in enumerate(assignments)
        ])
        # + 0 * sum: the branch stays in the graph without ground truth
        return self.loss_vector(preds, targets) + vector_preds.sum() * 0.0

    def predict(self,
                hidden_states: Tensor,
                references: List[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = True) -> InstanceList:
        """mmdet's; with ``with_mask_vectors`` each detection also gets its
        query's mask decoded and pasted into its box (``masks``, bool, at
        the original image size when ``rescale``, else the input size)."""
        results = super().predict(hidden_states, references,
                                  batch_data_samples, rescale)
        if not self.with_mask_vectors:
            return results
        cls_scores = self.cls_branches[-1](hidden_states[-1])
        vectors = self.vector_branch(hidden_states[-1])
        for b, (result, sample) in enumerate(zip(results,
                                                 batch_data_samples)):
            # the queries of mmdet's top-k (``_predict_by_feat_single``)
            _, indexes = cls_scores[b].sigmoid().view(-1).topk(len(result))
            queries = indexes // self.num_classes
            shape = sample.ori_shape if rescale else sample.img_shape
            result.masks = self.loss_vector.coder.paste(
                vectors[b, queries], result.bboxes, shape)
        return results

    def _iou_aware_loss(self, iou_preds: Tensor, bbox_preds: Tensor,
                        targets: Tuple) -> Tensor:
        """BCE of the matched queries' IoU logits against the IoU of their
        boxes with the matched ground truth (normalised cxcywh), over the
        number of ground-truth boxes (official ``loss_iouaware``)."""
        _, _, bbox_targets_list, bbox_weights_list, num_pos, _ = targets
        bbox_targets = torch.cat(bbox_targets_list)
        matched = torch.cat(bbox_weights_list)[:, 0] > 0
        boxes = bbox_preds.reshape(-1, 4)[matched]
        ious = bbox_overlaps(
            bbox_cxcywh_to_xyxy(boxes),
            bbox_cxcywh_to_xyxy(bbox_targets[matched]),
            is_aligned=True)
        avg_factor = torch.clamp(
            reduce_mean(iou_preds.new_tensor([num_pos])), min=1).item()
        logits = iou_preds.reshape(-1)
        # + 0 * sum: the branch stays in the graph without ground truth
        return self.loss_iou_aware(
            logits[matched], ious,
            avg_factor=avg_factor) + logits.sum() * 0.0
