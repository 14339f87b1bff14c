from .kmax_loss import KMaXCriterion, pq_matching  # noqa: F401
from .monodino_detr_loss import (  # noqa: F401
    DDNDepthMapLoss, GroupHungarianMatcher, MonoDINODETRCriterion)
from .varifocal_loss import IoUVarifocalLoss  # noqa: F401
from .vidt_plus_loss import (  # noqa: F401
    MaskVectorLoss, TokenLabelLoss, gt_masks_from_samples)
