
from .relation_detr_head import IoUVarifocalLoss, RelationDETRHead  # noqa: F401
