"""Relation-DETR's IoU-aware varifocal loss.

"Relation DETR: Exploring Explicit Position Relation Prior for Object
Detection" (Hou et al., ECCV 2024, arXiv:2407.11699); official code
https://github.com/xiuqhou/Relation-DETR (``models/bricks/losses.py``,
``vari_sigmoid_focal_loss``). Own class because mmdet's ``VarifocalLoss``
weighs negatives by the non-detached ``|p - t|``.
"""
from typing import Optional, Tuple

import torch.nn.functional as F
from mmdet.models.losses import QualityFocalLoss
from mmdet.models.losses.utils import weight_reduce_loss
from torch import Tensor

from vitdense.registry import MODELS


@MODELS.register_module()
class IoUVarifocalLoss(QualityFocalLoss):
    """Relation-DETR's IoU-aware varifocal loss (``vari_sigmoid_focal_loss``).

    With one-hot class target ``o`` and IoU score ``s`` of the matched box:
    target ``t = o * s``, weight ``w = (1 - alpha) * p**gamma * (1 - o) + t``
    with ``p = sigmoid(logit)`` detached, loss = ``w * BCE(logit, t)``.
    mmdet's ``VarifocalLoss`` differs (non-detached ``p``, ``|p - t|``).
    Subclassing ``QualityFocalLoss`` makes mmdet's DETR heads feed it
    ``(labels, iou_scores)`` targets.

    Args:
        alpha (float): negative weight ``1 - alpha``. Defaults to 0.25.
        gamma (float): focusing exponent. Defaults to 2.0.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Defaults to 1.0.
    """

    def __init__(self,
                 alpha: float = 0.25,
                 gamma: float = 2.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(
            use_sigmoid=True,
            beta=gamma,
            reduction=reduction,
            loss_weight=loss_weight)
        self.alpha = alpha
        self.gamma = gamma

    def forward(self,
                pred: Tensor,
                target: Tuple[Tensor, Tensor],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """``pred`` (N, C) logits; ``target`` = (labels (N,) with C for
        background, IoU scores (N,)); ``weight`` (N,) per-query weights."""
        reduction = reduction_override or self.reduction
        labels, scores = target
        num_classes = pred.size(-1)
        onehot = F.one_hot(labels, num_classes + 1)[:, :num_classes]
        onehot = onehot.type_as(pred)
        target_score = onehot * scores.unsqueeze(-1).type_as(pred)
        prob = pred.sigmoid().detach()
        focal_weight = (1 - self.alpha) * prob.pow(self.gamma) * (
            1 - onehot) + target_score
        loss = F.binary_cross_entropy_with_logits(
            pred, target_score, weight=focal_weight, reduction='none')
        if weight is not None:
            weight = weight.unsqueeze(-1).type_as(loss)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction,
                                                     avg_factor)
