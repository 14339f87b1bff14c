"""MonoDINO-DETR criterion: group-wise Hungarian matching and the losses.

"MonoDINO-DETR: Depth-Enhanced Monocular 3D Object Detection Using a Vision
Foundation Model" (Kim et al., IEEE IV 2025, arXiv:2502.00315), official code
https://github.com/JihyeokKim/MonoDINO-DETR: ``SetCriterion`` in
``lib/models/monodinodetr/monodinodetr.py``, ``HungarianMatcher`` in
``lib/models/monodinodetr/matcher.py`` and the CaDDN depth-map loss in
``lib/models/monodinodetr/depth_predictor/ddn_loss/``; weights of
``configs/monodinodetr.yaml``. The class, L1 and GIoU terms and the match
costs are mmdet's (same formulas); the depth, dimension, heading and
depth-map terms are written here. Different from the official code: no
``.cuda()``/``torch.cuda.current_device()`` (everything follows the outputs'
device), and a 2D box crossing the left/top border of the depth map is
clipped there (the official slicing wraps the negative start and paints
nothing for it). Losses come weighted, named as mmdet's DETR heads
(``loss_cls``, ``d0.loss_cls``, ...).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.losses import FocalLoss, GIoULoss, L1Loss
from mmdet.models.task_modules import FocalLossCost, IoUCost
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from vitdense.models.dense_heads.monodino_detr_coder import (
    NUM_HEADING_BINS, box_cxcylrtb_to_xyxy, decode_predictions,
    targets_from_data_samples)
from vitdense.registry import MODELS

__all__ = ['GroupHungarianMatcher', 'DDNDepthMapLoss', 'MonoDINODETRCriterion']

#: ``SetCriterion.loss_depths``: the Laplacian NLL's sqrt(2), as written there.
SQRT2 = 1.4142
#: ``focalloss.one_hot`` adds this to every entry of the one-hot target.
ONE_HOT_EPS = 1e-6


def _merged(name: str, defaults: dict, given: Optional[dict]) -> dict:
    """``defaults`` updated by ``given``; an unknown key is an error."""
    given = dict(given or {})
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(
            f'monodino_detr_loss.py: unknown {name} {sorted(unknown)}; '
            f'expected some of {sorted(defaults)}')
    return {**defaults, **given}


class GroupHungarianMatcher:
    """Group-wise one-to-one matching (official ``HungarianMatcher``).

    Cost = ``cls`` x focal cost (mmdet ``FocalLossCost``, eps 1e-8 as the
    official) + ``bbox`` x L1 of (l, r, t, b) + ``iou`` x -GIoU of the 2D
    boxes (mmdet ``IoUCost``) + ``center`` x L1 of the projected 3D centre.
    The queries of every image are split into ``group_num`` equal groups
    and each group is matched to all ground truths on its own (Group-DETR).
    mmdet's ``HungarianAssigner`` solves one matrix per image, so the
    assignment itself calls scipy's ``linear_sum_assignment`` per group.

    Args:
        cls, bbox, iou, center (float): cost weights (official
            ``set_cost_class``/``_bbox``/``_giou``/``_3dcenter``).
        alpha, gamma (float): of the focal cost. Defaults to 0.25, 2.
    """

    def __init__(self,
                 cls: float = 2.0,
                 bbox: float = 5.0,
                 iou: float = 2.0,
                 center: float = 10.0,
                 alpha: float = 0.25,
                 gamma: float = 2.0) -> None:
        self.cls_cost = FocalLossCost(
            alpha=alpha, gamma=gamma, eps=1e-8, weight=cls)
        self.iou_cost = IoUCost(iou_mode='giou', weight=iou)
        self.bbox_weight = bbox
        self.center_weight = center

    @torch.no_grad()
    def __call__(self,
                 outputs: Dict[str, Tensor],
                 targets: Sequence[Dict[str, Tensor]],
                 group_num: int = 1) -> List[Tuple[Tensor, Tensor]]:
        """Match ``outputs`` (``pred_logits`` (B, Q, C), ``pred_boxes``
        (B, Q, 6)) to ``targets`` (``labels``, ``boxes_3d``).

        Returns:
            list[tuple[Tensor, Tensor]]: per image (query indices, target
            indices), groups in order, each group sorted by query.
        """
        batch, num_queries = outputs['pred_boxes'].shape[:2]
        if num_queries % group_num:
            raise ValueError(
                f'monodino_detr_loss.py: {num_queries} queries do not split '
                f'into {group_num} groups')
        logits = outputs['pred_logits'].flatten(0, 1)
        boxes = outputs['pred_boxes'].flatten(0, 1)
        gt_labels = torch.cat([t['labels'] for t in targets]).long()
        gt_boxes = torch.cat([t['boxes_3d'] for t in targets])
        cost = (self.cls_cost(InstanceData(scores=logits),
                              InstanceData(labels=gt_labels)) +
                self.bbox_weight *
                torch.cdist(boxes[:, 2:], gt_boxes[:, 2:], p=1) +
                self.iou_cost(
                    InstanceData(bboxes=box_cxcylrtb_to_xyxy(boxes)),
                    InstanceData(bboxes=box_cxcylrtb_to_xyxy(gt_boxes))) +
                self.center_weight *
                torch.cdist(boxes[:, :2], gt_boxes[:, :2], p=1))
        cost = cost.view(batch, num_queries, -1).cpu()
        group_size = num_queries // group_num
        indices = []
        for image, image_cost in enumerate(
                cost.split([len(t['labels']) for t in targets], -1)):
            queries, gts = [], []
            for group in range(group_num):
                rows, cols = linear_sum_assignment(
                    image_cost[image,
                               group * group_size:(group + 1) * group_size])
                queries.append(torch.as_tensor(rows) + group * group_size)
                gts.append(torch.as_tensor(cols))
            indices.append((torch.cat(queries).long(), torch.cat(gts).long()))
        return indices


@MODELS.register_module()
class DDNDepthMapLoss(nn.Module):
    """CaDDN depth-map loss of MonoDETR (official ``DDNLoss``).

    Target: every ground-truth 2D box (corners floored/ceiled on the map
    grid) is painted with its object's centre depth, far to near; depth to
    linear-increasing-discretisation (LID) bin over [depth_min, depth_max]
    with ``num_bins = C - 1`` of the logits, background and out-of-range
    pixels in the extra bin. Loss: softmax focal loss (kornia's, with the
    official 1e-6 added to every one-hot entry and ``alpha`` on every
    class), weighted ``fg_weight`` inside the boxes and ``bg_weight``
    outside, averaged over all pixels. mmdet/mmseg have only sigmoid focal
    losses, hence this class.

    Args:
        depth_min, depth_max (float): LID range. Defaults to 1e-3, 60.
        fg_weight, bg_weight (float): Defaults to 13, 1.
        alpha, gamma (float): Defaults to 0.25, 2.
    """

    def __init__(self,
                 depth_min: float = 1e-3,
                 depth_max: float = 60.0,
                 fg_weight: float = 13.0,
                 bg_weight: float = 1.0,
                 alpha: float = 0.25,
                 gamma: float = 2.0) -> None:
        super().__init__()
        self.depth_min = depth_min
        self.depth_max = depth_max
        self.fg_weight = fg_weight
        self.bg_weight = bg_weight
        self.alpha = alpha
        self.gamma = gamma

    def lid_bins(self, depth: Tensor, num_bins: int) -> Tensor:
        """LID bin index of each depth; outside [0, num_bins] or not finite
        -> ``num_bins`` (official ``bin_depths(..., target=True)``)."""
        bin_size = 2 * (self.depth_max - self.depth_min) / (
            num_bins * (1 + num_bins))
        index = -0.5 + 0.5 * torch.sqrt(
            1 + 8 * (depth - self.depth_min) / bin_size)
        outside = (index < 0) | (index > num_bins) | ~torch.isfinite(index)
        return torch.where(outside, torch.full_like(index, num_bins),
                           index).long()

    def forward(self, depth_logits: Tensor, boxes: Sequence[Tensor],
                depths: Sequence[Tensor]) -> Tensor:
        """
        Args:
            depth_logits (Tensor): (B, num_bins + 1, H, W).
            boxes (Sequence[Tensor]): per image (N, 4) x1, y1, x2, y2 in
                depth-map cells.
            depths (Sequence[Tensor]): per image (N,) centre depths.
        """
        batch, channels, height, width = depth_logits.shape
        depth_map = depth_logits.new_zeros(batch, height, width)
        foreground = torch.zeros_like(depth_map, dtype=torch.bool)
        for image, (image_boxes,
                    image_depths) in enumerate(zip(boxes, depths)):
            cells = torch.cat(
                [image_boxes[:, :2].floor(), image_boxes[:, 2:].ceil()],
                -1).long()
            cells[:, 0::2] = cells[:, 0::2].clamp(0, width)
            cells[:, 1::2] = cells[:, 1::2].clamp(0, height)
            image_depths, order = torch.sort(image_depths, descending=True)
            for (x1, y1, x2, y2), depth in zip(cells[order].tolist(),
                                               image_depths):
                depth_map[image, y1:y2, x1:x2] = depth
                foreground[image, y1:y2, x1:x2] = True
        target = self.lid_bins(depth_map, channels - 1)

        log_prob = F.log_softmax(depth_logits, dim=1)
        focal = -self.alpha * (1 - log_prob.exp()).pow(self.gamma) * log_prob
        picked = focal.gather(1, target[:, None])[:, 0]
        loss = picked + ONE_HOT_EPS * focal.sum(1)
        weights = torch.where(foreground, self.fg_weight, self.bg_weight)
        return (loss * weights).sum() / loss.numel()


@MODELS.register_module()
class MonoDINODETRCriterion(nn.Module):
    """MonoDINO-DETR training losses and inference decoding.

    ``forward(outputs, data_samples)`` matches every decoder layer's queries
    group-wise (``group_num`` groups in training, one in eval, as the
    official) and returns the weighted losses of the last layer
    (``loss_cls``, ``loss_bbox``, ``loss_iou``, ``loss_center``,
    ``loss_depth``, ``loss_dim``, ``loss_angle``, ``loss_depth_map``) and of
    each ``outputs['aux_outputs'][i]`` (``d{i}.loss_cls``, ... without the
    depth map), all divided by the number of ground truths x groups
    (averaged over processes, at least 1). ``decode(outputs,
    batch_img_metas)`` gives ``pred_instances_3d`` per image.

    Terms (official ``SetCriterion``): sigmoid focal class loss (mmdet
    ``FocalLoss``), L1 on (l, r, t, b) and on the projected 3D centre (mmdet
    ``L1Loss``), GIoU of the 2D boxes (mmdet ``GIoULoss``), Laplacian depth
    NLL 1.4142 exp(-s) |d - d*| + s, dimension-aware L1 |Δ| / d* scaled by
    mean|Δ| / mean(|Δ| / d*) (no gradient through the scale), multi-bin
    heading cross-entropy + L1 of the target bin's residual, and
    :class:`DDNDepthMapLoss`.

    Args:
        num_classes (int): classes of ``pred_logits``.
        group_num (int): query groups in training. Defaults to 11.
        loss_weights (dict, optional): overrides of ``cls`` 2, ``bbox`` 5,
            ``iou`` 2, ``center`` 10, ``dim`` 1, ``angle`` 1, ``depth`` 1,
            ``depth_map`` 1.
        match_costs (dict, optional): overrides of ``cls`` 2, ``bbox`` 5,
            ``iou`` 2, ``center`` 10.
        focal_alpha, focal_gamma (float): class loss and cost. Defaults to
            0.25, 2.
        depth_map_loss (dict, optional): :class:`DDNDepthMapLoss` arguments.
        test_cfg (dict, optional): ``topk`` (50) and ``score_thr`` (0.2) of
            :func:`decode_predictions`.
    """
    DEFAULT_LOSS_WEIGHTS = dict(cls=2.0, bbox=5.0, iou=2.0, center=10.0,
                                dim=1.0, angle=1.0, depth=1.0, depth_map=1.0)
    DEFAULT_MATCH_COSTS = dict(cls=2.0, bbox=5.0, iou=2.0, center=10.0)
    DEFAULT_TEST_CFG = dict(topk=50, score_thr=0.2)

    def __init__(self,
                 num_classes: int,
                 group_num: int = 11,
                 loss_weights: Optional[dict] = None,
                 match_costs: Optional[dict] = None,
                 focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0,
                 depth_map_loss: Optional[dict] = None,
                 test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.group_num = group_num
        self.loss_weights = _merged('loss_weights', self.DEFAULT_LOSS_WEIGHTS,
                                    loss_weights)
        self.test_cfg = _merged('test_cfg', self.DEFAULT_TEST_CFG, test_cfg)
        costs = _merged('match_costs', self.DEFAULT_MATCH_COSTS, match_costs)
        self.matcher = GroupHungarianMatcher(
            **costs, alpha=focal_alpha, gamma=focal_gamma)
        weights = self.loss_weights
        self.loss_cls = FocalLoss(
            use_sigmoid=True, alpha=focal_alpha, gamma=focal_gamma,
            loss_weight=weights['cls'])
        self.loss_bbox = L1Loss(loss_weight=weights['bbox'])
        self.loss_center = L1Loss(loss_weight=weights['center'])
        self.loss_iou = GIoULoss(loss_weight=weights['iou'])
        self.loss_depth_map = DDNDepthMapLoss(**(depth_map_loss or {}))

    def forward(self, outputs: Dict,
                data_samples: Sequence) -> Dict[str, Tensor]:
        """Weighted losses of ``outputs`` (official outputs dict) against
        the ground truth of ``data_samples`` (see
        :func:`targets_from_data_samples`)."""
        return self.loss_by_targets(outputs,
                                    targets_from_data_samples(data_samples))

    def decode(self, outputs: Dict[str, Tensor],
               batch_img_metas: Sequence[dict]) -> List[InstanceData]:
        """``pred_instances_3d`` per image (:func:`decode_predictions` with
        ``test_cfg``)."""
        return decode_predictions(outputs, batch_img_metas, **self.test_cfg)

    def loss_by_targets(
            self, outputs: Dict,
            targets: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Weighted losses against official-format ``targets``."""
        logits = outputs['pred_logits']
        if logits.shape[-1] != self.num_classes:
            raise ValueError(
                f'monodino_detr_loss.py: pred_logits has {logits.shape[-1]} '
                f'classes, the criterion {self.num_classes}')
        group_num = self.group_num if self.training else 1
        num_boxes = logits.new_tensor(
            [sum(len(t['labels']) for t in targets) * group_num])
        num_boxes = reduce_mean(num_boxes).clamp(min=1).item()

        losses = self._layer_losses(outputs, targets, group_num, num_boxes)
        losses['loss_depth_map'] = self.loss_weights['depth_map'] * \
            self._depth_map_loss(outputs['pred_depth_map_logits'], targets)
        for layer, aux in enumerate(outputs.get('aux_outputs', [])):
            for name, value in self._layer_losses(aux, targets, group_num,
                                                  num_boxes).items():
                losses[f'd{layer}.{name}'] = value
        return losses

    def _layer_losses(self, outputs: Dict[str, Tensor],
                      targets: Sequence[Dict[str, Tensor]], group_num: int,
                      num_boxes: float) -> Dict[str, Tensor]:
        """Match one decoder layer and compute its weighted losses."""
        indices = self.matcher(outputs, targets, group_num)
        device = outputs['pred_logits'].device
        image = torch.cat([
            torch.full_like(q, i) for i, (q, _) in enumerate(indices)
        ]).to(device)
        query = torch.cat([q for q, _ in indices]).to(device)

        def matched(key: str) -> Tensor:
            return torch.cat([
                t[key][gt.to(device)] for t, (_, gt) in zip(targets, indices)
            ])

        logits = outputs['pred_logits']
        one_hot = torch.zeros_like(logits)
        one_hot[image, query, matched('labels').long()] = 1
        pred_boxes = outputs['pred_boxes'][image, query]
        gt_boxes = matched('boxes_3d')
        weights = self.loss_weights
        losses = dict(
            loss_cls=self.loss_cls(
                logits.flatten(0, 1), one_hot.flatten(0, 1),
                avg_factor=num_boxes),
            loss_bbox=self.loss_bbox(
                pred_boxes[:, 2:], gt_boxes[:, 2:], avg_factor=num_boxes),
            loss_iou=self.loss_iou(
                box_cxcylrtb_to_xyxy(pred_boxes),
                box_cxcylrtb_to_xyxy(gt_boxes), avg_factor=num_boxes),
            loss_center=self.loss_center(
                pred_boxes[:, :2], gt_boxes[:, :2], avg_factor=num_boxes))
        losses['loss_depth'] = weights['depth'] * self._depth_loss(
            outputs['pred_depth'][image, query], matched('depth'), num_boxes)
        losses['loss_dim'] = weights['dim'] * self._dim_loss(
            outputs['pred_3d_dim'][image, query], matched('size_3d'),
            num_boxes)
        losses['loss_angle'] = weights['angle'] * self._angle_loss(
            outputs['pred_angle'][image, query], matched('heading_bin'),
            matched('heading_res'), num_boxes)
        return losses

    @staticmethod
    def _depth_loss(pred: Tensor, target: Tensor, num_boxes: float) -> Tensor:
        """Laplacian aleatoric depth loss (official ``loss_depths``)."""
        depth, log_variance = pred[:, 0], pred[:, 1]
        loss = SQRT2 * torch.exp(-log_variance) * (
            depth - target.view(-1)).abs() + log_variance
        return loss.sum() / num_boxes

    @staticmethod
    def _dim_loss(pred: Tensor, target: Tensor, num_boxes: float) -> Tensor:
        """Dimension-aware L1 (official ``loss_dims``): |Δ| / d*, rescaled
        to the plain L1's mean by a weight without gradient."""
        if not len(target):
            return pred.sum() * 0
        loss = (pred - target).abs() / target
        with torch.no_grad():
            compensation = F.l1_loss(pred, target) / loss.mean()
        return (loss * compensation).sum() / num_boxes

    @staticmethod
    def _angle_loss(pred: Tensor, target_bin: Tensor, target_res: Tensor,
                    num_boxes: float) -> Tensor:
        """Multi-bin heading loss (official ``loss_angles``): cross-entropy
        over the 12 bins + L1 of the target bin's residual."""
        target_bin = target_bin.view(-1).long()
        cls_loss = F.cross_entropy(pred[:, :NUM_HEADING_BINS],
                                   target_bin,
                                   reduction='none')
        residual = pred[:, NUM_HEADING_BINS:].gather(1, target_bin[:, None])
        reg_loss = (residual.view(-1) - target_res.view(-1)).abs()
        return (cls_loss + reg_loss).sum() / num_boxes

    def _depth_map_loss(self, depth_logits: Tensor,
                        targets: Sequence[Dict[str, Tensor]]) -> Tensor:
        """:class:`DDNDepthMapLoss` on every ground truth's 2D box scaled to
        the depth map (official ``loss_depth_map``)."""
        height, width = depth_logits.shape[-2:]
        scale = depth_logits.new_tensor([width, height])
        boxes = []
        for t in targets:
            centre, size = t['boxes'][:, :2] * scale, t['boxes'][:, 2:] * scale
            boxes.append(torch.cat([centre - size / 2, centre + size / 2], -1))
        return self.loss_depth_map(depth_logits, boxes,
                                   [t['depth'].view(-1) for t in targets])
